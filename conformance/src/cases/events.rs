//! Events (PROTOCOL.md §2.8): the target as the subscriber of an event contract the tester
//! provides. The suite delivers events as the provider's gateway does — a signed exchange run
//! the other way, the tester asking and the target answering with a signed receipt — and
//! expects each event kept once, a delivery sent again refused as a replay, and every event
//! or delivery that is not what §2.8 says refused with its code (rows E2–E5).
//!
//! The contracts come from `[[events]]` in the configuration, with an event's data: the
//! manifest does not say which contracts are event contracts, and the suite cannot make up
//! data for an arbitrary schema. Each event names a made-up subject, another every run (the
//! configured subject's digits replaced by random ones), and every event the target accepts
//! is real to it: it is kept and handed to the member systems that take the contract's
//! events — run the suite against a staging federation, not a production one.

use contracts::canonical::b64url;
use contracts::envelope::MAX_REQUEST_BYTES;
use contracts::events::{EVENT_TYP, Event, MAX_EVENTS_PER_DELIVERY, Receipt, Received, Status};
use contracts::{ContractRef, ExchangeId, ExchangeRequest, MemberId, ProblemCode};
use serde_json::{Value, json};

use super::{CaseFailure, CaseResult, Context, expect_problem, failed};
use crate::client::full;
use crate::config::{EventContract, Party};

/// The event contracts the target subscribes to and the tester provides, or why the cases
/// cannot run: not applicable when the manifest grants the target no event contract of the
/// tester's that the suite knows of; skipped, which fails the run, when it grants one that is
/// not configured.
fn subscribed(cx: &Context) -> Result<&[EventContract], CaseFailure> {
    if !cx.config.events.is_empty() {
        return Ok(&cx.config.events);
    }
    let (tester, target) = (&cx.config.tester.member, &cx.config.target.member);
    let manifest = &cx.config.manifest;
    let granted: Vec<_> = manifest
        .provided_by(tester)
        .filter(|c| manifest.grant(c, target).is_some())
        .collect();
    if granted.is_empty() {
        return Err(CaseFailure::NotApplicable(format!(
            "not applicable: the manifest grants {target} no contract {tester} provides, so it \
             subscribes to none of its events"
        )));
    }
    // The manifest does not say which are event contracts; the documents compiled into the
    // suite do, for the contracts whose digest is theirs.
    let known = contracts::embedded_catalog().unwrap_or_default();
    let events: Vec<String> = granted
        .iter()
        .filter(|listed| {
            known.iter().any(|c| {
                c.digest() == listed.digest
                    && c.doc().id == listed.id
                    && c.doc().version == listed.version
                    && c.event().is_some()
            })
        })
        .map(|c| format!("{}/{}", c.id, c.version))
        .collect();
    if events.is_empty() {
        let names: Vec<String> = granted
            .iter()
            .map(|c| format!("{}/{}", c.id, c.version))
            .collect();
        return Err(CaseFailure::NotApplicable(format!(
            "not applicable: none of the contracts of {tester} the manifest grants {target} ({}) \
             is an event contract the suite knows of; configure one under [[events]] if it is",
            names.join(", ")
        )));
    }
    Err(CaseFailure::Skipped(format!(
        "the manifest grants {target} the event contract(s) {} of {tester}, and none is \
         configured: give each under [[events]] with an event's data",
        events.join(", ")
    )))
}

/// `data` with the digits of the contract's subject replaced by random ones (the first by one
/// that is not 0): a made-up subject, another every run. The data as configured when the
/// schema refuses the made-up one.
fn made_up(e: &EventContract, data: &Value) -> Value {
    let Some(terms) = e.contract.event() else {
        return data.clone();
    };
    let mut out = data.clone();
    if let Some(Value::String(subject)) = out.pointer_mut(&terms.subject) {
        let mut random = uuid::Uuid::new_v4().as_u128();
        let mut first = true;
        *subject = subject
            .chars()
            .map(|c| {
                if !c.is_ascii_digit() {
                    return c;
                }
                let mut digit = (random % 10) as u8;
                random /= 10;
                if first && digit == 0 {
                    digit = 1 + (random % 9) as u8;
                }
                first = false;
                char::from(b'0' + digit)
            })
            .collect();
    }
    if e.contract.check_request(&out, "/data").is_ok()
        || e.contract.check_request(data, "/data").is_err()
    {
        out
    } else {
        data.clone()
    }
}

