//! The audit trail of one exchange on one side: filled as the exchange goes, recorded
//! exactly once, before any answer leaves (PROTOCOL.md §5). When the record cannot be made
//! durable the exchange fails closed with 503 and its answer is never released. A trail
//! dropped before it was recorded — the caller disconnected, a deadline cut the exchange
//! short, the gateway shut down — is still recorded, with outcome `cancelled` and whatever
//! was sent and received until then.

use std::sync::Arc;
use std::time::Instant;

use audit::{NewRecord, OverlapFigures, Role, StoredEvidence};
use audit_store::AuditLog;
use contracts::canonical::sha256_b64url;
use contracts::{Contract, ContractRef, MemberId, Problem, ProblemCode};
use serde_json::Value;

use crate::metrics::{ContractLabel, Labels};

/// The outcome of an exchange abandoned before it completed.
pub const CANCELLED: &str = "cancelled";

/// What one side has seen of one exchange so far.
pub struct Trail {
    log: AuditLog,
    labels: Arc<Labels>,
    record: NewRecord,
    request_jws: Option<String>,
    response_jws: Option<String>,
    started: Instant,
    recorded: bool,
    /// Whether the request may be kept as evidence: a request this gateway made, or one
    /// whose signature verified. What has not been authenticated is recorded only by its
    /// hash: nobody can fill the store with envelopes by sending garbage.
    keep_evidence: bool,
}

impl Trail {
    /// A trail of an exchange of `contract` on this gateway's `role` side, started now,
    /// counted under the gateway's `labels` when it is recorded.
    pub fn new(log: &AuditLog, labels: &Arc<Labels>, role: Role, contract: &ContractRef) -> Trail {
        Trail {
            log: log.clone(),
            labels: labels.clone(),
            record: blank(role, contract.id.clone(), contract.version.clone()),
            request_jws: None,
            response_jws: None,
            started: Instant::now(),
            recorded: false,
            keep_evidence: true,
        }
    }

    /// The exchange began at `started`, before its trail was made.
    pub fn set_started(&mut self, started: Instant) {
        self.started = started;
    }

    /// Sets the exchange id.
    pub fn set_exchange_id(&mut self, id: &str) {
        id.clone_into(&mut self.record.exchange_id);
    }

    /// Sets the consumer member.
    pub fn set_consumer(&mut self, member: &MemberId) {
        member.as_str().clone_into(&mut self.record.consumer);
    }

    /// Sets the provider member.
    pub fn set_provider(&mut self, member: &MemberId) {
        member.as_str().clone_into(&mut self.record.provider);
    }

    /// Sets the purpose, if it is a purpose code (1 to 64 characters of `[a-z0-9-]`): a
    /// permanent record holds no text of a peer's choosing beyond that (PROTOCOL.md §5.1);
    /// anything else is recorded as `""`, and kept, verbatim, only in the evidence.
    pub fn set_purpose(&mut self, purpose: &str) {
        if contracts::contract::valid_purpose(purpose) {
            purpose.clone_into(&mut self.record.purpose);
        }
    }

    /// The id of the federated lookup this exchange is a part of.
    pub fn set_lookup_id(&mut self, lookup_id: &str) {
        self.record.lookup_id = Some(lookup_id.to_owned());
    }

    /// The identity the other side authenticated with over TLS.
    pub fn set_peer(&mut self, peer: &MemberId) {
        self.record.peer = Some(peer.to_string());
    }

    /// The member system that asked through the local face.
    pub fn set_subsystem(&mut self, subsystem: &MemberId) {
        self.record.subsystem = Some(subsystem.to_string());
    }

    /// The end user the member system named: recorded as a keyed hash, never in clear.
    pub fn set_user(&mut self, user: &str) {
        self.record.user = Some(self.log.user(user));
    }

    /// The figures of an overlap run, or of its report (PROTOCOL.md §2.7): sizes and counts,
    /// never a point. Figures a reader of the log would refuse (more than
    /// [`audit::MAX_OVERLAP_GROUPS`] groups: [`audit::OverlapFigures::check`]) make the append
    /// fail, and the exchange with 503: set only figures already held to the contract's
    /// `max_groups`.
    pub fn set_overlap(&mut self, figures: OverlapFigures) {
        self.record.overlap = Some(figures);
    }

