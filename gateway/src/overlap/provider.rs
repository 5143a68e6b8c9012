//! The provider's side of an overlap contract (PROTOCOL.md §2.7): a run — the consumer's
//! groups re-blinded as they arrive while the provider's own list is read and blinded, under
//! a key drawn for the run — and a report of what the consumer counted, checked against the
//! run it names in this provider's own evidence.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use audit::record::OverlapFigures;
use contracts::envelope::{ANSWER_TYP, REQUEST_TYP};
use contracts::psi::wire::{
    ListsReceiver, OverlapQuery, OverlapTerms, Report, RunAnswer, RunQuery, frame_lists,
    run_context,
};
use contracts::psi::{
    BlindingKey, DEFAULT_FRAME_BYTES, ListKind, POINT_LEN, Point, Reblinder, blind,
};
use contracts::{
    ContractRef, ExchangeAnswer, ExchangeId, ExchangeRequest, ParsedJws, SchemaViolation,
};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use super::body::{self, Lists, ReceiveError};
use crate::exchange::refusal::Refusal;
use crate::gateway::{Gateway, Provided};
use crate::trail::Trail;

/// What an overlap contract answers: the result to sign and, for a run, the lists that
/// follow the signed answer with the bulkhead slot the run holds until it is recorded (the
/// day's count of runs is read from the log, so a run must be on it before the next one of
/// this gateway counts).
pub(crate) struct Answered {
    pub(crate) result: Value,
    pub(crate) lists: Option<(Vec<u8>, RunHold)>,
}

/// What a run holds until it is recorded: its slot of the contract's bulkhead, and this
/// gateway's one run at a time — so that the next run's count of the day's runs, read from
/// the log, includes this one.
pub(crate) struct RunHold {
    _slot: OwnedSemaphorePermit,
    _run: OwnedMutexGuard<()>,
}

/// Answers `request`, a run (whose lists are `lists`) or a report, of the overlap contract
/// `reference` under `terms`.
pub(crate) async fn answer(
    gw: &Gateway,
    provided: &Provided,
    reference: &ContractRef,
    terms: &OverlapTerms,
    request: &ExchangeRequest,
    lists: Option<Lists<Incoming>>,
    trail: &mut Trail,
) -> Result<Answered, Refusal> {
    let query: OverlapQuery = serde_json::from_value(request.query.clone())
        .map_err(|e| invalid("/query", e.to_string()))?;
    match (query, lists) {
        (OverlapQuery::Run(run), Some(lists)) => {
            run_answer(gw, provided, reference, terms, request, &run, lists, trail).await
        }
        (OverlapQuery::Run(_), None) => Err(Refusal::BadFrames(
            "a run's lists follow its envelope in an application/simpul-psi body; this body has none"
                .into(),
        )),
        (OverlapQuery::Report(report), None) => {
            ExchangeId::parse(&report.run).map_err(|_| {
                invalid(
                    "/query/report/run",
                    "not an exchange id in lower-case hyphenated form".into(),
                )
            })?;
            // The report's record names its run: both are found together, and the day's
            // count of runs leaves reports out. It holds what the report says.
            trail.set_lookup_id(&report.run);
            if report.groups.len() <= audit::record::MAX_OVERLAP_GROUPS {
                trail.set_overlap(OverlapFigures {
                    groups: report.groups.iter().map(|g| g.size).collect(),
                    theirs: Some(report.theirs),
                    overlaps: Some(report.groups.iter().map(|g| g.overlap).collect()),
                });
            }
            check_report(gw, reference, request, &report).await?;
            Ok(Answered {
                result: serde_json::json!({ "recorded": report.run }),
                lists: None,
            })
        }
        (OverlapQuery::Report(_), Some(_)) => Err(Refusal::BadFrames(
            "a report carries no lists: send it as application/jose".into(),
        )),
    }
}

fn invalid(pointer: &str, message: String) -> Refusal {
    Refusal::InvalidQuery(vec![SchemaViolation {
        pointer: pointer.to_owned(),
        message,
    }])
}