/// An event of `e` from the tester, issued now and kept an hour, with `data`.
fn event(cx: &Context, e: &EventContract, data: Value) -> Event {
    let now = contracts::unix_now();
    let retention = e.contract.event().map_or(3600, |t| t.retention_s());
    Event {
        v: 1,
        id: ExchangeId::new().to_string(),
        iss: cx.config.tester.member.clone(),
        contract: e.contract.doc().id.clone(),
        version: e.contract.doc().version.clone(),
        iat: now,
        exp: now + retention.min(3600),
        data,
    }
}

/// `event` signed by `by`, as its provider's gateway signs one when it is emitted.
fn sign_event(by: &Party, event: &Event) -> Result<String, CaseFailure> {
    let bytes =
        serde_json::to_vec(event).map_err(|e| failed(format!("cannot encode an event: {e}")))?;
    by.signing
        .sign(EVENT_TYP, &bytes)
        .map_err(|e| failed(format!("cannot sign an event: {e}")))
}

/// A valid event of `e` with a made-up subject, signed by the tester: its payload and JWS.
fn valid_event(cx: &Context, e: &EventContract) -> Result<(Event, String), CaseFailure> {
    let event = event(cx, e, made_up(e, &e.data));
    let jws = sign_event(&cx.config.tester, &event)?;
    Ok((event, jws))
}

/// A delivery of `e` from `from` for `purpose`, addressed to the target: a fresh exchange id,
/// issued now, valid for 60 s, `query` as given.
fn delivery(
    cx: &Context,
    e: &EventContract,
    from: &MemberId,
    purpose: &str,
    query: Value,
) -> ExchangeRequest {
    let now = contracts::unix_now();
    ExchangeRequest {
        v: 1,
        id: ExchangeId::new().to_string(),
        iss: from.clone(),
        sub: None,
        aud: cx.config.target.member.clone(),
        contract: e.contract.doc().id.clone(),
        version: e.contract.doc().version.clone(),
        purpose: purpose.to_owned(),
        iat: now,
        exp: now + 60,
        query,
    }
}

/// A delivery of `events` from the tester, for the purpose the target is granted.
fn delivery_of(cx: &Context, e: &EventContract, events: &[String]) -> ExchangeRequest {
    delivery(
        cx,
        e,
        &cx.config.tester.member,
        &e.purpose,
        json!({ "events": events }),
    )
}

/// Judges the answer to a delivery: 200, signed by the target's key in the manifest, bound to
/// the delivery sent as `jws`, and its result a receipt naming exactly `expected`, in order,
/// and no expiry notice.
fn receipt(
    cx: &Context,
    request: &ExchangeRequest,
    jws: &str,
    reply: &crate::client::Reply,
    expected: &[(&str, Status)],
) -> Result<String, String> {
    let (answer, line) = super::answers::judge_signed(cx, request, jws, reply)?;
    let receipt: Receipt = serde_json::from_value(answer.result.clone())
        .map_err(|e| format!("the result {} is not a receipt: {e}", answer.result))?;
    let want = Receipt {
        events: expected
            .iter()
            .map(|(id, status)| Received {
                id: (*id).to_owned(),
                status: *status,
            })
            .collect(),
        expired: 0,
    };
    if receipt != want {
        return Err(format!(
            "the receipt is {}, not {}",
            json!(receipt),
            json!(want)
        ));
    }
    Ok(line)
}

/// Sends `request` as the tester and expects `code`; the detail names `what`.
async fn expect_refused(
    cx: &Context,
    e: &EventContract,
    what: &str,
    request: &ExchangeRequest,
    code: ProblemCode,
) -> CaseResult {
    let (_, reply) = cx.send(request).await?;
    let (_, line) = expect_problem(&reply, code)
        .map_err(|err| failed(format!("{}: {what}: {err}", e.contract.reference())))?;
    Ok(format!("{what}: {line}"))
}

