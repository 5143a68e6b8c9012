//! The catalogue of cases and what they share: the run context (identities, TLS
//! configurations, how to build, sign and send an exchange) and the checks every refusal
//! case makes of a problem document.
//!
//! A case is an async function returning the observation it passed on, or why it failed or
//! could not run. Its id, group, title, mandatory flag and the gateway check it guards live
//! in one table, [`CASES`]; ids are stable: a case that is withdrawn leaves a gap.

mod answers;
mod batch;
mod contract;
mod envelope;
mod errors;
mod events;
mod limits;
mod overlap;
mod statistics;
mod tls;

use std::sync::Arc;
use std::time::Instant;

use contracts::envelope::{JOSE_MEDIA_TYPE, PROBLEM_MEDIA_TYPE, REQUEST_TYP};
use contracts::problem::PROBLEM_TYPE_PREFIX;
use contracts::{ContractRef, ExchangeRequest, MemberId, ProblemCode};
use hyper::Method;
use rustls::ClientConfig;
use serde::Serialize;
use serde_json::Value;

use crate::client::{self, Body, ClientError, Reply, full};
use crate::config::{ContractUnderTest, Party, RunConfig, Who};
use crate::report::{CaseReport, Outcome};

/// The groups of the suite, in running order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Mutual TLS: versions, suites, certificates.
    Tls,
    /// Every refusal of the exchange check table.
    Envelope,
    /// Contracts served, unknown and forbidden ones, schema checks.
    Contracts,
    /// Signed answers to valid queries.
    Answers,
    /// Problem documents.
    Errors,
    /// Batch contracts: their item bound and their own body limit.
    Batches,
    /// Statistics contracts: their questions, their protected tables, their population
    /// minimum.
    Statistics,
    /// Event contracts: deliveries to a subscriber, their receipts and refusals.
    Events,
    /// Rate limits.
    Limits,
}

impl Group {
    /// The group's name in reports and `--only`.
    pub fn name(self) -> &'static str {
        match self {
            Group::Tls => "TLS",
            Group::Envelope => "Envelope",
            Group::Contracts => "Contracts",
            Group::Answers => "Answers",
            Group::Errors => "Errors",
            Group::Batches => "Batches",
            Group::Statistics => "Statistics",
            Group::Events => "Events",
            Group::Limits => "Limits",
        }
    }
}

/// One case of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct CaseSpec {
    /// Stable id.
    pub id: &'static str,
    /// Group.
    pub group: Group,
    /// Whether a failure makes the gateway non-conformant.
    pub mandatory: bool,
    /// What it checks, as a rule.
    pub title: &'static str,
    /// The provider checks it guards, by the names the gateway's fault switch uses
    /// (`SIMPUL_FAULT`): with one of them off, this case must fail.
    pub guards: &'static [&'static str],
}

/// Why a case did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CaseFailure {
    /// The gateway did not do what the protocol requires.
    #[error("{0}")]
    Failed(String),
    /// The case could not run: the configuration lacks what it needs.
    #[error("{0}")]
    Skipped(String),
    /// The case does not apply to this target (a statistics case against a gateway that
    /// provides no statistics contract, an event case against one that subscribes to no event
    /// contract of the tester's): skipped, and not counted as mandatory in this run.
    #[error("{0}")]
    NotApplicable(String),
    /// No HTTP answer where one was due.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What a case returns: on success, what it observed.
pub type CaseResult = Result<String, CaseFailure>;

/// A failure with `message`.
pub fn failed(message: impl Into<String>) -> CaseFailure {
    CaseFailure::Failed(message.into())
}

macro_rules! catalogue {
    ($($id:literal, $group:ident, $mandatory:literal, $title:literal, [$($guard:literal),*] => $run:path;)*) => {
        /// Every case, in running order.
        pub const CASES: &[CaseSpec] = &[$(CaseSpec {
            id: $id,
            group: Group::$group,
            mandatory: $mandatory,
            title: $title,
            guards: &[$($guard),*],
        },)*];

        async fn dispatch(id: &str, cx: &Context) -> CaseResult {
            match id {
                $($id => $run(cx).await,)*
                other => Err(CaseFailure::Skipped(format!("no case {other}"))),
            }
        }
    };
}