#[allow(clippy::too_many_arguments)]
async fn run_answer(
    gw: &Gateway,
    provided: &Provided,
    reference: &ContractRef,
    terms: &OverlapTerms,
    request: &ExchangeRequest,
    run: &RunQuery,
    lists: Lists<Incoming>,
    trail: &mut Trail,
) -> Result<Answered, Refusal> {
    let limits = terms.limits();
    let groups = run.groups.len();
    if groups == 0 || groups > limits.max_groups {
        return Err(invalid(
            "/query/run/groups",
            format!("1 to {} groups, not {groups}", limits.max_groups),
        ));
    }
    // The run's record holds the sizes its envelope announced, whatever becomes of it.
    let mut figures = OverlapFigures {
        groups: run.groups.iter().map(|g| g.size).collect(),
        theirs: None,
        overlaps: None,
    };
    trail.set_overlap(figures.clone());
    let mut total = 0u64;
    for (i, group) in run.groups.iter().enumerate() {
        if group.size < limits.min_set as u64 {
            return Err(Refusal::SetTooSmall {
                list: format!("group {i}"),
                min: limits.min_set,
                contract: reference.clone(),
            });
        }
        if contracts::canonical::b64url_decode(&group.digest).is_none_or(|d| d.len() != 32) {
            return Err(invalid(
                &format!("/query/run/groups/{i}/digest"),
                "not the base64url of 32 bytes".into(),
            ));
        }
        total = total.saturating_add(group.size);
    }
    if total > limits.max_set as u64 {
        return Err(invalid(
            "/query/run/groups",
            format!(
                "the groups hold {total} identifiers together, at most {}",
                limits.max_set
            ),
        ));
    }
    // One slot of the contract's bulkhead per run, held until the run is recorded.
    let Ok(slot) = provided.bulkhead.enter().await else {
        provided.counters.bulkhead_rejected.increment(1);
        return Err(Refusal::AtCapacity {
            contract: reference.clone(),
        });
    };
    // One run at a time on this gateway: each is counted before it starts and recorded
    // before the next is counted (a run costs both cores for a while anyway).
    let Ok(one_run) = gw.provider.overlap_run.clone().try_lock_owned() else {
        return Err(Refusal::RunInProgress {
            me: gw.member.clone(),
        });
    };
    runs_left(gw, reference, terms, request).await?;
    provided.counters.adapter_calls.increment(1);

    let key = Arc::new(BlindingKey::generate().map_err(|e| Refusal::CannotSign(e.to_string()))?);
    let context = run_context(&request.id, reference);
    // The provider's own list, read and blinded while the consumer's groups arrive.
    let own = {
        let (key, context) = (key.clone(), context.clone());
        async move {
            let rows = provided.adapter.list().await.map_err(|e| {
                tracing::warn!(error = %e, "adapter failed");
                match e {
                    adapters::AdapterError::Timeout(_) => Refusal::AdapterTimeout(e.to_string()),
                    adapters::AdapterError::Unavailable(_) => Refusal::BackendUnavailable,
                    adapters::AdapterError::Failed(_) => Refusal::BackendFailed,
                }
            })?;
            tokio::task::spawn_blocking(move || blind(&key, &context, &rows.identifiers))
                .await
                .map_err(|e| Refusal::CannotSign(format!("blinding did not finish: {e}")))
        }
    };
    let (records, mut rx) = body::channel();
    let expected = (0u32..)
        .zip(&run.groups)
        .map(|(i, g)| (ListKind::Points, i, g.clone()))
        .collect();
    let receiving = lists.receive(
        ListsReceiver::new(expected, &limits),
        records,
        body::lists_deadline(total.saturating_mul(POINT_LEN as u64)),
    );
    let reblinding = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            let mut reblinders: Vec<Reblinder<'_>> = (0u32..)
                .take(groups)
                .map(|i| Reblinder::new(&key, i, &limits))
                .collect();
            while let Some((place, records)) = rx.blocking_recv() {
                reblinders[place].push(&records)?;
            }
            reblinders
                .into_iter()
                .map(Reblinder::finish)
                .collect::<Result<Vec<_>, _>>()
        })
    };
    let (received, reblinded, own) = tokio::join!(receiving, reblinding, own);
    let reblinded =
        reblinded.map_err(|e| Refusal::CannotSign(format!("re-blinding did not finish: {e}")))?;
    match received {
        // The thread refused a list: its reason is the one to give.
        Err(ReceiveError::Stopped) => {}
        Err(ReceiveError::Late(limit)) => {
            return Err(Refusal::Body(contracts::Problem::new(
                contracts::ProblemCode::RequestTimeout,
                ReceiveError::Late(limit).to_string(),
            )));
        }
        Err(ReceiveError::Broken(e)) => {
            return Err(Refusal::Body(contracts::Problem::new(
                contracts::ProblemCode::Malformed,
                format!("cannot read the body: {e}"),
            )));
        }
        Err(e) => return Err(Refusal::BadFrames(e.to_string())),
        Ok(()) => {}
    }
    let answers = reblinded.map_err(|e| Refusal::BadFrames(e.to_string()))?;
    let own: Vec<Point> = own?;
    figures.theirs = Some(own.len() as u64);
    trail.set_overlap(figures);
    if own.len() < limits.min_set {
        return Err(Refusal::SetTooSmall {
            list: "the provider's list".into(),
            min: limits.min_set,
            contract: reference.clone(),
        });
    }
    if own.len() > limits.max_set {
        tracing::warn!(
            size = own.len(),
            max = limits.max_set,
            "the list binding holds more distinct identifiers than the contract's max_set"
        );
        return Err(Refusal::BackendFailed);
    }
    let mut out: Vec<(ListKind, u32, &[u8])> = (0u32..)
        .zip(&answers)
        .map(|(i, a)| (ListKind::Digests, i, a.as_flattened()))
        .collect();
    out.push((ListKind::Points, 0, own.as_flattened()));
    let (framed, mut summaries) = frame_lists(&out, DEFAULT_FRAME_BYTES)
        .map_err(|e| Refusal::CannotSign(format!("cannot frame the answer: {e}")))?;
    let theirs = summaries
        .pop()
        .ok_or_else(|| Refusal::CannotSign("no list framed".into()))?;
    let result = serde_json::to_value(RunAnswer {
        theirs,
        answers: summaries,
    })
    .map_err(|e| Refusal::CannotSign(e.to_string()))?;
    Ok(Answered {
        result,
        lists: Some((
            framed,
            RunHold {
                _slot: slot,
                _run: one_run,
            },
        )),
    })
}