/// Runs `each` for every event contract under test and joins what it saw.
async fn for_each<'c, F, Fut>(cx: &'c Context, each: F) -> CaseResult
where
    F: Fn(&'c EventContract) -> Fut,
    Fut: std::future::Future<Output = CaseResult>,
{
    let mut seen = Vec::new();
    for e in subscribed(cx)? {
        seen.push(format!("{}: {}", e.contract.reference(), each(e).await?));
    }
    Ok(seen.join("; "))
}

/// EVT-01: a valid event is accepted, with a receipt signed by the target and bound to the
/// delivery; the same event in a fresh delivery is a duplicate, not kept again (E6).
pub(super) async fn accepted_then_duplicate(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let (event, jws) = valid_event(cx, e)?;
        let first = delivery_of(cx, e, std::slice::from_ref(&jws));
        let (sent, reply) = cx.send(&first).await?;
        let line = receipt(cx, &first, &sent, &reply, &[(&event.id, Status::Accepted)]).map_err(
            |why| {
                failed(format!(
                    "{}: a delivery of one event: {why}",
                    e.contract.reference()
                ))
            },
        )?;
        let again = delivery_of(cx, e, &[jws]);
        let (sent, reply) = cx.send(&again).await?;
        receipt(cx, &again, &sent, &reply, &[(&event.id, Status::Duplicate)]).map_err(|why| {
            failed(format!(
                "{}: the same event in a fresh delivery: {why}",
                e.contract.reference()
            ))
        })?;
        Ok(format!(
            "event {} accepted ({line}, by receipt); in a fresh delivery: duplicate",
            event.id
        ))
    })
    .await
}

/// EVT-02: the very same signed delivery sent twice is refused the second time with 409
/// `replay` (row 25 holds for a delivery as for any exchange).
pub(super) async fn replayed(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let (event, jws) = valid_event(cx, e)?;
        let request = delivery_of(cx, e, &[jws]);
        let (sent, reply) = cx.send(&request).await?;
        receipt(
            cx,
            &request,
            &sent,
            &reply,
            &[(&event.id, Status::Accepted)],
        )
        .map_err(|why| {
            failed(format!(
                "{}: the first sending of a valid delivery: {why}",
                e.contract.reference()
            ))
        })?;
        let path = ContractRef::new(&request.contract, &request.version);
        let again = cx.post_jws(&path, sent).await?;
        let (_, line) = expect_problem(&again, ProblemCode::Replay).map_err(|why| {
            failed(format!(
                "{}: the same delivery sent twice: {why}",
                e.contract.reference()
            ))
        })?;
        Ok(format!("the same delivery sent twice: {line}"))
    })
    .await
}

/// EVT-03: an event whose payload was changed after the tester signed it — its subject made
/// another — is refused with 400 `bad-event`.
pub(super) async fn tampered_event(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let (event, jws) = valid_event(cx, e)?;
        let mut changed = event.clone();
        changed.data = made_up(e, &e.data);
        if changed.data == event.data {
            changed.iat -= 1;
        }
        let payload = serde_json::to_vec(&changed)
            .map_err(|err| failed(format!("cannot encode an event: {err}")))?;
        let parts: Vec<&str> = jws.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts.first().copied().unwrap_or_default(),
            b64url(&payload),
            parts.get(2).copied().unwrap_or_default()
        );
        let request = delivery_of(cx, e, &[forged]);
        expect_refused(
            cx,
            e,
            "an event changed after it was signed",
            &request,
            ProblemCode::BadEvent,
        )
        .await
    })
    .await
}

/// EVT-04: an event the tester signed whose data its contract's request schema refuses is
/// refused with 400 `bad-event`.
pub(super) async fn off_schema(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let event = event(cx, e, made_up(e, &e.invalid_data));
        let jws = sign_event(&cx.config.tester, &event)?;
        let request = delivery_of(cx, e, &[jws]);
        expect_refused(
            cx,
            e,
            "an event whose data the schema refuses",
            &request,
            ProblemCode::BadEvent,
        )
        .await
    })
    .await
}

