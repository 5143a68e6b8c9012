//! The consumer's side of an overlap run (PROTOCOL.md §2.7, §4.4): one of this gateway's own
//! lists read, grouped, blinded under a key drawn for the run and sent after the signed
//! request; the provider's answer and list re-blinded and counted before the run is recorded;
//! then the count reported to the provider in a second exchange, so that both logs hold it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contracts::envelope::LocalAnswer;
use contracts::psi::wire::{
    GroupCount, ListSummary, ListsReceiver, OverlapQuery, OverlapTerms, Report, RunAnswer,
    RunQuery, frame_lists, frames_in, run_context,
};
use contracts::psi::{
    BlindingKey, DEFAULT_FRAME_BYTES, DIGEST_LEN, Digest, ListKind, PsiError, Query, Reblinder,
};
use contracts::{ContractRef, ExchangeId, Problem, ProblemCode, SchemaViolation};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::consumer::{Caller, CheckedQuery, Outgoing, ask_as};
use crate::gateway::Gateway;
use crate::snapshot::Snapshot;
use audit::record::OverlapFigures;

/// The label of the group that pools the labels with fewer distinct identifiers than the
/// contract's minimum, when a run is grouped.
pub(crate) const OTHER: &str = "(other)";

/// What a member system asks its gateway for an overlap contract (PROTOCOL.md §4.4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalRun {
    /// One of this gateway's lists.
    list: String,
    /// Whether to count per label of the list.
    #[serde(default)]
    grouped: bool,
}

/// How long a run may take from the request to the whole answer: 10 minutes, and a minute
/// more for every million identifiers the consumer sends.
fn run_deadline(identifiers: u64) -> Duration {
    Duration::from_secs(600 + 60 * (identifiers / 1_000_000))
}

fn invalid(pointer: &str, message: String) -> Problem {
    Problem::invalid_query(vec![SchemaViolation {
        pointer: pointer.to_owned(),
        message,
    }])
}

/// A run made ready to send: the list read, grouped, blinded and framed under the run's
/// exchange id.
pub(crate) struct Prepared {
    id: String,
    key: Arc<BlindingKey>,
    query: Query,
    limits: contracts::psi::Limits,
    framed: Vec<u8>,
    checked: CheckedQuery,
    sizes: Vec<u64>,
}

