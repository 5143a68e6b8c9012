//! Overlap contracts (PROTOCOL.md §2.7): a run's lists are held to what its signed envelope
//! announces, and a group under the contract's `min_set` is refused from the envelope alone.
//! Neither case spends one of the tester's runs of the day: both are refused.

use contracts::psi::wire::{OverlapTerms, PSI_MEDIA_TYPE, frame_lists, run_context};
use contracts::psi::{BlindingKey, DEFAULT_FRAME_BYTES, Limits, ListKind, Query};
use contracts::{ContractRef, ExchangeRequest, ProblemCode};
use serde_json::json;

use super::{CaseFailure, CaseResult, Context, expect_problem, failed};
use crate::client::full;
use crate::config::ContractUnderTest;

const NONE: &str = "not applicable: the target provides no overlap contract";

/// The target's overlap contracts the manifest grants the tester, with a purpose granted.
async fn overlap_contracts(
    cx: &Context,
) -> Result<Vec<(ContractUnderTest, OverlapTerms)>, CaseFailure> {
    let tester = &cx.config.tester.member;
    let mut granted = Vec::new();
    let mut not_granted = Vec::new();
    for reference in super::contract::provided(cx) {
        let document = super::contract::fetch_contract(cx, &reference).await?;
        let Some(terms) = document.overlap().cloned() else {
            continue;
        };
        let purpose = cx
            .config
            .manifest
            .contract(&reference)
            .and_then(|c| cx.config.manifest.grant(c, tester))
            .and_then(|purposes| purposes.first().cloned());
        match purpose {
            Some(purpose) => granted.push((
                ContractUnderTest {
                    reference,
                    purpose,
                    queries: Vec::new(),
                    invalid: None,
                },
                terms,
            )),
            None => not_granted.push(reference.to_string()),
        }
    }
    if granted.is_empty() {
        if not_granted.is_empty() {
            return Err(CaseFailure::NotApplicable(NONE.into()));
        }
        return Err(CaseFailure::Skipped(format!(
            "the target provides the overlap contract(s) {} and the manifest grants {tester} \
             none of them: run the suite as a member it grants one",
            not_granted.join(", ")
        )));
    }
    Ok(granted)
}

/// A run of `size` made-up NIKs in one group: its request (query set) and its body, the
/// signed envelope, LF and the group's frames.
fn run(
    cx: &Context,
    contract: &ContractUnderTest,
    size: usize,
) -> Result<(ExchangeRequest, Vec<u8>), CaseFailure> {
    let mut request = cx.request(contract);
    let reference = ContractRef::new(&request.contract, &request.version);
    let key = BlindingKey::generate().map_err(|e| failed(e.to_string()))?;
    let niks = (0..size as u64).map(|n| ("", format!("{:016}", 3_171_000_000_000_000 + n)));
    let limits = Limits {
        min_set: 1,
        ..Limits::default()
    };
    let query = Query::blind(&key, &run_context(&request.id, &reference), niks, &limits)
        .map_err(|e| failed(e.to_string()))?;
    let (frames, groups) = frame_lists(
        &[(ListKind::Points, 0, query.lists()[0].as_flattened())],
        DEFAULT_FRAME_BYTES,
    )
    .map_err(|e| failed(e.to_string()))?;
    request.query = json!({"run": {"groups": groups}});
    let mut body = cx.sign(&cx.config.tester, &request)?.into_bytes();
    body.push(b'\n');
    body.extend_from_slice(&frames);
    Ok((request, body))
}

/// Sends a run's `body` for `request` as the tester, `application/simpul-psi`, and expects
/// `code`; the detail names the contract.
async fn expect_refused(
    cx: &Context,
    request: &ExchangeRequest,
    body: Vec<u8>,
    code: ProblemCode,
) -> CaseResult {
    let path = ContractRef::new(&request.contract, &request.version);
    let reply = cx
        .post(cx.tester_tls(), &path, Some(PSI_MEDIA_TYPE), full(body))
        .await?;
    let (_, line) = expect_problem(&reply, code).map_err(|e| failed(format!("{path}: {e}")))?;
    Ok(format!("{path}: {line}"))
}

/// OVL-01: a point of a run's group changed after the envelope was signed is refused with
/// 400 `bad-frames`: the frame's running digest no longer holds.
pub(super) async fn tampered_list(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for (contract, terms) in overlap_contracts(cx).await? {
        let (request, mut body) = run(cx, &contract, terms.limits().min_set)?;
        if let Some(last) = body.last_mut() {
            *last ^= 1;
        }
        seen.push(expect_refused(cx, &request, body, ProblemCode::BadFrames).await?);
    }
    Ok(seen.join("; "))
}

/// OVL-02: a run whose group holds one identifier fewer than the contract's `min_set` is
/// refused with 422 `set-too-small`.
pub(super) async fn group_below_minimum(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for (contract, terms) in overlap_contracts(cx).await? {
        let min = terms.limits().min_set;
        if min < 2 {
            seen.push(format!(
                "{}: min_set {min} leaves no group to refuse",
                contract.reference
            ));
            continue;
        }
        let (request, body) = run(cx, &contract, min - 1)?;
        seen.push(expect_refused(cx, &request, body, ProblemCode::SetTooSmall).await?);
    }
    Ok(seen.join("; "))
}