/// EVT-05: an event past its `exp` is refused with 400 `bad-event`: an old event sent again
/// can never be delivered.
pub(super) async fn expired_event(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let mut event = event(cx, e, made_up(e, &e.data));
        // Expired 30 s ago, as the envelope case ENV-17 moves its `exp`: a clock a few
        // seconds off does not make it current.
        let now = contracts::unix_now();
        event.iat = now - 60;
        event.exp = now - 30;
        // Signed inside the key's window, so that its `exp` is all that is wrong with it.
        let kid = cx.config.tester.signing.kid();
        if let Err(why) = cx.config.manifest.key_at(kid, event.iat) {
            return Err(CaseFailure::Skipped(format!(
                "the tester's key {kid} was not valid 60 s ago ({why}): an expired event \
                 signed with it would be refused for its key too"
            )));
        }
        let jws = sign_event(&cx.config.tester, &event)?;
        let request = delivery_of(cx, e, &[jws]);
        expect_refused(
            cx,
            e,
            "an event 30 s past its exp",
            &request,
            ProblemCode::BadEvent,
        )
        .await
    })
    .await
}

/// EVT-06: an event the tester signed naming another issuer (the target), or another
/// contract, than its delivery is refused with 400 `bad-event`.
pub(super) async fn foreign_event(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let mut other_iss = event(cx, e, made_up(e, &e.data));
        other_iss.iss = cx.config.target.member.clone();
        // Another contract of the tester's if it provides one, else any other.
        let mut other_contract = event(cx, e, made_up(e, &e.data));
        let manifest = &cx.config.manifest;
        other_contract.contract = manifest
            .provided_by(&cx.config.tester.member)
            .chain(&manifest.doc().contracts)
            .map(|c| c.id.clone())
            .find(|id| id != &e.contract.doc().id)
            .unwrap_or_else(|| format!("{}.other", e.contract.doc().id));
        let mut seen = Vec::new();
        for (what, event) in [
            (format!("iss {}", other_iss.iss), other_iss),
            (
                format!("contract {}", other_contract.contract),
                other_contract,
            ),
        ] {
            let jws = sign_event(&cx.config.tester, &event)?;
            let request = delivery_of(cx, e, &[jws]);
            let what = format!("an event naming {what}");
            seen.push(expect_refused(cx, e, &what, &request, ProblemCode::BadEvent).await?);
        }
        Ok(seen.join("; "))
    })
    .await
}

/// EVT-07: a delivery whose `query` is not `{events, expired}` within bounds — a field more,
/// one event more than a delivery may carry, or nothing at all — is refused with 400
/// `invalid-query` (E4).
pub(super) async fn not_a_delivery(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let (_, jws) = valid_event(cx, e)?;
        let mut seen = Vec::new();
        let extra = delivery(
            cx,
            e,
            &cx.config.tester.member,
            &e.purpose,
            json!({ "events": [jws], "note": "a field a delivery does not have" }),
        );
        seen.push(
            expect_refused(
                cx,
                e,
                "a field more",
                &extra,
                ProblemCode::InvalidQuery,
            )
            .await?,
        );
        let n = MAX_EVENTS_PER_DELIVERY + 1;
        let mut many = Vec::with_capacity(n);
        for _ in 0..n {
            many.push(valid_event(cx, e)?.1);
        }
        let request = delivery_of(cx, e, &many);
        let size = cx.sign(&cx.config.tester, &request)?.len();
        let what = format!("{n} events");
        if size > MAX_REQUEST_BYTES {
            seen.push(format!(
                "{what}: not sent, its {size} bytes are over the {MAX_REQUEST_BYTES} a request may have"
            ));
        } else {
            seen.push(
                expect_refused(cx, e, &what, &request, ProblemCode::InvalidQuery).await?,
            );
        }
        let empty = delivery_of(cx, e, &[]);
        seen.push(
            expect_refused(
                cx,
                e,
                "no event and no notice",
                &empty,
                ProblemCode::InvalidQuery,
            )
            .await?,
        );
        Ok(seen.join("; "))
    })
    .await
}