/// Makes a run of `contract` (under `terms`) ready: the local `query` names the list. What
/// this refuses, no exchange has begun for.
pub(crate) async fn prepare(
    gw: &Gateway,
    contract: &ContractRef,
    terms: &OverlapTerms,
    query: Value,
) -> Result<Prepared, Problem> {
    let asked: LocalRun =
        serde_json::from_value(query).map_err(|e| invalid("/query", e.to_string()))?;
    let Some(list) = gw.consumer.lists.get(&asked.list) else {
        let mut names: Vec<&str> = gw.consumer.lists.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(invalid(
            "/query/list",
            format!(
                "{} has no list `{}`; its lists: {}",
                gw.member,
                asked.list,
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    let rows = list.list().await.map_err(|e| {
        tracing::warn!(list = %asked.list, error = %e, "list binding failed");
        Problem::new(
            ProblemCode::Internal,
            format!(
                "{}'s own list `{}` cannot be read (its error is in this gateway's log)",
                gw.member, asked.list
            ),
        )
    })?;
    let limits = terms.limits();
    let labelled: Vec<(String, String)> = match (asked.grouped, rows.labels) {
        (true, Some(labels)) => pool_small(labels, &rows.identifiers, limits.min_set)
            .into_iter()
            .zip(rows.identifiers)
            .collect(),
        (true, None) => {
            return Err(invalid(
                "/query/grouped",
                format!(
                    "the list `{}` has no `label` column to group by",
                    asked.list
                ),
            ));
        }
        (false, _) => rows
            .identifiers
            .into_iter()
            .map(|id| (String::new(), id))
            .collect(),
    };
    let id = ExchangeId::new().to_string();
    let key = Arc::new(
        BlindingKey::generate().map_err(|e| Problem::new(ProblemCode::Internal, e.to_string()))?,
    );
    let context = run_context(&id, contract);
    let blinding = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || Query::blind(&key, &context, labelled, &limits))
    };
    let query = blinding
        .await
        .map_err(|e| Problem::new(ProblemCode::Internal, format!("blinding did not finish: {e}")))?
        .map_err(|e| match e {
            PsiError::TooSmall { list, size, min } => Problem::new(
                ProblemCode::SetTooSmall,
                format!(
                    "group {list} of the list `{}` holds {size} distinct identifiers, {contract} requires {min}",
                    asked.list
                ),
            ),
            other => Problem::new(
                ProblemCode::InvalidQuery,
                format!("the list `{}`: {other}", asked.list),
            ),
        })?;
    let sent: usize = query.lists().iter().map(Vec::len).sum();
    if sent > limits.max_set {
        return Err(Problem::new(
            ProblemCode::InvalidQuery,
            format!(
                "the list `{}` holds {sent} distinct identifiers in its groups, {contract} takes at most {}",
                asked.list, limits.max_set
            ),
        ));
    }
    let lists: Vec<(ListKind, u32, &[u8])> = (0u32..)
        .zip(query.lists())
        .map(|(i, points)| (ListKind::Points, i, points.as_flattened()))
        .collect();
    let (framed, groups) = frame_lists(&lists, DEFAULT_FRAME_BYTES)
        .map_err(|e| Problem::new(ProblemCode::Internal, e.to_string()))?;
    let wire_query = serde_json::to_value(OverlapQuery::Run(RunQuery {
        groups: groups.clone(),
    }))
    .map_err(|e| Problem::new(ProblemCode::Internal, e.to_string()))?;
    let checked = CheckedQuery::check(gw, contract, wire_query)?;
    Ok(Prepared {
        id,
        key,
        query,
        limits,
        framed,
        checked,
        sizes: groups.iter().map(|g| g.size).collect(),
    })
}

/// Runs the `prepared` overlap count of `contract` for `caller` and `purpose`, then reports
/// the count. The answer's `result` is the count; its evidence is the run's signed request
/// and answer. The run and its report each record their own outcome.
pub(crate) async fn run(
    gw: &Gateway,
    snap: &Snapshot,
    caller: &Caller,
    contract: &ContractRef,
    purpose: &str,
    prepared: Prepared,
) -> Result<LocalAnswer, Problem> {
    let Prepared {
        id,
        key,
        query,
        limits,
        framed,
        checked,
        sizes,
    } = prepared;
    let identifiers: u64 = sizes.iter().sum();
    // Whatever the provider announces, its answer is held to the run's bounds.
    let max_answer = crate::overlap::body::answer_bound(&sizes, &limits);
    let labels = query.labels().to_vec();
    let receive = {
        let key = key.clone();
        let sent_sizes = sizes.clone();
        Box::new(move |result: Value, lists: Bytes| {
            Box::pin(async move {
                let counted = tokio::task::spawn_blocking(move || {
                    count(&key, &query, &limits, result, &lists)
                })
                .await
                .map_err(|e| format!("counting did not finish: {e}"))??;
                let figures = OverlapFigures {
                    groups: sent_sizes,
                    theirs: Some(counted.theirs),
                    overlaps: Some(counted.overlaps.clone()),
                };
                let counted = serde_json::to_value(counted).map_err(|e| e.to_string())?;
                Ok((counted, figures))
            }) as crate::consumer::Receiving
        })
    };
    let deadline = Instant::now() + run_deadline(identifiers);
    let mut answer = ask_as(
        gw,
        snap,
        caller,
        contract,
        purpose,
        checked,
        deadline,
        None,
        &id,
        Some(Outgoing {
            lists: framed,
            max_answer,
            receive,
        }),
        Some(OverlapFigures {
            groups: sizes.clone(),
            theirs: None,
            overlaps: None,
        }),
    )
    .await?;
    let counted: Counted = serde_json::from_value(answer.result.clone())
        .map_err(|e| Problem::new(ProblemCode::Internal, e.to_string()))?;
    // The report: the count on both logs, linked to the run.
    let figures = OverlapFigures {
        groups: sizes.clone(),
        theirs: Some(counted.theirs),
        overlaps: Some(counted.overlaps.clone()),
    };
    let report = Report {
        run: id.clone(),
        theirs: counted.theirs,
        groups: sizes
            .iter()
            .zip(&counted.overlaps)
            .map(|(&size, &overlap)| GroupCount { size, overlap })
            .collect(),
    };
    let reported = match serde_json::to_value(OverlapQuery::Report(report))
        .map_err(|e| Problem::new(ProblemCode::Internal, e.to_string()))
        .and_then(|q| CheckedQuery::check(gw, contract, q))
    {
        Ok(q) => {
            let deadline = Instant::now() + gw.consumer.query_deadline;
            let report_id = ExchangeId::new().to_string();
            ask_as(
                gw,
                snap,
                caller,
                contract,
                purpose,
                q,
                deadline,
                Some(&id),
                &report_id,
                None,
                Some(figures),
            )
            .await
        }
        Err(p) => Err(p),
    };
    let total: u64 = counted.overlaps.iter().sum();
    answer.result = json!({
        "overlap": total,
        "theirs": counted.theirs,
        "identifiers": identifiers,
        "groups": labels.iter().zip(&sizes).zip(&counted.overlaps).map(|((label, size), overlap)| {
            json!({"label": label, "size": size, "overlap": overlap})
        }).collect::<Vec<_>>(),
        "report": match &reported {
            Ok(r) => json!({"exchange_id": r.exchange_id, "recorded": true}),
            Err(p) => json!({
                "exchange_id": p.exchange_id,
                "recorded": false,
                "problem": p.type_uri,
            }),
        },
    });
    if let Err(p) = &reported {
        tracing::warn!(run = %id, problem = %p.type_uri, detail = %crate::escaped::Escaped(&p.detail), "the overlap run's report was not recorded by the provider");
    }
    Ok(answer)
}

/// What [`count`] gives the exchange as its result, before the caller's answer is made.
#[derive(Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
struct Counted {
    theirs: u64,
    overlaps: Vec<u64>,
}

/// Labels with fewer than `min_set` distinct identifiers pooled into [`OTHER`]: a label that
/// could only be refused is counted with the other small ones instead (the pool itself may
/// still be under the minimum, and is then refused).
fn pool_small(labels: Vec<String>, identifiers: &[String], min_set: usize) -> Vec<String> {
    let mut distinct: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (label, id) in labels.iter().zip(identifiers) {
        distinct
            .entry(label.as_str())
            .or_default()
            .insert(id.as_str());
    }
    let small: BTreeSet<String> = distinct
        .into_iter()
        .filter(|(_, ids)| ids.len() < min_set)
        .map(|(l, _)| l.to_owned())
        .collect();
    labels
        .into_iter()
        .map(|l| {
            if small.contains(&l) {
                OTHER.to_owned()
            } else {
                l
            }
        })
        .collect()
}

/// The overlap of each group: the answer's lists checked against what its signed `result`
/// announces and what the run sent, the provider's list re-blinded under `key`.
fn count(
    key: &BlindingKey,
    query: &Query,
    limits: &contracts::psi::Limits,
    result: Value,
    lists: &[u8],
) -> Result<Counted, String> {
    let answer: RunAnswer =
        serde_json::from_value(result).map_err(|e| format!("the run's answer: {e}"))?;
    let groups = query.lists();
    if answer.answers.len() != groups.len() {
        return Err(format!(
            "the answer announces {} answers for {} groups",
            answer.answers.len(),
            groups.len()
        ));
    }
    if let Some((i, _)) = answer
        .answers
        .iter()
        .zip(groups)
        .enumerate()
        .find(|(_, (a, g))| a.size != g.len() as u64)
    {
        return Err(format!(
            "the answer for group {i} announces {} digests for {} points",
            answer.answers[i].size,
            groups[i].len()
        ));
    }
    let mut expected: Vec<(ListKind, u32, ListSummary)> = (0u32..)
        .zip(&answer.answers)
        .map(|(i, a)| (ListKind::Digests, i, a.clone()))
        .collect();
    expected.push((ListKind::Points, 0, answer.theirs.clone()));
    let mut receiver = ListsReceiver::new(expected, limits);
    let mut digests: Vec<Vec<Digest>> =
        groups.iter().map(|g| Vec::with_capacity(g.len())).collect();
    let mut theirs = Reblinder::new(key, 0, limits);
    for frame in frames_in(lists) {
        let frame = frame.map_err(|e| format!("the answer's lists: {e}"))?;
        let (place, records) = receiver
            .read(frame)
            .map_err(|e| format!("the answer's lists: {e}"))?;
        match digests.get_mut(place) {
            Some(list) => {
                let (whole, _) = records.as_chunks::<DIGEST_LEN>();
                // Sorted and distinct, as the protocol makes them: a digest repeated would
                // be counted twice.
                let mut before = list.last().copied();
                let ascending = whole.iter().all(|d| {
                    let above = before.is_none_or(|b| b < *d);
                    before = Some(*d);
                    above
                });
                if !ascending {
                    return Err(format!(
                        "the answer for group {place} holds digests out of order or repeated"
                    ));
                }
                list.extend_from_slice(whole);
            }
            None => theirs
                .push(records)
                .map_err(|e| format!("the provider's list: {e}"))?,
        }
    }
    receiver
        .finish()
        .map_err(|e| format!("the answer's lists: {e}"))?;
    let theirs = theirs
        .finish()
        .map_err(|e| format!("the provider's list: {e}"))?;
    let overlap = query
        .overlap(&digests, &theirs)
        .map_err(|e| format!("the answer: {e}"))?;
    Ok(Counted {
        theirs: overlap.theirs as u64,
        overlaps: overlap.groups.iter().map(|g| g.overlap as u64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_under_the_minimum_of_distinct_identifiers_are_pooled() {
        let labels: Vec<String> = ["MY", "MY", "MY", "SA", "HK", "MY", "TW", "TW", "TW"]
            .map(String::from)
            .to_vec();
        // TW has three rows but one identifier.
        let ids: Vec<String> = ["1", "2", "3", "4", "5", "1", "6", "6", "6"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            pool_small(labels, &ids, 3),
            ["MY", "MY", "MY", OTHER, OTHER, "MY", OTHER, OTHER, OTHER]
        );
    }

    /// A provider's answer to `query` made honestly: its lists and its signed `result`.
    fn answer_to(query: &Query, theirs: &[String], context: &[u8]) -> (Value, Vec<u8>) {
        let limits = contracts::psi::Limits {
            min_set: 1,
            ..Default::default()
        };
        let beta = BlindingKey::generate().unwrap();
        let answers: Vec<Vec<Digest>> = (0u32..)
            .zip(query.lists())
            .map(|(i, points)| {
                let mut r = Reblinder::new(&beta, i, &limits);
                r.push(points.as_flattened()).unwrap();
                r.finish().unwrap()
            })
            .collect();
        let own = contracts::psi::blind(&beta, context, theirs);
        let mut lists: Vec<(ListKind, u32, &[u8])> = (0u32..)
            .zip(&answers)
            .map(|(i, a)| (ListKind::Digests, i, a.as_flattened()))
            .collect();
        lists.push((ListKind::Points, 0, own.as_flattened()));
        let (framed, mut summaries) = frame_lists(&lists, DEFAULT_FRAME_BYTES).unwrap();
        let theirs = summaries.pop().unwrap();
        let result = serde_json::to_value(RunAnswer {
            theirs,
            answers: summaries,
        })
        .unwrap();
        (result, framed)
    }

    #[test]
    fn the_answers_lists_are_counted_only_as_their_signed_result_announces_them() {
        let limits = contracts::psi::Limits {
            min_set: 1,
            ..Default::default()
        };
        let nik = |n: u64| format!("{:016}", 3_171_000_000_000_000 + n);
        let alpha = BlindingKey::generate().unwrap();
        let rows: Vec<(String, String)> = (0..300).map(|n| (String::new(), nik(n))).collect();
        let query = Query::blind(&alpha, b"run", rows, &limits).unwrap();
        let theirs: Vec<String> = (200..700).map(nik).collect();
        let (result, lists) = answer_to(&query, &theirs, b"run");
        let counted = count(&alpha, &query, &limits, result.clone(), &lists).unwrap();
        assert_eq!(
            counted,
            Counted {
                theirs: 500,
                overlaps: vec![100]
            }
        );
        // A byte of the provider's points changed after signing.
        let mut tampered = lists.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let e = count(&alpha, &query, &limits, result.clone(), &tampered).unwrap_err();
        assert!(e.contains("running digest"), "{e}");
        // Cut short.
        let e = count(
            &alpha,
            &query,
            &limits,
            result.clone(),
            &lists[..lists.len() - 32],
        )
        .unwrap_err();
        assert!(e.contains("answer's lists"), "{e}");
        // An answer that announces another number of digests than points were sent.
        let mut other = result.clone();
        other["answers"][0]["size"] = json!(299);
        let e = count(&alpha, &query, &limits, other, &lists).unwrap_err();
        assert!(e.contains("299 digests for 300 points"), "{e}");
        // A digest of an answer repeated (the frames made again so that they hold together).
        let mut answer: RunAnswer = serde_json::from_value(result.clone()).unwrap();
        let frames: Vec<&[u8]> = frames_in(&lists).collect::<Result<_, _>>().unwrap();
        let mut digests = frames[0][contracts::psi::HEADER_LEN..].to_vec();
        digests.copy_within(0..DIGEST_LEN, DIGEST_LEN);
        let points = &frames[1][contracts::psi::HEADER_LEN..];
        let (remade, summaries) = frame_lists(
            &[
                (ListKind::Digests, 0, &digests),
                (ListKind::Points, 0, points),
            ],
            DEFAULT_FRAME_BYTES,
        )
        .unwrap();
        answer.answers[0] = summaries[0].clone();
        answer.theirs = summaries[1].clone();
        let e = count(
            &alpha,
            &query,
            &limits,
            serde_json::to_value(answer).unwrap(),
            &remade,
        )
        .unwrap_err();
        assert!(e.contains("out of order or repeated"), "{e}");
        // Under another run's context the provider's points match nothing.
        let (result, lists) = answer_to(&query, &theirs, b"another run");
        let counted = count(&alpha, &query, &limits, result, &lists).unwrap();
        assert_eq!(counted.overlaps, [0]);
    }

    #[test]
    fn the_deadline_grows_with_the_list() {
        assert_eq!(run_deadline(5_000), Duration::from_secs(600));
        assert_eq!(run_deadline(3_000_000), Duration::from_secs(780));
    }
}