catalogue! {
    "TLS-01", Tls, true, "a connection without a client certificate is refused", ["client-certificate"] => tls::no_client_certificate;
    "TLS-02", Tls, true, "a client certificate from a CA outside the manifest is refused", [] => tls::unknown_ca;
    "TLS-03", Tls, true, "TLS 1.1, 1.0 and SSL 3.0 ClientHellos are refused", [] => tls::legacy_versions;
    "TLS-04", Tls, true, "TLS 1.2 offering only a non-ECDHE or non-AEAD suite is refused", [] => tls::weak_suites;
    "TLS-05", Tls, true, "TLS 1.2 negotiates an ECDHE suite with AEAD", [] => tls::tls12_suite;
    "TLS-06", Tls, true, "TLS 1.3 with a federation client certificate is accepted", [] => tls::tls13;
    "TLS-07", Tls, true, "the server certificate names the member the manifest lists at this URL", [] => tls::server_identity;
    "TLS-08", Tls, true, "a client certificate its CA has revoked is refused at the handshake", ["revocation"] => tls::revoked;
    "ENV-01", Envelope, true, "a body over 64 KiB is refused with 413 payload-too-large", ["body-limit"] => envelope::body_too_large;
    "ENV-02", Envelope, true, "a body that is not a compact JWS is refused with 400 malformed", [] => envelope::not_a_jws;
    "ENV-03", Envelope, true, "a body not sent as application/jose is refused with 415", ["media-type"] => envelope::wrong_media_type;
    "ENV-04", Envelope, true, "alg none is refused with 401 bad-signature", ["signature"] => envelope::alg_none;
    "ENV-05", Envelope, true, "HMAC algs keyed with the public key are refused with 401 bad-signature", ["signature"] => envelope::alg_hmac;
    "ENV-06", Envelope, true, "a typ other than simpul-request+jws is refused with 401 bad-signature", ["signature"] => envelope::wrong_typ;
    "ENV-07", Envelope, true, "a kid naming no manifest key is refused with 401 bad-signature", ["signature"] => envelope::unknown_kid;
    "ENV-08", Envelope, true, "a tampered payload is refused with 401 bad-signature", ["signature"] => envelope::tampered_payload;
    "ENV-09", Envelope, true, "another member's signature under the sender's kid is refused with 401 bad-signature", ["signature"] => envelope::foreign_signature_own_kid;
    "ENV-10", Envelope, true, "a request signed with another member's key is refused with 401 identity-mismatch", ["identity"] => envelope::foreign_key;
    "ENV-11", Envelope, true, "iss differing from the certificate's member is refused with 401 identity-mismatch", ["identity"] => envelope::iss_certificate_mismatch;
    "ENV-12", Envelope, true, "aud naming another member is refused with 400 wrong-audience", ["audience"] => envelope::wrong_audience;
    "ENV-13", Envelope, true, "a path contract differing from the payload's is refused with 400 malformed", ["path-match"] => envelope::path_mismatch;
    "ENV-14", Envelope, true, "a payload that is not a v1 exchange request is refused with 400 malformed", [] => envelope::not_a_request;
    "ENV-15", Envelope, true, "iat more than 60 s in the past is refused with 401 stale", ["freshness"] => envelope::iat_too_old;
    "ENV-16", Envelope, true, "iat more than 60 s in the future is refused with 401 stale", ["freshness"] => envelope::iat_in_future;
    "ENV-17", Envelope, true, "an exp in the past is refused with 401 stale", ["freshness"] => envelope::expired;
    "ENV-18", Envelope, true, "exp - iat over 300 s is refused with 401 stale", ["freshness"] => envelope::validity_too_long;
    "ENV-19", Envelope, true, "a replayed exchange id is refused with 409 replay", ["replay"] => envelope::replay;
    "ENV-20", Envelope, true, "a Simpul-Tree-Head that is not a head of the sender's log is refused with 400 bad-tree-head", ["tree-head"] => envelope::bad_tree_head;
    "ENV-21", Envelope, true, "a member name given twice in the header, the payload or the query is refused with 400 malformed", ["strict-json"] => envelope::repeated_member_name;
    "ENV-22", Envelope, true, "a number outside I-JSON in the query is refused with 400 malformed", ["strict-json"] => envelope::number_beyond_i_json;
    "CON-01", Contracts, true, "GET /v1/manifest serves a manifest signed by the pinned authority", [] => contract::manifest_served;
    "CON-02", Contracts, true, "GET /v1/contracts lists exactly the contracts the manifest gives the target", [] => contract::contracts_listed;
    "CON-03", Contracts, true, "each contract document served hashes to the digest the manifest pins", [] => contract::documents_match_digests;
    "CON-04", Contracts, true, "a contract not in the manifest is refused with 404 unknown-contract", ["contract"] => contract::unknown_contract;
    "CON-05", Contracts, true, "another provider's contract is refused with 404 unknown-contract", ["contract"] => contract::other_providers_contract;
    "CON-06", Contracts, true, "a consumer or purpose the manifest does not grant is refused with 403 forbidden", ["authorization"] => contract::not_granted;
    "CON-07", Contracts, true, "a schema-invalid query is refused with 400 invalid-query naming the pointer", ["query-schema"] => contract::invalid_query;
    "CON-08", Contracts, true, "a NIK followed by a newline is refused with 400 invalid-query at /query/nik", ["query-schema"] => contract::trailing_newline;
    "ANS-01", Answers, true, "a valid query is answered 200 with an application/jose compact JWS", [] => answers::answered;
    "ANS-02", Answers, true, "the answer is signed by a key the manifest gives the provider, inside the key's window at its iat", [] => answers::signed_by_provider;
    "ANS-03", Answers, true, "the answer's typ is simpul-response+jws", [] => answers::typ;
    "ANS-04", Answers, true, "the answer's id, iss, aud, contract and request_hash are bound to the request", [] => answers::bound;
    "ANS-05", Answers, true, "the answer's result is valid against the contract's response schema", [] => answers::result_valid;
    "ANS-06", Answers, true, "every answer carries the provider's newest tree head, signed by its key inside the key's window, naming its log", [] => answers::tree_head;
    "ANS-07", Answers, true, "GET /v1/manifest and every answer state the serial of the manifest served in Simpul-Manifest-Serial", [] => answers::manifest_serial_stated;
    "ERR-01", Errors, true, "refusals are no-store application/problem+json with type, title, status and detail", [] => errors::problem_fields;
    "ERR-02", Errors, true, "refusals after the envelope is read carry its exchange_id", [] => errors::exchange_id;
    "ERR-03", Errors, true, "an unknown path is 404 not-found, a wrong method 405, as problems", [] => errors::unknown_resource;
    "ERR-04", Errors, true, "GET /v1/audit/consistency answers proofs within the log, 400 malformed beyond it", [] => errors::consistency_route;
    "ERR-05", Errors, true, "the local face is not served on the federation listener: POST /v1/query is 404 wrong-listener", ["local-face-apart"] => errors::local_face_elsewhere;
    "BAT-01", Batches, true, "a batch of more items than its contract's max_items is refused with 400 invalid-query at the items array", ["query-schema"] => batch::too_many_items;
    "BAT-02", Batches, true, "a batch body over 64 KiB within its contract's max_request_bytes is answered", [] => batch::large_body_answered;
    "BAT-03", Batches, true, "a body over its batch contract's max_request_bytes is refused with 413 payload-too-large", ["body-limit"] => batch::over_contract_limit;
    "STA-01", Statistics, true, "a question naming a dimension its statistics contract does not list is refused with 400 invalid-query at /query/dimensions/0", [] => statistics::undeclared_dimension;
    "STA-02", Statistics, true, "a statistics answer is a signed table with no count below min_cell published and every suppressed figure protected", ["disclosure"] => statistics::table_protected;
    "STA-03", Statistics, true, "a question whose filters select fewer people than min_population is refused with 422 population-too-small", [] => statistics::population_too_small;
    "OVL-01", Statistics, true, "an overlap run whose list was changed after its envelope was signed is refused with 400 bad-frames", [] => overlap::tampered_list;
    "OVL-02", Statistics, true, "an overlap run whose group holds fewer than min_set identifiers is refused with 422 set-too-small", [] => overlap::group_below_minimum;
    "EVT-01", Events, true, "a delivery of a valid event is answered 200 with a receipt signed by the subscriber and bound to it, the event accepted, and duplicate in a fresh delivery", [] => events::accepted_then_duplicate;
    "EVT-02", Events, true, "a delivery sent twice is refused with 409 replay", ["replay"] => events::replayed;
    "EVT-03", Events, true, "an event whose payload was changed after it was signed is refused with 400 bad-event", ["event"] => events::tampered_event;
    "EVT-04", Events, true, "an event whose data breaks its contract's request schema is refused with 400 bad-event", ["event"] => events::off_schema;
    "EVT-05", Events, true, "an event past its exp is refused with 400 bad-event", ["event"] => events::expired_event;
    "EVT-06", Events, true, "an event naming another iss or contract than its delivery is refused with 400 bad-event", ["event"] => events::foreign_event;
    "EVT-07", Events, true, "a delivery whose query is not {events, expired} within bounds is refused with 400 invalid-query", ["query-schema"] => events::not_a_delivery;
    "EVT-08", Events, true, "a delivery for a purpose the subscriber is not granted, or from a member that does not provide the contract, is refused with 403 forbidden", ["authorization"] => events::not_granted;
    "LIM-01", Limits, false, "exceeding the manifest rate gives 429 rate-limited with a usable Retry-After", ["rate-limit"] => limits::rate_limited;
    "LIM-02", Limits, false, "a batch spends one unit of the rate per item: 429 comes after the burst's worth of items, not of exchanges", ["rate-limit"] => limits::items_counted;
}

