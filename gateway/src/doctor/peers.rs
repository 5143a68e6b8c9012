//! Every other member of the manifest: `GET /v1/manifest` on its gateway (PROTOCOL.md
//! §2.3) over mutual TLS with this gateway's certificate, all at once, each within
//! [`CALL_TIMEOUT`]: whether it answers, the manifest serial it states beside ours, and
//! its clock from its `Date` header against this machine's. A clock further off than the
//! skew a request's `iat` is allowed ([`CLOCK_SKEW_S`], PROTOCOL.md §3.3) fails: the
//! exchanges between the two are refused as stale; over half of it is warned about.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use contracts::envelope::{CLOCK_SKEW_S, JOSE_MEDIA_TYPE, MAX_ANSWER_BYTES};
use contracts::{Manifest, MemberId};
use http::{Method, StatusCode};

use super::{CALL_TIMEOUT, Check, Context, Finding, Identity, Verdict};
use crate::client::{CallError, PeerClient};
use crate::tls::FederationTrust;

/// What a gateway answered to `GET /v1/manifest`.
pub(super) struct Hello {
    pub(super) status: StatusCode,
    /// How long the call took.
    pub(super) took: Duration,
    /// The serial it states in `Simpul-Manifest-Serial`.
    pub(super) serial: Option<u64>,
    /// Its clock minus this machine's, in whole seconds, from its `Date` header.
    pub(super) offset: Option<i64>,
}

/// `GET <gateway>/v1/manifest` through `client`, within [`CALL_TIMEOUT`].
pub(super) async fn hello(client: &PeerClient, gateway: &str) -> Result<Hello, CallError> {
    let url = format!("{}/v1/manifest", gateway.trim_end_matches('/'));
    let started = Instant::now();
    let before = unix_f64();
    let reply = client
        .call(
            Method::GET,
            &url,
            JOSE_MEDIA_TYPE,
            Bytes::new(),
            CALL_TIMEOUT,
        )
        .await?;
    let after = unix_f64();
    let offset = reply
        .headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date)
        // The header is whole seconds: the peer's time lies within the second it names,
        // ours is taken halfway through the call.
        .map(|date| (date as f64 + 0.5 - (before + after) / 2.0).round() as i64);
    Ok(Hello {
        status: reply.status,
        took: started.elapsed(),
        serial: crate::refresh::stated_serial(&reply.headers),
        offset,
    })
}

