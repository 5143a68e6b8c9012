//! Verifying the kept rows against the civil registry: `identity.verify`'s items and verdicts,
//! the [`Verifier`] the run asks (the member's own gateway's local face in [`LocalFace`]),
//! and the batches sent as many at once as the provider allows — additive increase,
//! halving on overload, `Retry-After` honoured — each retried with back-off a bounded number
//! of times.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::Problem;
use contracts::envelope::LocalAnswer;
use gateway::client::{CallError, PeerClient};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::CleanseError;
use super::progress::Progress;
use super::work::Work;

/// The contract asked.
pub const CONTRACT: &str = "identity.verify";
/// Its version.
pub const VERSION: &str = "1";

/// One item of a batch: what is sent of one kept row, and nothing else of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Item {
    /// The row's line number, as text.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The NIK (well-formed).
    pub nik: String,
    /// The full name as reported, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The birth date, `YYYY-MM-DD`, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// `M` or `F`, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
}

/// The registry's verdict on one item, as the contract's answer gives it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Verdict {
    /// The item's `ref`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The NIK follows the NIK rule.
    pub nik_valid: bool,
    /// The NIK is in the population register.
    pub found: bool,
    /// The name against the registered one.
    pub name: NameVerdict,
    /// Their similarity, when the name was checked.
    #[serde(default)]
    pub name_similarity: Option<f64>,
    /// The birth date against the registered one.
    pub birth_date: Check,
    /// The sex against the registered one.
    pub sex: Check,
    /// The holder's citizenship.
    pub citizenship: Citizenship,
    /// A death is recorded.
    pub deceased: bool,
}

impl Verdict {
    /// A verdict as the work database stores it; `None` if a stored word is unknown.
    #[allow(clippy::too_many_arguments)]
    pub fn from_stored(
        reference: String,
        nik_valid: bool,
        found: bool,
        name: String,
        name_similarity: Option<f64>,
        birth_date: String,
        sex: String,
        citizenship: String,
        deceased: bool,
    ) -> Option<Verdict> {
        Some(Verdict {
            reference,
            nik_valid,
            found,
            name: NameVerdict::parse(&name)?,
            name_similarity,
            birth_date: Check::parse(&birth_date)?,
            sex: Check::parse(&sex)?,
            citizenship: Citizenship::parse(&citizenship)?,
            deceased,
        })
    }
}

/// How a reported name compares with the registered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameVerdict {
    /// The same canonical name.
    Match,
    /// Similar enough (0.90 and up).
    Close,
    /// Another name.
    Mismatch,
    /// No name was sent, or the NIK was not found.
    NotChecked,
}

impl NameVerdict {
    /// The contract's word.
    pub fn as_str(self) -> &'static str {
        match self {
            NameVerdict::Match => "match",
            NameVerdict::Close => "close",
            NameVerdict::Mismatch => "mismatch",
            NameVerdict::NotChecked => "not_checked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Match, Self::Close, Self::Mismatch, Self::NotChecked]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// How a reported value compares with the registered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The same.
    Match,
    /// Different.
    Mismatch,
    /// Not sent, or the NIK was not found.
    NotChecked,
}

impl Check {
    /// The contract's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Match => "match",
            Check::Mismatch => "mismatch",
            Check::NotChecked => "not_checked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Match, Self::Mismatch, Self::NotChecked]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// The holder's citizenship.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Citizenship {
    /// An Indonesian citizen.
    #[serde(rename = "WNI")]
    Wni,
    /// A foreign national holding a NIK.
    #[serde(rename = "WNA")]
    Wna,
    /// The NIK was not found.
    #[serde(rename = "unknown")]
    Unknown,
}

impl Citizenship {
    /// The contract's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Citizenship::Wni => "WNI",
            Citizenship::Wna => "WNA",
            Citizenship::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Wni, Self::Wna, Self::Unknown]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// Why a batch got no verdicts.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// Too fast (429): the provider's rate for this member, or the subsystem's own.
    #[error("{detail}")]
    Throttled {
        /// When to ask again, if the answer said.
        retry_after: Option<Duration>,
        /// The problem, for a person.
        detail: String,
    },
    /// Unavailable for now (503, 504, the gateway unreachable or silent).
    #[error("{detail}")]
    Unavailable {
        /// When to ask again, if the answer said.
        retry_after: Option<Duration>,
        /// The problem, for a person.
        detail: String,
    },
    /// Refused for good: any other problem, or an answer that is not the contract's.
    #[error("{detail}")]
    Refused {
        /// The problem, for a person.
        detail: String,
    },
}