/// The cases `only` names (ids or group names, any case); all of them when `only` is empty.
pub fn select(only: &[String]) -> Result<Vec<&'static CaseSpec>, String> {
    if only.is_empty() {
        return Ok(CASES.iter().collect());
    }
    let mut chosen: Vec<&CaseSpec> = Vec::new();
    for want in only {
        let found: Vec<_> = CASES
            .iter()
            .filter(|c| {
                c.id.eq_ignore_ascii_case(want) || c.group.name().eq_ignore_ascii_case(want)
            })
            .collect();
        if found.is_empty() {
            return Err(format!(
                "`{want}` is neither a case id nor a group (see `simpul-conformance list`)"
            ));
        }
        chosen.extend(found);
    }
    // Catalogue order, each case once: the rate-limit case must stay last.
    Ok(CASES
        .iter()
        .filter(|c| chosen.iter().any(|x| x.id == c.id))
        .collect())
}

/// The cases that guard the gateway check `check` (a `SIMPUL_FAULT` name).
pub fn guarding(check: &str) -> Vec<&'static CaseSpec> {
    CASES.iter().filter(|c| c.guards.contains(&check)).collect()
}

/// What every case works with.
pub struct Context {
    /// The validated configuration.
    pub config: RunConfig,
    tester_tls: Arc<ClientConfig>,
    second_tls: Option<Arc<ClientConfig>>,
    answers: tokio::sync::OnceCell<Vec<answers::Sample>>,
    tables: tokio::sync::OnceCell<Vec<statistics::Asked>>,
}

