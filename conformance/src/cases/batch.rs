//! Batches: a batch contract (PROTOCOL.md §2.5) bounds its items by its request schema,
//! reads a body up to its own `max_request_bytes` and refuses one beyond it. That a batch
//! spends one unit of the rate per item is LIM-02, with the other rate case.
//!
//! The cases judge every batch contract the target provides, as its served documents (checked
//! against the manifest's digests) say. A target that provides none passes them as not
//! applicable; one that provides a batch contract the configuration does not exercise makes
//! them skip, which fails the run: a partner cannot pass them by leaving the contract out.

use contracts::contract::Batch;
use contracts::envelope::MAX_REQUEST_BYTES;
use contracts::{Contract, ExchangeRequest, ProblemCode};
use serde_json::Value;

use super::{CaseFailure, CaseResult, Context, error_pointers, expect_problem, failed};
use crate::config::ContractUnderTest;

/// What a case says of a target without batch contracts.
const NONE: &str = "not applicable: the target provides no batch contract";

/// A batch contract of the target, with what the configuration gives to exercise it.
pub(super) struct BatchUnderTest<'c> {
    /// The configured contract: purpose and queries.
    pub contract: &'c ContractUnderTest,
    /// Its document, as the target serves it and the manifest pins it.
    pub document: Contract,
    /// Its `batch`.
    pub batch: Batch,
    /// The first item of its first configured query, which the cases repeat.
    item: Value,
}

impl BatchUnderTest<'_> {
    /// The first configured query with `n` copies of its first item.
    pub fn query_with(&self, n: usize) -> Value {
        let mut query = self.contract.queries[0].clone();
        if let Some(slot) = query.pointer_mut(&self.batch.items) {
            *slot = Value::Array(vec![self.item.clone(); n]);
        }
        query
    }

    /// A fresh request from the tester with `n` items, and its signed body.
    pub fn signed(&self, cx: &Context, n: usize) -> Result<(ExchangeRequest, String), CaseFailure> {
        let mut request = cx.request(self.contract);
        request.query = self.query_with(n);
        let jws = cx.sign(&cx.config.tester, &request)?;
        Ok((request, jws))
    }

    /// The most items that fit, with the configured item, in the contract's body limit: at
    /// most `max_items`, found by halving.
    pub fn fitting(&self, cx: &Context) -> Result<usize, CaseFailure> {
        let limit = self.document.max_request_bytes();
        let mut n = self.batch.max_items as usize;
        while n > 1 && self.signed(cx, n)?.1.len() > limit {
            n /= 2;
        }
        Ok(n)
    }

    fn label(&self) -> String {
        self.contract.reference.to_string()
    }
}

/// The batch contracts the target provides, each with its configuration; empty when it
/// provides none.
pub(super) async fn batch_contracts(cx: &Context) -> Result<Vec<BatchUnderTest<'_>>, CaseFailure> {
    let mut out = Vec::new();
    for reference in super::contract::provided(cx) {
        let document = super::contract::fetch_contract(cx, &reference).await?;
        let Some(batch) = document.doc().batch.clone() else {
            continue;
        };
        let contract = cx
            .config
            .contracts
            .iter()
            .find(|c| c.reference == reference)
            .ok_or_else(|| {
                CaseFailure::Skipped(format!(
                    "{reference} is a batch contract of the target: configure it under \
                     [[contracts]] with a granted purpose and a valid batch query"
                ))
            })?;
        let item = contract.queries[0]
            .pointer(&batch.items)
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .cloned()
            .ok_or_else(|| {
                CaseFailure::Skipped(format!(
                    "{reference}: the first configured query has no item in an array at {}",
                    batch.items
                ))
            })?;
        out.push(BatchUnderTest {
            contract,
            document,
            batch,
            item,
        });
    }
    Ok(out)
}

/// The observations of a case over every batch contract, or [`NONE`].
fn observed(seen: Vec<String>) -> CaseResult {
    if seen.is_empty() {
        Ok(NONE.into())
    } else {
        Ok(seen.join("; "))
    }
}

pub(super) async fn too_many_items(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for b in batch_contracts(cx).await? {
        let n = b.batch.max_items as usize + 1;
        let (_, jws) = b.signed(cx, n)?;
        let limit = b.document.max_request_bytes();
        if jws.len() > limit {
            return Err(CaseFailure::Skipped(format!(
                "{}: {n} copies of the first configured item make a body of {} bytes, over the \
                 contract's max_request_bytes ({limit}): configure a shorter first item",
                b.label(),
                jws.len()
            )));
        }
        let reply = cx.post_jws(&b.contract.reference, jws).await?;
        let (problem, line) = expect_problem(&reply, ProblemCode::InvalidQuery)
            .map_err(|e| failed(format!("{} with {n} items: {e}", b.label())))?;
        let want = format!("/query{}", b.batch.items);
        let pointers = error_pointers(&problem);
        if !pointers.contains(&want.as_str()) {
            return Err(failed(format!(
                "{} with {n} items: the problem's errors point at {pointers:?}, not at the array {want}",
                b.label()
            )));
        }
        seen.push(format!(
            "{} with {n} items: {line} (pointer {want})",
            b.label()
        ));
    }
    observed(seen)
}

pub(super) async fn large_body_answered(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for b in batch_contracts(cx).await? {
        let limit = b.document.max_request_bytes();
        if limit <= MAX_REQUEST_BYTES {
            seen.push(format!(
                "{}: not applicable: it keeps the protocol's {MAX_REQUEST_BYTES}-byte limit",
                b.label()
            ));
            continue;
        }
        // The fewest items whose body passes 64 KiB: the body grows by the same few bytes per
        // item, give or take base64's rounding, so a step from one item to two measures it.
        let one = b.signed(cx, 1)?.1.len();
        let per_item = b.signed(cx, 2)?.1.len().saturating_sub(one).max(1);
        let max = b.batch.max_items as usize;
        let mut n = (MAX_REQUEST_BYTES.saturating_sub(one) / per_item + 2).clamp(2, max.max(2));
        let (mut request, mut jws) = b.signed(cx, n)?;
        // Base64's rounding can leave the estimate a little short: a few more items then.
        while jws.len() <= MAX_REQUEST_BYTES && n < max {
            n = (n + n / 64 + 1).min(max);
            (request, jws) = b.signed(cx, n)?;
        }
        if jws.len() > limit || jws.len() <= MAX_REQUEST_BYTES {
            return Err(CaseFailure::Skipped(format!(
                "{}: {n} copies of the first configured item make a body of {} bytes, not between \
                 {MAX_REQUEST_BYTES} and the contract's {limit} within max_items {}: configure a \
                 longer first item",
                b.label(),
                jws.len(),
                b.batch.max_items
            )));
        }
        let bytes = jws.len();
        let reply = cx.post_jws(&b.contract.reference, jws.clone()).await?;
        let (_, line) = super::answers::judge_answer(cx, &b.document, &request, &jws, &reply)
            .map_err(|e| failed(format!("{}: {n} items in {bytes} bytes: {e}", b.label())))?;
        seen.push(format!(
            "{}: {n} items in {bytes} bytes (limit {limit}): {line}",
            b.label()
        ));
    }
    observed(seen)
}

pub(super) async fn over_contract_limit(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for b in batch_contracts(cx).await? {
        let limit = b.document.max_request_bytes();
        let mut request = cx.request(b.contract);
        request.query = b.query_with(1);
        let line =
            super::envelope::oversize_refused(cx, &b.contract.reference, request, limit).await?;
        seen.push(format!("{} (limit {limit}): {line}", b.label()));
    }
    observed(seen)
}