impl VerifyError {
    /// When the answer said to ask again.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            VerifyError::Throttled { retry_after, .. }
            | VerifyError::Unavailable { retry_after, .. } => *retry_after,
            VerifyError::Refused { .. } => None,
        }
    }
}

/// Whoever answers a batch: the member's own gateway in a run, a table in the tests.
pub trait Verifier: Send + Sync + 'static {
    /// The verdicts on `items`, one per item.
    fn verify(
        &self,
        items: &[Item],
    ) -> impl Future<Output = Result<Vec<Verdict>, VerifyError>> + Send;
}

/// The member's own gateway's local face, asked as one of its subsystems.
pub struct LocalFace {
    client: PeerClient,
    url: String,
    purpose: String,
    timeout: Duration,
}

impl LocalFace {
    /// Asks `POST <local>/v1/query/identity.verify/1` through `client` for `purpose`, each
    /// batch within `timeout`.
    pub fn new(client: PeerClient, local_url: &str, purpose: String, timeout: Duration) -> Self {
        LocalFace {
            client,
            url: format!("{local_url}/v1/query/{CONTRACT}/{VERSION}"),
            purpose,
            timeout,
        }
    }
}

impl Verifier for LocalFace {
    async fn verify(&self, items: &[Item]) -> Result<Vec<Verdict>, VerifyError> {
        let body = serde_json::json!({"purpose": self.purpose, "query": {"items": items}});
        let body = serde_json::to_vec(&body).map_err(|e| VerifyError::Refused {
            detail: format!("cannot encode a batch: {e}"),
        })?;
        let reply = self
            .client
            .call(
                http::Method::POST,
                &self.url,
                "application/json",
                body.into(),
                self.timeout,
            )
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e @ (CallError::Timeout(_) | CallError::Unreachable { .. })) => {
                return Err(VerifyError::Unavailable {
                    retry_after: None,
                    detail: format!("{}: {e}", self.url),
                });
            }
            Err(e) => {
                return Err(VerifyError::Refused {
                    detail: format!("{}: {e}", self.url),
                });
            }
        };
        if reply.status.is_success() {
            return read_answer(&reply.body).map_err(|detail| VerifyError::Refused { detail });
        }
        let problem: Option<Problem> = serde_json::from_slice(&reply.body).ok();
        let header = reply
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let retry_after = header
            .or_else(|| problem.as_ref().and_then(|p| p.retry_after))
            .map(Duration::from_secs);
        let detail = match &problem {
            Some(p) => one_line(&format!(
                "{} {}: {}: {}",
                reply.status.as_u16(),
                p.type_uri.trim_start_matches("urn:simpul:error:"),
                p.title,
                p.detail
            )),
            None => format!("{} without a problem document", reply.status),
        };
        Err(match reply.status.as_u16() {
            429 => VerifyError::Throttled {
                retry_after,
                detail,
            },
            503 | 504 => VerifyError::Unavailable {
                retry_after,
                detail,
            },
            _ => VerifyError::Refused { detail },
        })
    }
}