/// The TLS versions the suite speaks when a case does not say otherwise.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

impl Context {
    /// Builds the TLS configurations of the configured identities.
    pub fn new(config: RunConfig) -> Result<Context, ClientError> {
        let tester_tls = client::tls_config(&config.cas, Some(&config.tester.tls), VERSIONS)?;
        let second_tls = match &config.second {
            Some(s) => Some(client::tls_config(&config.cas, Some(&s.tls), VERSIONS)?),
            None => None,
        };
        Ok(Context {
            config,
            tester_tls,
            second_tls,
            answers: tokio::sync::OnceCell::new(),
            tables: tokio::sync::OnceCell::new(),
        })
    }

    /// The contract the envelope cases use: the first configured.
    pub fn primary(&self) -> &ContractUnderTest {
        // RunConfig::parse refuses a configuration without contracts.
        &self.config.contracts[0]
    }

    /// The second member, or a skip naming what to configure.
    pub fn second(&self) -> Result<(&Party, Arc<ClientConfig>), CaseFailure> {
        match (&self.config.second, &self.second_tls) {
            (Some(p), Some(tls)) => Ok((p, tls.clone())),
            _ => Err(CaseFailure::Skipped(
                "needs a second member's certificate and signing key ([second])".into(),
            )),
        }
    }

    /// The TLS configuration presenting the tester's certificate.
    pub fn tester_tls(&self) -> Arc<ClientConfig> {
        self.tester_tls.clone()
    }

    /// The TLS configuration of `who`.
    pub fn tls_of(&self, who: Who) -> Result<Arc<ClientConfig>, CaseFailure> {
        match who {
            Who::Tester => Ok(self.tester_tls()),
            Who::Second => self.second().map(|(_, tls)| tls),
        }
    }

    /// A valid request from the tester for `contract`'s first query: a fresh exchange id,
    /// issued now, valid for 60 s.
    pub fn request(&self, contract: &ContractUnderTest) -> ExchangeRequest {
        self.request_from(&self.config.tester.member, contract, &contract.purpose)
    }