/// EVT-08: a delivery for a purpose the manifest does not grant the target is refused with
/// 403 `forbidden` (E3); so, with a `[second]` member, is one from a member that does not
/// provide the contract, of an event it signed itself (E2).
pub(super) async fn not_granted(cx: &Context) -> CaseResult {
    for_each(cx, |e| async move {
        let granted = cx
            .config
            .manifest
            .contract(&e.contract.reference())
            .and_then(|c| cx.config.manifest.grant(c, &cx.config.target.member))
            .unwrap_or_default();
        // A purpose the contract names that the target is not granted, or else one no
        // contract names.
        let purpose = e
            .contract
            .doc()
            .purposes
            .iter()
            .find(|p| !granted.contains(p))
            .cloned()
            .unwrap_or_else(|| "conformance-not-granted".to_owned());
        let (_, jws) = valid_event(cx, e)?;
        let request = delivery(
            cx,
            e,
            &cx.config.tester.member,
            &purpose,
            json!({ "events": [jws] }),
        );
        let what = format!("purpose `{purpose}`");
        let mut seen = vec![expect_refused(cx, e, &what, &request, ProblemCode::Forbidden).await?];
        match cx.second() {
            Ok((second, tls)) => {
                let mut event = event(cx, e, made_up(e, &e.data));
                event.iss = second.member.clone();
                let jws = sign_event(second, &event)?;
                let request = delivery(
                    cx,
                    e,
                    &second.member,
                    &e.purpose,
                    json!({ "events": [jws] }),
                );
                let body = cx.sign(second, &request)?;
                let path = ContractRef::new(&request.contract, &request.version);
                let reply = cx
                    .post(
                        tls,
                        &path,
                        Some(contracts::envelope::JOSE_MEDIA_TYPE),
                        full(body),
                    )
                    .await?;
                let what = format!("from {}, which does not provide it", second.member);
                let (_, line) = expect_problem(&reply, ProblemCode::Forbidden)
                    .map_err(|why| failed(format!("{}: {what}: {why}", e.contract.reference())))?;
                seen.push(format!("{what}: {line}"));
            }
            Err(_) => seen.push("no [second] member to deliver from another".into()),
        }
        Ok(seen.join("; "))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement_changed() -> EventContract {
        let contract = contracts::embedded_catalog()
            .unwrap()
            .into_iter()
            .find(|c| c.doc().id == "placement.changed")
            .unwrap();
        EventContract {
            contract,
            purpose: "citizen-protection".into(),
            data: json!({"placement": "900000000000", "change": "ended", "on": "2026-12-06"}),
            invalid_data: json!({"placement": "900000000000", "change": "moved", "on": "2026-12-06"}),
        }
    }

    #[test]
    fn a_made_up_subject_keeps_the_shape_of_the_configured_one_and_differs_each_time() {
        let e = placement_changed();
        let a = made_up(&e, &e.data);
        let b = made_up(&e, &e.data);
        let subject = |d: &Value| d["placement"].as_str().unwrap().to_owned();
        assert_ne!(subject(&a), subject(&b));
        for d in [&a, &b] {
            assert_eq!(subject(d).len(), 12);
            assert!(!subject(d).starts_with('0'), "{d}");
            assert_eq!(d["change"], "ended");
            assert!(e.contract.check_request(d, "/data").is_ok(), "{d}");
        }
        // Data the schema refuses is made up all the same: it stays refused.
        let invalid = made_up(&e, &e.invalid_data);
        assert!(e.contract.check_request(&invalid, "/data").is_err());
        assert_ne!(subject(&invalid), "900000000000");
    }

    #[test]
    fn a_subject_of_one_digit_is_made_up_as_one_that_is_not_0() {
        let mut e = placement_changed();
        e.data = json!({"placement": "1", "change": "ended", "on": "2026-12-06"});
        for _ in 0..50 {
            let made = made_up(&e, &e.data);
            let digit = made["placement"].as_str().unwrap();
            assert_eq!(digit.len(), 1);
            assert_ne!(digit, "0");
        }
    }
}