    /// Sets the `subject`: a keyed hash of the values at `contract`'s personal-data pointers
    /// in `query`, never the values themselves — or, for a batch contract, `subjects`, one
    /// such hash per item (PROTOCOL.md §2.5). A query to a contract this gateway has no
    /// document for is treated as personal as a whole.
    pub fn set_query(&mut self, query: &Value, contract: Option<&Contract>) {
        match contract {
            Some(c) if c.doc().batch.is_some() => {
                self.record.subject = None;
                self.record.subjects = self.log.subjects(&c.personal_values(query));
            }
            Some(c) => {
                let personal = c
                    .personal_values(query)
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                self.record.subject = self.log.subject(&personal);
            }
            None => self.record.subject = self.log.subject(std::slice::from_ref(query)),
        }
    }

    /// The request JWS exactly as sent or received.
    pub fn set_request(&mut self, jws: &str) {
        self.request_jws = Some(jws.to_owned());
    }

    /// The request JWS as received, kept by the trail without a copy; [`Trail::request`]
    /// lends it to the checks that read it. It becomes evidence only once
    /// [`Trail::authenticated`] says its signature verified; until then the record keeps
    /// only its hash.
    pub fn keep_request(&mut self, jws: String) {
        self.request_jws = Some(jws);
        self.keep_evidence = false;
    }

    /// The hash of a request this side never held in full — an event that expired before it
    /// was delivered, named by the hash both sides record (PROTOCOL.md §2.8). A request set
    /// with [`Trail::set_request`] takes its place.
    pub fn set_request_hash(&mut self, hash: &str) {
        self.record.request_hash = Some(hash.to_owned());
    }

    /// The received request's signature verified: it may be kept as evidence.
    pub fn authenticated(&mut self) {
        self.keep_evidence = true;
    }

    /// The request JWS kept so far (`""` before there is one).
    pub fn request(&self) -> &str {
        self.request_jws.as_deref().unwrap_or_default()
    }

    /// The answer JWS exactly as received or sent, kept even when it fails verification:
    /// that is when it matters most.
    pub fn set_response(&mut self, jws: &str) {
        self.response_jws = Some(jws.to_owned());
    }

    /// Ends the trail without a record: what it followed goes on under trails of its own
    /// (a local query whose exchanges have begun).
    pub fn dismiss(&mut self) {
        self.recorded = true;
    }

    /// The record and its evidence, with `outcome`, counted in `simpul_exchanges_total`; the
    /// trail counts as recorded after this.
    fn finish(&mut self, outcome: &'static str) -> (NewRecord, Option<StoredEvidence>) {
        self.recorded = true;
        let blank = blank(self.record.role, String::new(), String::new());
        let mut record = std::mem::replace(&mut self.record, blank);
        record.outcome = outcome.to_owned();
        let took = self.started.elapsed();
        record.latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let contract = ContractLabel {
            id: record.contract.as_str(),
            version: record.version.as_str(),
        };
        // The other side: who asked, on the provider; whom this gateway asked, on the consumer.
        let peer = match record.role {
            Role::Provider => &record.consumer,
            Role::Consumer => &record.provider,
        };
        crate::metrics::exchange(&self.labels, contract, peer, record.role, outcome, took);
        record.request_hash = self
            .request_jws
            .as_deref()
            .map(|j| sha256_b64url(j.as_bytes()))
            .or(record.request_hash);
        record.response_hash = self
            .response_jws
            .as_deref()
            .map(|j| sha256_b64url(j.as_bytes()));
        let evidence = self.request_jws.take().filter(|_| self.keep_evidence);
        let evidence = evidence.map(|request| StoredEvidence {
            exchange_id: record.exchange_id.clone(),
            request,
            response: self.response_jws.take(),
        });
        (record, evidence)
    }

    /// Records the exchange with its outcome (`None`: answered) and waits until the record
    /// is durable. The append runs as a task of its own, so the record is made even if the
    /// caller stops waiting.
    ///
    /// # Errors
    /// A 503 `provider-unavailable` problem when the record cannot be made durable: the
    /// caller releases no answer.
    pub async fn record(mut self, outcome: Option<&Problem>) -> Result<(), Problem> {
        let (record, evidence) = self.finish(outcome_of(outcome));
        let exchange_id = record.exchange_id.clone();
        let log = self.log.clone();
        let started = Instant::now();
        let appended = tokio::spawn(async move { log.append(record, evidence).await }).await;
        let failed = match appended {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(not_durable(&exchange_id, &e)),
            Err(e) => Some(not_durable(&exchange_id, &e)),
        };
        crate::metrics::append(&self.labels, started.elapsed(), failed.is_none());
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let (record, evidence) = self.finish(CANCELLED);
        let exchange_id = record.exchange_id.clone();
        tracing::info!(
            exchange_id,
            "exchange abandoned before it completed: recorded as cancelled"
        );
        if let Err(e) = self.log.append_detached(record, evidence) {
            tracing::error!(exchange_id, error = %e, "the record of a cancelled exchange cannot be appended");
        }
    }
}