/// Refuses a run once the consumer has made its runs for this purpose today (UTC), as the
/// audit log counts them.
async fn runs_left(
    gw: &Gateway,
    reference: &ContractRef,
    terms: &OverlapTerms,
    request: &ExchangeRequest,
) -> Result<(), Refusal> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let day = 86_400;
    let midnight = now.as_secs() - now.as_secs() % day;
    let made = gw
        .audit
        .count_answered(
            &reference.id,
            &reference.version,
            request.iss.as_str(),
            &request.purpose,
            (midnight * 1_000) as i64,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot count the day's overlap runs");
            Refusal::BackendUnavailable
        })?;
    let runs = terms.runs_per_day();
    if made >= u64::from(runs) {
        return Err(Refusal::RunsExhausted {
            consumer: request.iss.clone(),
            contract: reference.clone(),
            purpose: request.purpose.clone(),
            runs,
            retry_after: Duration::from_secs(midnight + day).saturating_sub(now),
        });
    }
    Ok(())
}

/// A report names a run this provider answered to the same consumer for the same contract,
/// with the sizes the run announced and overlaps no larger than their groups.
async fn check_report(
    gw: &Gateway,
    reference: &ContractRef,
    request: &ExchangeRequest,
    report: &Report,
) -> Result<(), Refusal> {
    let mismatch = |why: String| Refusal::RunMismatch(format!("run {}: {why}", report.run));
    let kept = gw.audit.evidence(&report.run).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot read the evidence of a reported run");
        Refusal::BackendUnavailable
    })?;
    // This provider's record of the run: a request from the reporting consumer to this
    // member, and the answer signed here.
    let run = kept.iter().find_map(|ev| {
        let asked: ExchangeRequest = payload(&ev.request, REQUEST_TYP)?;
        let answered: ExchangeAnswer = payload(ev.response.as_deref()?, ANSWER_TYP)?;
        (asked.iss == request.iss
            && asked.purpose == request.purpose
            && asked.aud == gw.member
            && answered.iss == gw.member
            && asked.contract == reference.id
            && asked.version == reference.version)
            .then_some((asked, answered))
    });
    let Some((asked, answered)) = run else {
        return Err(mismatch(format!(
            "{} answered no run of {reference} under this id to {} for purpose {} whose evidence it keeps",
            gw.member, request.iss, request.purpose
        )));
    };
    let (Ok(OverlapQuery::Run(run)), Ok(answer)) = (
        serde_json::from_value::<OverlapQuery>(asked.query),
        serde_json::from_value::<RunAnswer>(answered.result),
    ) else {
        return Err(mismatch("the exchange under this id was not a run".into()));
    };
    if report.theirs != answer.theirs.size {
        return Err(mismatch(format!(
            "the report says the provider's list held {}, the run's answer announced {}",
            report.theirs, answer.theirs.size
        )));
    }
    if report.groups.len() != run.groups.len() {
        return Err(mismatch(format!(
            "the report has {} groups, the run had {}",
            report.groups.len(),
            run.groups.len()
        )));
    }
    for (i, (reported, asked)) in report.groups.iter().zip(&run.groups).enumerate() {
        if reported.size != asked.size || reported.overlap > reported.size {
            return Err(mismatch(format!(
                "group {i}: the report says {} of {}, the run announced {} identifiers",
                reported.overlap, reported.size, asked.size
            )));
        }
    }
    Ok(())
}

/// The payload of one of this gateway's own stored envelopes, read as `T`.
fn payload<T: serde::de::DeserializeOwned>(jws: &str, typ: &'static str) -> Option<T> {
    let parsed = ParsedJws::parse(jws, typ).ok()?;
    serde_json::from_slice(&parsed.payload).ok()
}