pub(super) async fn check(
    cx: &Context<'_>,
    manifest: Option<&Manifest>,
    trust: Option<&FederationTrust>,
    identity: Option<&Identity>,
) -> Vec<Finding> {
    let (Some(manifest), Some(trust), Some(identity)) = (manifest, trust, identity) else {
        return vec![Finding::new(
            Check::Peer,
            "(every peer)",
            Verdict::Fail,
            "not checked: it needs a manifest that verifies, its CRLs and this gateway's \
             certificate and key (see the lines above)"
                .into(),
        )];
    };
    let ours = manifest.doc().serial;
    let mut set = tokio::task::JoinSet::new();
    for (n, m) in manifest.doc().members.iter().enumerate() {
        if m.id == cx.member.id {
            continue;
        }
        let client = PeerClient::new(
            trust,
            identity.chain.clone(),
            identity.key.clone_key(),
            m.id.clone(),
            MAX_ANSWER_BYTES,
        );
        let (id, gateway) = (m.id.clone(), m.gateway.clone());
        set.spawn(async move {
            let finding = match client {
                Ok(client) => judge(&id, &gateway, hello(&client, &gateway).await, ours),
                Err(e) => Finding::new(
                    Check::Peer,
                    format!("{id} {gateway}"),
                    Verdict::Fail,
                    format!("no client can be built with this gateway's certificate: {e}"),
                ),
            };
            (n, finding)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(found) = joined {
            done.push(found);
        }
    }
    done.sort_by_key(|(n, _)| *n);
    done.into_iter().map(|(_, f)| f).collect()
}

/// One peer's finding from its answer.
fn judge(peer: &MemberId, gateway: &str, hello: Result<Hello, CallError>, ours: u64) -> Finding {
    let subject = format!("{peer} {gateway}");
    let hello = match hello {
        Ok(h) => h,
        Err(e) => {
            return Finding::new(
                Check::Peer,
                subject,
                Verdict::Fail,
                format!(
                    "unreachable ({e}): every exchange with {peer} fails until it answers; is \
                     its gateway running, its address right, the way open?"
                ),
            );
        }
    };
    if hello.status != StatusCode::OK {
        return Finding::new(
            Check::Peer,
            subject,
            Verdict::Fail,
            format!("answered {} to GET /v1/manifest", hello.status),
        );
    }
    let mut verdict = Verdict::Ok;
    let mut parts = vec![format!("answered in {} ms", hello.took.as_millis())];
    match hello.serial {
        Some(s) if s == ours => parts.push(format!("manifest serial {s}, as ours")),
        Some(s) => {
            verdict = verdict.max(Verdict::Warn);
            parts.push(format!(
                "manifest serial {s}, ours {ours}: the one with the older adopts the newer at \
                 its next refresh (or SIGHUP)"
            ));
        }
        None => {
            verdict = verdict.max(Verdict::Warn);
            parts.push("states no manifest serial".into());
        }
    }
    let bound = CLOCK_SKEW_S;
    match hello.offset {
        Some(off) if off.abs() > bound => {
            verdict = Verdict::Fail;
            parts.push(format!(
                "its clock is {off:+} s from this machine's, beyond the ±{bound} s a request's \
                 iat may be off (PROTOCOL.md §3.3): exchanges between the two are refused as \
                 stale; set the wrong clock right (NTP)"
            ));
        }
        Some(off) if off.abs() > bound / 2 => {
            verdict = verdict.max(Verdict::Warn);
            parts.push(format!(
                "its clock is {off:+} s from this machine's, over half the ±{bound} s a \
                 request's iat may be off (PROTOCOL.md §3.3): check NTP on both"
            ));
        }
        Some(off) => parts.push(format!("clock {off:+} s from this machine's")),
        None => {
            verdict = verdict.max(Verdict::Warn);
            parts.push("no Date header: its clock cannot be compared".into());
        }
    }
    Finding::new(Check::Peer, subject, verdict, parts.join("; "))
}

/// Now, in Unix seconds with a fraction.
fn unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An HTTP `Date` (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) in Unix
/// seconds; `None` for anything else.
fn http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    if b.len() != 29
        || b.get(3) != Some(&b',')
        || !s.ends_with(" GMT")
        || b.get(19) != Some(&b':')
        || b.get(22) != Some(&b':')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| Some(*m) == s.get(8..11))? as i64 + 1;
    let year = num(12..16)?;
    let (h, m, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imf_fixdate_reads_as_unix_seconds_and_nothing_else_does() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        for t in [1_800_000_000_i64, 1_000_000_000, 951_782_400] {
            // contracts::utc writes `2027-01-15T08:00:00Z`; rewrite it as an HTTP date.
            let u = contracts::utc(t);
            let month = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ][u[5..7].parse::<usize>().unwrap() - 1];
            let date = format!("Mon, {} {month} {} {} GMT", &u[8..10], &u[0..4], &u[11..19]);
            assert_eq!(http_date(&date), Some(t), "{date}");
        }
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
        ] {
            assert_eq!(http_date(bad), None, "{bad}");
        }
    }

    fn hello(serial: Option<u64>, offset: Option<i64>) -> Result<Hello, CallError> {
        Ok(Hello {
            status: StatusCode::OK,
            took: Duration::from_millis(3),
            serial,
            offset,
        })
    }

    #[test]
    fn a_clock_beyond_the_skew_fails_and_over_half_of_it_warns() {
        let peer = MemberId::parse("ID:GOV:BP2MI").unwrap();
        let judged = |serial, offset| judge(&peer, "https://x:1", hello(serial, offset), 7);
        assert_eq!(judged(Some(7), Some(0)).verdict, Verdict::Ok);
        assert_eq!(judged(Some(7), Some(-30)).verdict, Verdict::Ok);
        assert_eq!(judged(Some(7), Some(31)).verdict, Verdict::Warn);
        assert_eq!(judged(Some(7), Some(60)).verdict, Verdict::Warn);
        let f = judged(Some(7), Some(-61));
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(
            f.message
                .contains("its clock is -61 s from this machine's, beyond the ±60 s"),
            "{}",
            f.message
        );
        assert_eq!(judged(Some(6), Some(0)).verdict, Verdict::Warn);
        assert_eq!(judged(None, Some(0)).verdict, Verdict::Warn);
        assert_eq!(judged(Some(7), None).verdict, Verdict::Warn);
        assert_eq!(
            judged(Some(7), Some(1)).message,
            "answered in 3 ms; manifest serial 7, as ours; clock +1 s from this machine's"
        );
    }
}