/// A record with nothing seen yet.
fn blank(role: Role, contract: String, version: String) -> NewRecord {
    NewRecord {
        exchange_id: String::new(),
        role,
        consumer: String::new(),
        provider: String::new(),
        contract,
        version,
        purpose: String::new(),
        request_hash: None,
        response_hash: None,
        outcome: String::new(),
        latency_us: 0,
        subject: None,
        lookup_id: None,
        peer: None,
        subsystem: None,
        user: None,
        aggregate: None,
        subjects: None,
        overlap: None,
    }
}

/// The outcome string of a result: `ok` or the problem's code.
fn outcome_of(problem: Option<&Problem>) -> &'static str {
    match problem {
        None => "ok",
        Some(p) => p.code().map(ProblemCode::code).unwrap_or("unknown"),
    }
}

fn not_durable(exchange_id: &str, e: &dyn std::fmt::Display) -> Problem {
    tracing::error!(error = %e, exchange_id, "audit record not durable: the exchange fails closed");
    let mut p = Problem::new(
        ProblemCode::ProviderUnavailable,
        "the audit log cannot be written: no answer is released without its record",
    );
    p.retry_after = Some(1);
    p.with_exchange_id(Some(exchange_id).filter(|id| !id.is_empty()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use audit::AuditRecord;
    use audit_store::AuditConfig;
    use contracts::{Algorithm, SigningKey};
    use serde_json::json;

    use super::*;

    async fn log(dir: &std::path::Path) -> AuditLog {
        let member = MemberId::parse("ID:GOV:KEMLU").unwrap();
        let key = SigningKey::generate(Algorithm::ES256, member.as_str()).unwrap();
        AuditLog::open(
            &AuditConfig::for_member(&member),
            dir,
            &member,
            Arc::new(key),
        )
        .await
        .unwrap()
    }

    fn contract() -> ContractRef {
        ContractRef::new("citizenship.status", "1")
    }

    fn trail(log: &AuditLog, id: &str) -> Trail {
        let labels = Arc::new(Labels::new("ID:GOV:KEMLU", "127.0.0.1:0"));
        let mut t = Trail::new(log, &labels, Role::Consumer, &contract());
        t.set_exchange_id(id);
        t.set_consumer(&MemberId::parse("ID:GOV:KEMLU").unwrap());
        t.set_purpose("citizen-protection");
        t
    }

    /// The log's records, once `n` of them are durable (a dropped trail appends in a task
    /// of its own).
    async fn records(log: &AuditLog, n: u64) -> Vec<AuditRecord> {
        for _ in 0..200 {
            if log.tree_size() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        log.records(0, log.tree_size()).await.unwrap()
    }

    #[tokio::test]
    async fn a_purpose_that_is_no_purpose_code_is_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let long = "a".repeat(65);
        for (i, purpose) in ["Citizen\nProtection", "", long.as_str()]
            .into_iter()
            .enumerate()
        {
            let mut t = trail(&log, &format!("id-{i}"));
            t.set_purpose(purpose);
            t.record(None).await.unwrap();
        }
        let all = records(&log, 3).await;
        assert!(
            all.iter().all(|r| r.purpose == "citizen-protection"),
            "{all:?}"
        );
    }

    #[tokio::test]
    async fn a_recorded_trail_is_one_record_with_its_outcome_and_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let mut t = trail(&log, "id-1");
        t.set_provider(&MemberId::parse("ID:GOV:DUKCAPIL").unwrap());
        t.set_request("request.jws");
        t.set_response("answer.jws");
        t.set_lookup_id("lookup-1");
        t.record(None).await.unwrap();
        let all = records(&log, 1).await;
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(
            (
                r.exchange_id.as_str(),
                r.outcome.as_str(),
                r.provider.as_str()
            ),
            ("id-1", "ok", "ID:GOV:DUKCAPIL")
        );
        assert_eq!(r.lookup_id.as_deref(), Some("lookup-1"));
        assert_eq!(r.request_hash, Some(sha256_b64url(b"request.jws")));
        assert_eq!(r.response_hash, Some(sha256_b64url(b"answer.jws")));
        let evidence = log.evidence("id-1").await.unwrap();
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].response.as_deref(), Some("answer.jws"));
    }

    /// A received request is kept as evidence only once its signature verified; before,
    /// the record has its hash and nothing else of it.
    #[tokio::test]
    async fn a_received_request_is_evidence_only_once_authenticated() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let mut garbage = trail(&log, "id-1");
        garbage.keep_request("not.a.signed.request".to_owned());
        garbage
            .record(Some(&Problem::new(ProblemCode::BadSignature, "no")))
            .await
            .ok();
        let mut signed = trail(&log, "id-2");
        signed.keep_request("signed.request".to_owned());
        signed.authenticated();
        signed.record(None).await.unwrap();
        let all = records(&log, 2).await;
        assert_eq!(
            all[0].request_hash,
            Some(sha256_b64url(b"not.a.signed.request"))
        );
        assert!(log.evidence("id-1").await.unwrap().is_empty());
        assert_eq!(
            log.evidence("id-2").await.unwrap()[0].request,
            "signed.request"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_with_its_problem_code() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let p = Problem::new(ProblemCode::Forbidden, "no");
        trail(&log, "id-2").record(Some(&p)).await.unwrap();
        let all = records(&log, 1).await;
        assert_eq!(all[0].outcome, "forbidden");
        assert_eq!(all[0].response_hash, None);
    }

    #[tokio::test]
    async fn a_trail_dropped_before_it_was_recorded_is_recorded_as_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let mut t = trail(&log, "id-3");
        t.set_request("request.jws");
        drop(t);
        assert_cancelled(&log, "id-3").await;
    }

    /// The log holds exactly one record, of `id`, cancelled after its request was sent.
    async fn assert_cancelled(log: &AuditLog, id: &str) {
        let all = records(log, 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(log.tree_size(), 1, "recorded exactly once");
        assert_eq!(all[0].exchange_id, id);
        assert_eq!(all[0].outcome, CANCELLED);
        assert_eq!(all[0].request_hash, Some(sha256_b64url(b"request.jws")));
        assert_eq!(all[0].response_hash, None);
    }

    #[tokio::test]
    async fn an_exchange_whose_future_is_dropped_mid_way_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let exchange = {
            let log = log.clone();
            async move {
                let mut t = trail(&log, "id-4");
                t.set_request("request.jws");
                // A provider that never answers.
                std::future::pending::<()>().await;
                t.record(None).await
            }
        };
        let cut = tokio::time::timeout(Duration::from_millis(20), exchange).await;
        assert!(cut.is_err());
        assert_cancelled(&log, "id-4").await;
    }

    #[tokio::test]
    async fn a_dismissed_trail_leaves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let mut t = trail(&log, "id-5");
        t.dismiss();
        drop(t);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(log.tree_size(), 0);
    }

    #[tokio::test]
    async fn a_runs_overlap_figures_are_on_its_record_and_on_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let figures = OverlapFigures {
            groups: vec![2474, 1079],
            theirs: Some(3933),
            overlaps: Some(vec![847, 491]),
        };
        let mut run = trail(&log, "id-9");
        run.set_overlap(figures.clone());
        run.record(None).await.unwrap();
        trail(&log, "id-10").record(None).await.unwrap();
        let all = records(&log, 2).await;
        assert_eq!(all[0].overlap, Some(figures));
        assert_eq!(all[1].overlap, None);
    }

    #[tokio::test]
    async fn the_subject_is_a_keyed_hash_of_the_personal_data_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let mut t = trail(&log, "id-6");
        t.set_query(&json!({"nik": "3171011701900001"}), None);
        t.record(None).await.unwrap();
        let all = records(&log, 1).await;
        let subject = all[0].subject.clone().unwrap();
        assert!(!subject.contains("3171011701900001"));
        assert_eq!(
            Some(subject),
            log.subject(&[json!({"nik": "3171011701900001"})])
        );
    }

    #[tokio::test]
    async fn a_batch_records_one_subject_per_person_and_the_same_as_asked_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let catalog = contracts::embedded_catalog().unwrap();
        let find = |id: &str| catalog.iter().find(|c| c.doc().id == id).unwrap();
        let (a, b) = ("3171011701900001", "5111371406750199");
        let mut t = trail(&log, "id-7");
        t.set_query(
            &json!({"items": [{"ref": "1", "nik": a}, {"ref": "2", "nik": b}, {"ref": "3", "nik": a}]}),
            Some(find("identity.verify")),
        );
        t.record(None).await.unwrap();
        let mut alone = trail(&log, "id-8");
        alone.set_query(&json!({"nik": b}), Some(find("citizenship.status")));
        alone.record(None).await.unwrap();
        let all = records(&log, 2).await;
        let mut expected = vec![
            log.subject(&[json!(a)]).unwrap(),
            log.subject(&[json!(b)]).unwrap(),
        ];
        expected.sort();
        assert_eq!(all[0].subject, None);
        assert_eq!(all[0].subjects, Some(expected));
        assert!(
            all[0]
                .subjects
                .as_ref()
                .unwrap()
                .contains(all[1].subject.as_ref().unwrap())
        );
    }
}