    /// A valid request from `iss` for `contract` and `purpose`.
    pub fn request_from(
        &self,
        iss: &MemberId,
        contract: &ContractUnderTest,
        purpose: &str,
    ) -> ExchangeRequest {
        let now = contracts::unix_now();
        ExchangeRequest {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            iss: iss.clone(),
            sub: None,
            aud: self.config.target.member.clone(),
            contract: contract.reference.id.clone(),
            version: contract.reference.version.clone(),
            purpose: purpose.to_owned(),
            iat: now,
            exp: now + 60,
            query: contract.queries.first().cloned().unwrap_or(Value::Null),
        }
    }

    /// Signs `payload` as an exchange request with `by`'s key.
    pub fn sign(&self, by: &Party, payload: &impl Serialize) -> Result<String, CaseFailure> {
        let bytes = serde_json::to_vec(payload)
            .map_err(|e| failed(format!("cannot encode the request: {e}")))?;
        by.signing
            .sign(REQUEST_TYP, &bytes)
            .map_err(|e| failed(format!("cannot sign the request: {e}")))
    }

    /// POSTs `body` to the target's exchange endpoint for `path` over a new connection made
    /// with `tls`.
    pub async fn post(
        &self,
        tls: Arc<ClientConfig>,
        path: &ContractRef,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Reply, ClientError> {
        let mut conn = client::connect(&self.config.target.endpoint, tls).await?;
        let path = format!("/v1/exchange/{}/{}", path.id, path.version);
        conn.send(Method::POST, &path, content_type, body).await
    }

    /// POSTs a JWS as the tester, to the path of `path`, with further request headers.
    pub async fn post_jws_with(
        &self,
        path: &ContractRef,
        headers: &[(&str, &str)],
        jws: String,
    ) -> Result<Reply, ClientError> {
        let mut conn = client::connect(&self.config.target.endpoint, self.tester_tls()).await?;
        let path = format!("/v1/exchange/{}/{}", path.id, path.version);
        conn.send_with(
            Method::POST,
            &path,
            Some(JOSE_MEDIA_TYPE),
            headers,
            full(jws),
        )
        .await
    }

    /// POSTs a JWS as the tester, to the path of `path`.
    pub async fn post_jws(&self, path: &ContractRef, jws: String) -> Result<Reply, ClientError> {
        self.post(self.tester_tls(), path, Some(JOSE_MEDIA_TYPE), full(jws))
            .await
    }

    /// Signs `request` as the tester and sends it the normal way.
    pub async fn send(&self, request: &ExchangeRequest) -> Result<(String, Reply), CaseFailure> {
        let jws = self.sign(&self.config.tester, request)?;
        let path = ContractRef::new(&request.contract, &request.version);
        let reply = self.post_jws(&path, jws.clone()).await?;
        Ok((jws, reply))
    }

    /// GETs `path` from the target as the tester.
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        let mut conn = client::connect(&self.config.target.endpoint, self.tester_tls()).await?;
        conn.send(Method::GET, path, None, full(Vec::new())).await
    }
}

/// Checks that `reply` is the refusal `code`: its HTTP status, `application/problem+json`,
/// and a problem document whose `type`, `title`, `status` and `detail` are what PROTOCOL.md
/// requires. Returns the document and a line describing what was seen.
pub fn expect_problem(reply: &Reply, code: ProblemCode) -> Result<(Value, String), CaseFailure> {
    let want = format!("HTTP {} {}", code.status(), code.type_uri());
    let problem: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let seen_type = problem
        .as_ref()
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if reply.status.as_u16() != code.status() || seen_type != code.type_uri() {
        let seen = if reply.status.is_success() {
            format!("{} (the request was answered)", reply.summary())
        } else if seen_type.is_empty() {
            format!("{}: {}", reply.summary(), reply.body_excerpt())
        } else {
            format!("HTTP {} {seen_type}", reply.status.as_u16())
        };
        return Err(failed(format!("expected {want}, got {seen}")));
    }
    let problem = problem.unwrap_or(Value::Null);
    problem_shape(reply, &problem)?;
    let detail = problem
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok((
        problem.clone(),
        format!("HTTP {} {}: {detail}", code.status(), code.code()),
    ))
}

