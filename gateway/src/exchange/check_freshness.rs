//! `iat` within ±60 s of now, `exp` after `iat` and in the future, `exp - iat` at most
//! 300 s. The arithmetic cannot overflow whatever `iat` and `exp` a peer signs: distances are
//! taken as unsigned differences.

use contracts::ExchangeRequest;
use contracts::envelope::{CLOCK_SKEW_S, MAX_VALIDITY_S};

use super::refusal::Refusal;

pub(super) fn check_freshness(request: &ExchangeRequest, now: i64) -> Result<(), Refusal> {
    let stale = |detail: String| Err(Refusal::Stale(detail));
    if request.iat.abs_diff(now) > CLOCK_SKEW_S.unsigned_abs() {
        return stale(format!(
            "iat {} is more than {CLOCK_SKEW_S} s from now ({now})",
            request.iat
        ));
    }
    if request.exp <= request.iat {
        return stale(format!(
            "exp {} is not after iat {}",
            request.exp, request.iat
        ));
    }
    if request.exp <= now {
        return stale(format!("exp {} has passed (now {now})", request.exp));
    }
    let validity = request.exp.abs_diff(request.iat);
    if validity > MAX_VALIDITY_S.unsigned_abs() {
        return stale(format!(
            "exp - iat is {validity} s, at most {MAX_VALIDITY_S} s is allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(iat: i64, exp: i64) -> ExchangeRequest {
        serde_json::from_value(json!({
            "v": 1, "id": "00000000-0000-4000-8000-000000000000", "iss": "ID:GOV:A", "aud": "ID:GOV:B",
            "contract": "c", "version": "1", "purpose": "p", "iat": iat, "exp": exp, "query": {}
        }))
        .unwrap()
    }

    #[test]
    fn the_window_edges() {
        let now = 1_000_000;
        assert!(check_freshness(&request(now - 60, now + 1), now).is_ok());
        assert!(check_freshness(&request(now + 60, now + 360), now).is_ok());
        assert!(check_freshness(&request(now - 61, now + 60), now).is_err());
        assert!(check_freshness(&request(now + 61, now + 120), now).is_err());
        assert!(check_freshness(&request(now - 10, now), now).is_err());
        assert!(check_freshness(&request(now, now + 301), now).is_err());
        assert!(check_freshness(&request(now + 30, now + 20), now).is_err());
    }

    #[test]
    fn extreme_timestamps_are_stale_without_overflow() {
        let now = 1_800_000_000;
        for (iat, exp) in [
            (i64::MIN, i64::MAX),
            (i64::MAX, i64::MIN),
            (i64::MAX, i64::MAX),
            (i64::MIN, i64::MIN),
            (now, i64::MAX),
            (now, i64::MIN),
            (i64::MIN, now + 10),
        ] {
            assert!(
                matches!(
                    check_freshness(&request(iat, exp), now),
                    Err(Refusal::Stale(_))
                ),
                "{iat} {exp}"
            );
        }
        for now in [i64::MIN, i64::MAX] {
            assert!(check_freshness(&request(0, 60), now).is_err());
        }
    }
}