/// The verdicts of a local-face answer (`result.items`).
fn read_answer(body: &[u8]) -> Result<Vec<Verdict>, String> {
    #[derive(Deserialize)]
    struct Items {
        items: Vec<Verdict>,
    }
    let answer: LocalAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("the gateway's answer is not a local-face answer: {e}"))?;
    let result: Items = serde_json::from_value(answer.result)
        .map_err(|e| format!("the answer is not identity.verify's: {e}"))?;
    Ok(result.items)
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How batches are paced: the concurrency to start at and never exceed, and the retries.
#[derive(Clone, Debug)]
pub struct Pacing {
    /// Batches in flight at the start.
    pub start: usize,
    /// Batches in flight at most.
    pub max: usize,
    /// Attempts per batch before the run fails.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled for each further one.
    pub first_backoff: Duration,
    /// The longest wait the doubling reaches (a longer `Retry-After` is still honoured).
    pub max_backoff: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            start: 2,
            max: 16,
            max_attempts: 8,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl Pacing {
    /// The wait after a batch's `failed`-th failed attempt: the first back-off doubled each
    /// time, capped, or the answer's `Retry-After` when longer.
    pub fn backoff(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(1u32 << failed.saturating_sub(1).min(20));
        doubled
            .min(self.max_backoff)
            .max(retry_after.unwrap_or_default())
    }
}

/// The batches in flight allowed, adapted to the answers (AIMD): one more after a round of
/// successes (as many answers as the limit), half on an overloaded answer — once per round,
/// so the answers to batches sent before a cut do not cut again — and none at all until a
/// `Retry-After` has passed. Time is handed in.
#[derive(Clone, Debug)]
pub struct Concurrency {
    limit: usize,
    max: usize,
    /// Successes since the limit last changed.
    credit: usize,
    paused_until: Option<Instant>,
    last_cut: Option<Instant>,
}

impl Concurrency {
    /// Starting at `start` batches in flight, never more than `max` (both at least 1).
    pub fn new(start: usize, max: usize) -> Self {
        let max = max.max(1);
        Concurrency {
            limit: start.clamp(1, max),
            max,
            credit: 0,
            paused_until: None,
            last_cut: None,
        }
    }

    /// Batches that may be in flight at `now`.
    pub fn window(&self, now: Instant) -> usize {
        match self.paused_until {
            Some(until) if now < until => 0,
            _ => self.limit,
        }
    }

    /// When sending may start again after a `Retry-After`, if that is after `now`.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    /// A batch was answered.
    pub fn succeeded(&mut self) {
        self.credit += 1;
        if self.credit >= self.limit {
            self.limit = (self.limit + 1).min(self.max);
            self.credit = 0;
        }
    }