/// The JSON pointers of a problem document's `errors` (PROTOCOL.md §3.4), in order.
pub fn error_pointers(problem: &Value) -> Vec<&str> {
    problem
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("pointer").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields every problem document must carry (RFC 9457 as PROTOCOL.md §3 profiles it).
pub fn problem_shape(reply: &Reply, problem: &Value) -> Result<(), CaseFailure> {
    if reply.media_type() != PROBLEM_MEDIA_TYPE {
        return Err(failed(format!(
            "Content-Type is `{}`, not {PROBLEM_MEDIA_TYPE}",
            reply.media_type()
        )));
    }
    let text = |field: &str| problem.get(field).and_then(Value::as_str);
    match text("type") {
        Some(t) if t.starts_with(PROBLEM_TYPE_PREFIX) => {}
        other => {
            return Err(failed(format!(
                "problem `type` is {other:?}, not `{PROBLEM_TYPE_PREFIX}<code>`"
            )));
        }
    }
    if text("title").is_none_or(str::is_empty) {
        return Err(failed("problem has no `title`"));
    }
    if text("detail").is_none_or(str::is_empty) {
        return Err(failed("problem has no `detail`"));
    }
    match problem.get("status").and_then(Value::as_u64) {
        Some(s) if s == u64::from(reply.status.as_u16()) => Ok(()),
        other => Err(failed(format!(
            "problem `status` is {other:?}, the HTTP status is {}",
            reply.status.as_u16()
        ))),
    }
}

/// Runs each of `cases` in turn (each bounded by a timeout) and reports them.
pub async fn run(cx: &Context, cases: &[&CaseSpec]) -> Vec<CaseReport> {
    let mut out = Vec::new();
    for spec in cases {
        let started = Instant::now();
        // The rate-limit case waits on the gateway's own Retry-After; the others are a few
        // requests each.
        let limit = if spec.group == Group::Limits {
            cx.config.limits.max_duration + std::time::Duration::from_secs(90)
        } else {
            std::time::Duration::from_secs(120)
        };
        let result = tokio::time::timeout(limit, dispatch(spec.id, cx))
            .await
            .unwrap_or_else(|_| {
                Err(failed(format!(
                    "the case did not finish within {} s",
                    limit.as_secs()
                )))
            });
        let mut mandatory = spec.mandatory;
        let (outcome, detail) = match result {
            Ok(seen) => (Outcome::Pass, seen),
            Err(CaseFailure::Failed(why)) => (Outcome::Fail, why),
            Err(CaseFailure::Skipped(why)) => (Outcome::Skip, why),
            Err(CaseFailure::NotApplicable(why)) => {
                // A rule about what the target does not do binds it to nothing.
                mandatory = false;
                (Outcome::Skip, why)
            }
            Err(CaseFailure::Client(e)) => (Outcome::Fail, format!("no HTTP answer: {e}")),
        };
        out.push(CaseReport {
            id: spec.id.to_owned(),
            group: spec.group.name().to_owned(),
            title: spec.title.to_owned(),
            mandatory,
            outcome,
            detail,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    out
}

/// Checks the target answers HTTP over mutual TLS with the tester's certificate at all, so
/// that an unreachable gateway is an error of the run rather than a column of failures.
pub async fn preflight(cx: &Context) -> Result<(), ClientError> {
    cx.get("/v1/manifest").await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_grouped_in_order() {
        let mut seen = std::collections::HashSet::new();
        let order = [
            Group::Tls,
            Group::Envelope,
            Group::Contracts,
            Group::Answers,
            Group::Errors,
            Group::Batches,
            Group::Statistics,
            Group::Events,
            Group::Limits,
        ];
        let mut last = 0;
        for c in CASES {
            assert!(seen.insert(c.id), "{} twice", c.id);
            let g = order.iter().position(|g| *g == c.group).unwrap();
            assert!(g >= last, "{} out of group order", c.id);
            last = g;
        }
    }

    #[test]
    fn selection_by_id_and_group_keeps_catalogue_order() {
        let s = select(&["lim-01".into(), "TLS-02".into(), "errors".into()]).unwrap();
        let ids: Vec<_> = s.iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            [
                "TLS-02", "ERR-01", "ERR-02", "ERR-03", "ERR-04", "ERR-05", "LIM-01"
            ]
        );
        assert!(select(&["NOPE-1".into()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), CASES.len());
    }

    #[test]
    fn every_gateway_check_has_a_guarding_case() {
        for check in &contracts::checks::CHECKS {
            assert!(!guarding(check.name).is_empty(), "{}", check.name);
        }
    }

    #[test]
    fn every_guard_names_a_check_of_the_shared_table() {
        for case in CASES.iter() {
            for guard in case.guards {
                assert!(
                    contracts::checks::check(guard).is_some(),
                    "{}: {guard}",
                    case.id
                );
            }
        }
    }
}