    /// A batch sent at `sent_at` was refused as overloaded at `now`, asking to wait
    /// `retry_after`.
    pub fn overloaded(&mut self, sent_at: Instant, now: Instant, retry_after: Option<Duration>) {
        if self.last_cut.is_none_or(|cut| sent_at >= cut) {
            self.limit = (self.limit / 2).max(1);
            self.credit = 0;
            self.last_cut = Some(now);
        }
        if let Some(wait) = retry_after {
            let until = now + wait;
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        }
    }
}

/// A batch waiting to be sent.
struct Waiting {
    id: i64,
    /// Attempts made so far.
    failed: u32,
    ready_at: Instant,
}

/// A batch's attempt, finished.
struct Flight {
    waiting: Waiting,
    items: Vec<Item>,
    sent_at: Instant,
    result: Result<Vec<Verdict>, VerifyError>,
}

/// Verifies every batch not yet done, each answer written with its batch marked done in one
/// transaction. Returns when all are done; fails on a refusal, an answer that does not fit
/// its batch, or a batch that failed `pacing.max_attempts` times. Dropped, it stops at once:
/// the batches in flight are abandoned and asked again by the next run.
pub async fn verify_batches<V: Verifier>(
    work: &mut Work,
    verifier: Arc<V>,
    pacing: &Pacing,
    progress: &Progress,
) -> Result<(), CleanseError> {
    let start = Instant::now();
    let mut queue: VecDeque<Waiting> = work
        .pending_batches()
        .await?
        .into_iter()
        .map(|id| Waiting {
            id,
            failed: 0,
            ready_at: start,
        })
        .collect();
    let (total, done) = work.verify_counts().await?;
    let mut meter = progress.meter("verify", Some(total), done);
    let mut control = Concurrency::new(pacing.start, pacing.max);
    let mut flying: JoinSet<Flight> = JoinSet::new();
    loop {
        let now = Instant::now();
        while flying.len() < control.window(now) {
            // The lowest batch ready: a retried batch goes before those not yet tried.
            let Some(next) = queue
                .iter()
                .enumerate()
                .filter(|(_, w)| w.ready_at <= now)
                .min_by_key(|(_, w)| w.id)
                .map(|(i, _)| i)
            else {
                break;
            };
            let Some(waiting) = queue.remove(next) else {
                break;
            };
            let items = work.batch_items(waiting.id).await?;
            let verifier = verifier.clone();
            flying.spawn(async move {
                let sent_at = Instant::now();
                let result = verifier.verify(&items).await;
                Flight {
                    waiting,
                    items,
                    sent_at,
                    result,
                }
            });
        }
        if flying.is_empty() && queue.is_empty() {
            break;
        }
        let wake = queue
            .iter()
            .map(|w| w.ready_at)
            .filter(|at| *at > now)
            .chain(control.paused_until(now))
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        tokio::select! {
            Some(joined) = flying.join_next(), if !flying.is_empty() => {
                let flight = joined.map_err(|e| CleanseError::Process(format!("a batch's task failed: {e}")))?;
                if let Some(retry) = settle(work, flight, &mut control, pacing, &mut meter).await? {
                    queue.push_back(retry);
                }
            }
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
        meter.tick();
    }
    meter.finish();
    Ok(())
}

/// Records a finished attempt: its verdicts, or the batch to try again.
async fn settle(
    work: &mut Work,
    flight: Flight,
    control: &mut Concurrency,
    pacing: &Pacing,
    meter: &mut super::progress::Meter,
) -> Result<Option<Waiting>, CleanseError> {
    let Flight {
        waiting,
        items,
        sent_at,
        result,
    } = flight;
    let rows = || {
        let line = |i: Option<&Item>| i.map_or("?", |i| i.reference.as_str()).to_owned();
        (line(items.first()), line(items.last()))
    };
    match result {
        Ok(verdicts) => {
            check_answer(&items, &verdicts).map_err(|reason| CleanseError::Verify {
                rows: rows(),
                reason,
            })?;
            work.record_batch(waiting.id, &verdicts).await?;
            control.succeeded();
            meter.advance(items.len() as u64);
            Ok(None)
        }
        Err(VerifyError::Refused { detail }) => Err(CleanseError::Verify {
            rows: rows(),
            reason: detail,
        }),
        Err(overloaded) => {
            let now = Instant::now();
            let retry_after = overloaded.retry_after();
            control.overloaded(sent_at, now, retry_after);
            let failed = waiting.failed + 1;
            if failed >= pacing.max_attempts {
                return Err(CleanseError::GaveUp {
                    rows: rows(),
                    attempts: failed,
                    last: overloaded.to_string(),
                });
            }
            let wait = pacing.backoff(failed, retry_after);
            tracing::info!(
                batch = waiting.id,
                attempt = failed,
                wait_ms = wait.as_millis() as u64,
                "batch not answered, asking again: {overloaded}"
            );
            Ok(Some(Waiting {
                id: waiting.id,
                failed,
                ready_at: now + wait,
            }))
        }
    }
}

/// An answer fits its batch when it has one verdict for each item sent, and no other.
fn check_answer(items: &[Item], verdicts: &[Verdict]) -> Result<(), String> {
    let mut sent: Vec<&str> = items.iter().map(|i| i.reference.as_str()).collect();
    let mut answered: Vec<&str> = verdicts.iter().map(|v| v.reference.as_str()).collect();
    sent.sort_unstable();
    answered.sort_unstable();
    if sent == answered {
        Ok(())
    } else {
        Err(format!(
            "the answer has {} verdicts for {} items, or refs that were not sent",
            verdicts.len(),
            items.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn concurrency_grows_by_one_batch_per_round_of_successes_up_to_its_maximum() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(2, 4);
        assert_eq!(c.window(t0), 2);
        c.succeeded();
        assert_eq!(c.window(t0), 2);
        c.succeeded();
        assert_eq!(c.window(t0), 3);
        for _ in 0..2 {
            c.succeeded();
        }
        assert_eq!(c.window(t0), 3);
        c.succeeded();
        assert_eq!(c.window(t0), 4);
        for _ in 0..100 {
            c.succeeded();
        }
        assert_eq!(c.window(t0), 4);
    }

    #[test]
    fn an_overloaded_answer_halves_concurrency_once_per_round_and_never_below_one() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(8, 16);
        // Three batches sent together, all refused: one cut.
        c.overloaded(t0, at(t0, 100), None);
        c.overloaded(t0, at(t0, 110), None);
        c.overloaded(at(t0, 50), at(t0, 120), None);
        assert_eq!(c.window(at(t0, 130)), 4);
        // A batch sent after the cut, refused: another.
        c.overloaded(at(t0, 200), at(t0, 300), None);
        assert_eq!(c.window(at(t0, 300)), 2);
        c.overloaded(at(t0, 400), at(t0, 500), None);
        c.overloaded(at(t0, 600), at(t0, 700), None);
        assert_eq!(c.window(at(t0, 800)), 1);
    }

    #[test]
    fn retry_after_stops_all_sending_until_it_has_passed() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(4, 16);
        c.overloaded(t0, at(t0, 10), Some(Duration::from_secs(2)));
        assert_eq!(c.window(at(t0, 10)), 0);
        assert_eq!(c.window(at(t0, 2009)), 0);
        assert_eq!(c.paused_until(at(t0, 10)), Some(at(t0, 2010)));
        assert_eq!(c.window(at(t0, 2010)), 2);
        assert_eq!(c.paused_until(at(t0, 2010)), None);
        // A shorter Retry-After does not shorten the pause already asked for.
        c.overloaded(at(t0, 2020), at(t0, 2030), Some(Duration::from_secs(5)));
        c.overloaded(at(t0, 2020), at(t0, 2040), Some(Duration::from_secs(1)));
        assert_eq!(c.paused_until(at(t0, 2040)), Some(at(t0, 7030)));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_a_longer_retry_after_wins() {
        let p = Pacing {
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            ..Pacing::default()
        };
        let waits: Vec<u128> = (1..=6).map(|n| p.backoff(n, None).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(
            p.backoff(1, Some(Duration::from_secs(9))),
            Duration::from_secs(9)
        );
        assert_eq!(
            p.backoff(3, Some(Duration::from_secs(1))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn an_item_omits_the_values_not_read_and_a_verdict_reads_the_contracts_answer() {
        let item = Item {
            reference: "17".into(),
            nik: "3201014507950001".into(),
            full_name: Some("Siti Aminah".into()),
            birth_date: None,
            sex: Some("F".into()),
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            serde_json::json!({"ref": "17", "nik": "3201014507950001", "full_name": "Siti Aminah", "sex": "F"})
        );
        let answer = serde_json::json!({
            "exchange_id": "9e8bdf87-36a4-4f57-9599-beaf48fb89a6",
            "provider": "ID:GOV:DUKCAPIL",
            "result": {"items": [{"ref": "17", "nik_valid": true, "found": true, "name": "close",
                "name_similarity": 0.93, "birth_date": "not_checked", "sex": "match",
                "citizenship": "WNI", "deceased": false}]},
            "evidence": {"request": "a.b.c", "response": "d.e.f"}
        });
        let verdicts = read_answer(&serde_json::to_vec(&answer).unwrap()).unwrap();
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].name, NameVerdict::Close);
        assert_eq!(verdicts[0].birth_date, Check::NotChecked);
        assert_eq!(verdicts[0].citizenship, Citizenship::Wni);
        assert!(check_answer(std::slice::from_ref(&item), &verdicts).is_ok());
        assert!(check_answer(&[item.clone(), item], &verdicts).is_err());
    }
}
