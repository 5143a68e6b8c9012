//! OpenAPI 3.1 documents of a member's two faces, made from the configuration, its contract
//! catalog and the manifest: the local face its own systems call (PROTOCOL.md §4) and the
//! federation listener peers call (§2.3, §3, §5.4). The contracts' JSON Schemas (2020-12,
//! which OpenAPI 3.1 takes as they are) are embedded under `components/schemas` and
//! referenced from every operation that carries them.

use std::collections::{BTreeMap, BTreeSet};

use contracts::envelope::{ANSWER_TYP, JOSE_MEDIA_TYPE, PROBLEM_MEDIA_TYPE, REQUEST_TYP};
use contracts::manifest::{ManifestContract, ManifestDoc};
use contracts::psi::wire::PSI_MEDIA_TYPE;
use contracts::{Contract, ContractRef, MemberId, ProblemCode};
use serde_json::{Map, Value, json};

use crate::config::{Config, FederatedContract, LocalConfig, Member};
use crate::consumer::local::MAX_USER_ID;

/// Which face of a member's gateway a document describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// The local listener: what the member's own systems may ask (PROTOCOL.md §4).
    Local,
    /// The federation listener: what the member provides to its peers, and the GET routes
    /// (PROTOCOL.md §2.3, §3, §5.4).
    Peer,
}

impl Face {
    /// The face's name, as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Local => "local",
            Face::Peer => "peer",
        }
    }
}

/// Why no document can be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenApiError {
    /// The member is not in the configuration.
    #[error("{member} is not a member in {config}; its members: {}", list(members))]
    UnknownMember {
        /// The member asked for, as given.
        member: String,
        /// The configuration file.
        config: String,
        /// The members it has.
        members: Vec<MemberId>,
    },
    /// The member has no local listener, so no local face.
    #[error(
        "{member} has no local listener in {config} (no [members.local]), so it has no local face"
    )]
    NoLocalFace {
        /// The member.
        member: MemberId,
        /// The configuration file.
        config: String,
    },
}

fn list(members: &[MemberId]) -> String {
    members
        .iter()
        .map(MemberId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The OpenAPI 3.1 document of `member`'s `face`, from `config` (listeners, subsystems and
/// their grants, provisions, federated contracts, the catalog) and `manifest` (who may ask
/// what, for which purposes, each member's gateway URL).
///
/// # Errors
/// [`OpenApiError::UnknownMember`] when `member` is not in `config`;
/// [`OpenApiError::NoLocalFace`] for the local face of a member without a local listener.
pub fn document(
    config: &Config,
    manifest: &ManifestDoc,
    member: &str,
    face: Face,
) -> Result<Value, OpenApiError> {
    let m = find_member(config, member)?;
    Ok(match face {
        Face::Local => {
            let local = m.local.as_ref().ok_or_else(|| OpenApiError::NoLocalFace {
                member: m.id.clone(),
                config: config.source.clone(),
            })?;
            local_face(config, manifest, m, local)
        }
        Face::Peer => peer_face(config, manifest, m),
    })
}

/// The member of `config` whose id is `member`.
///
/// # Errors
/// [`OpenApiError::UnknownMember`], listing the members `config` has.
pub fn find_member<'a>(config: &'a Config, member: &str) -> Result<&'a Member, OpenApiError> {
    config
        .members
        .iter()
        .find(|m| m.id.as_str() == member)
        .ok_or_else(|| OpenApiError::UnknownMember {
            member: member.to_owned(),
            config: config.source.clone(),
            members: config.members.iter().map(|m| m.id.clone()).collect(),
        })
}

/// The name under which a contract's request schema is embedded.
pub fn request_schema_name(r: &ContractRef) -> String {
    format!("contract.{}.v{}.request", r.id, r.version)
}

/// The name under which a contract's response schema is embedded.
pub fn response_schema_name(r: &ContractRef) -> String {
    format!("contract.{}.v{}.response", r.id, r.version)
}

/// The path of a contract on the local face.
pub fn query_path(r: &ContractRef) -> String {
    format!("/v1/query/{}/{}", r.id, r.version)
}

/// The path of a contract on the exchange face.
pub fn exchange_path(r: &ContractRef) -> String {
    format!("/v1/exchange/{}/{}", r.id, r.version)
}

/// A `$ref` to a schema of `components/schemas`.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A document under construction: its paths and the schemas they refer to.
struct Builder {
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
}

impl Builder {
    fn new() -> Self {
        let mut schemas = Map::new();
        schemas.insert("Problem".into(), problem_schema());
        schemas.insert(
            "SchemaViolation".into(),
            json!({
                "type": "object",
                "description": "One schema violation: a JSON pointer into the checked document, and what is wrong there (never the value).",
                "required": ["pointer", "message"],
                "properties": {
                    "pointer": {"type": "string"},
                    "message": {"type": "string"}
                }
            }),
        );
        schemas.insert(
            "ExchangeId".into(),
            json!({
                "type": "string",
                "description": "An exchange id: a UUID in its lower-case hyphenated form.",
                "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
            }),
        );
        schemas.insert(
            "CompactJws".into(),
            json!({
                "type": "string",
                "description": "A JWS in compact serialisation (RFC 7515): three base64url parts without padding, separated by dots (PROTOCOL.md §1.5).",
                "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"
            }),
        );
        Builder {
            paths: Map::new(),
            schemas,
        }
    }

    /// Embeds `contract`'s request and response schemas (once).
    fn embed(&mut self, contract: &Contract) {
        let r = contract.reference();
        for (name, schema) in [
            (request_schema_name(&r), &contract.doc().request),
            (response_schema_name(&r), &contract.doc().response),
        ] {
            if !self.schemas.contains_key(&name) {
                let embedded = embedded_schema(&name, schema);
                self.schemas.insert(name, embedded);
            }
        }
    }

    fn finish(self, mut doc: Map<String, Value>, security: Value) -> Value {
        doc.insert("security".into(), json!([{ "mutualTLS": [] }]));
        doc.insert("paths".into(), Value::Object(self.paths));
        doc.insert(
            "components".into(),
            json!({
                "schemas": self.schemas,
                "securitySchemes": { "mutualTLS": security },
                "headers": common_headers(),
            }),
        );
        Value::Object(doc)
    }
}

/// A contract's schema as embedded at `#/components/schemas/<name>`: a `$ref` inside it
/// that points into the schema itself (`#/$defs/…`) is rewritten to point at the same place
/// under its new home, since in the document a bare `#` is the document's root. A schema with
/// its own `$id` is its own resource, and its references already resolve against it.
fn embedded_schema(name: &str, schema: &Value) -> Value {
    let mut embedded = schema.clone();
    let own_id = embedded.get("$id").is_some();
    if !own_id {
        rebase_refs(&mut embedded, &format!("#/components/schemas/{name}"));
    }
    embedded
}

fn rebase_refs(schema: &mut Value, base: &str) {
    match schema {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match (k.as_str(), child) {
                    ("$ref", Value::String(s)) => {
                        // A plain-name fragment (`#day`, an `$anchor`) resolves by name.
                        if s == "#" || s.starts_with("#/") {
                            *s = format!("{base}{}", &s[1..]);
                        }
                    }
                    // Data, not schemas.
                    ("enum" | "const" | "examples" | "default", _) => {}
                    // Maps of names to schemas: a name is never a keyword.
                    (
                        "properties" | "patternProperties" | "$defs" | "definitions"
                        | "dependentSchemas",
                        Value::Object(named),
                    ) => named.values_mut().for_each(|s| rebase_refs(s, base)),
                    (_, child) => rebase_refs(child, base),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rebase_refs(i, base)),
        _ => {}
    }
}

/// RFC 9457 problem document, as every refusal carries it (PROTOCOL.md §3.4).
fn problem_schema() -> Value {
    let types: Vec<String> = ProblemCode::ALL.iter().map(|c| c.type_uri()).collect();
    json!({
        "type": "object",
        "description": "An RFC 9457 problem document (PROTOCOL.md §3.4). Decide on `type` or `status`, never on `title` or `detail`.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "enum": types, "description": "`urn:simpul:error:<code>`"},
            "title": {"type": "string", "description": "The code's fixed title (a relayed problem keeps the provider's)."},
            "status": {"type": "integer", "description": "The HTTP status, equal to the response's."},
            "detail": {"type": "string", "description": "What exactly was wrong, for a person; not machine-readable."},
            "exchange_id": schema_ref("ExchangeId"),
            "errors": {
                "type": "array",
                "description": "The schema violations of an `invalid-query` (at most 16 from this gateway).",
                "items": schema_ref("SchemaViolation")
            },
            "provider": {"type": "string", "description": "On the local face, the provider the problem concerns."},
            "retry_after": {"type": "integer", "minimum": 0, "description": "Seconds after which a retry may succeed; mirrors `Retry-After`."}
        }
    })
}

/// The response headers every answer or some refusals carry.
fn common_headers() -> Value {
    json!({
        "Cache-Control": {
            "description": "Every response the gateway builds carries `no-store`.",
            "schema": {"type": "string", "const": "no-store"}
        },
        "Retry-After": {
            "description": "Whole seconds after which a retry may succeed, when the problem has `retry_after`.",
            "schema": {"type": "integer", "minimum": 0}
        },
        "Simpul-Tree-Head": {
            "description": "The compact JWS of the provider's newest signed tree head (PROTOCOL.md §5.2, §5.4).",
            "schema": {"type": "string"}
        },
        "Simpul-Manifest-Serial": {
            "description": "The serial of the manifest the provider holds (PROTOCOL.md §1.8).",
            "schema": {"type": "integer", "minimum": 0}
        }
    })
}

fn header_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

/// One problem response per status of `codes`, its `type` limited to the codes of that
/// status; `exchange_face` adds the headers every answer of the exchange route carries.
fn problem_responses(codes: &[ProblemCode], exchange_face: bool) -> Map<String, Value> {
    let mut by_status: BTreeMap<u16, Vec<ProblemCode>> = BTreeMap::new();
    for &c in codes {
        let of_status = by_status.entry(c.status()).or_default();
        if !of_status.contains(&c) {
            of_status.push(c);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<String> = codes.iter().map(|c| format!("`{}`", c.code())).collect();
            let types: Vec<String> = codes.iter().map(|c| c.type_uri()).collect();
            let mut headers = Map::new();
            headers.insert("Cache-Control".into(), header_ref("Cache-Control"));
            headers.insert("Retry-After".into(), header_ref("Retry-After"));
            if exchange_face {
                headers.insert("Simpul-Tree-Head".into(), header_ref("Simpul-Tree-Head"));
                headers.insert(
                    "Simpul-Manifest-Serial".into(),
                    header_ref("Simpul-Manifest-Serial"),
                );
            }
            (
                status.to_string(),
                json!({
                    "description": format!("A problem document: {}.", names.join(", ")),
                    "headers": headers,
                    "content": {
                        PROBLEM_MEDIA_TYPE: {
                            "schema": {
                                "allOf": [
                                    schema_ref("Problem"),
                                    {"properties": {
                                        "status": {"const": status},
                                        "type": {"enum": types}
                                    }}
                                ]
                            }
                        }
                    }
                }),
            )
        })
        .collect()
}

/// What the member's subsystems are granted, contract by contract: each subsystem with its
/// purposes.
fn subsystem_grants(m: &Member) -> BTreeMap<ContractRef, Vec<(MemberId, Vec<String>)>> {
    let mut grants: BTreeMap<ContractRef, Vec<(MemberId, Vec<String>)>> = BTreeMap::new();
    for s in &m.subsystems {
        for g in &s.grants {
            grants
                .entry(g.contract.clone())
                .or_default()
                .push((s.id.clone(), g.purposes.clone()));
        }
    }
    grants
}

fn listed<'a>(manifest: &'a ManifestDoc, r: &ContractRef) -> Option<&'a ManifestContract> {
    manifest
        .contracts
        .iter()
        .find(|c| c.id == r.id && c.version == r.version)
}

/// The local face (PROTOCOL.md §4): one `POST /v1/query/{id}/{version}` per contract a
/// subsystem of `m` is granted — a catalog contract the manifest also grants `m` for one of
/// those purposes, or a federated contract `m` defines.
fn local_face(config: &Config, manifest: &ManifestDoc, m: &Member, local: &LocalConfig) -> Value {
    let mut b = Builder::new();
    b.schemas.insert(
        "Evidence".into(),
        json!({
            "type": "object",
            "description": "The signed envelopes of the exchange, to re-check it offline: the request JWS as sent and the answer JWS as received (PROTOCOL.md §4.2).",
            "required": ["request", "response"],
            "additionalProperties": false,
            "properties": {
                "request": schema_ref("CompactJws"),
                "response": schema_ref("CompactJws")
            }
        }),
    );
    let mut skipped = Vec::new();
    for (r, granted) in subsystem_grants(m) {
        let asked: BTreeSet<&String> = granted.iter().flat_map(|(_, p)| p).collect();
        if let Some(fc) = m.federated.iter().find(|f| f.reference == r) {
            if asked.contains(&fc.purpose) {
                federated_operation(&mut b, config, fc, &granted);
            } else {
                skipped.push(format!(
                    "{r} (not granted for its purpose `{}`)",
                    fc.purpose
                ));
            }
            continue;
        }
        let Some(listed) = listed(manifest, &r) else {
            skipped.push(format!("{r} (not in the manifest)"));
            continue;
        };
        let by_manifest: BTreeSet<&String> = listed
            .consumers
            .iter()
            .filter(|c| c.member == m.id)
            .flat_map(|c| &c.purposes)
            .collect();
        let purposes: Vec<String> = asked
            .intersection(&by_manifest)
            .map(|p| (*p).clone())
            .collect();
        if purposes.is_empty() {
            skipped.push(format!("{r} (the manifest does not grant {} it)", m.id));
            continue;
        }
        let Some(contract) = config.catalog.get(&r) else {
            skipped.push(format!("{r} (no document in the catalog)"));
            continue;
        };
        if contract.event().is_some() {
            events_fetch_operation(&mut b, contract, listed, &granted);
            continue;
        }
        if contract.overlap().is_some() {
            if m.lists.is_empty() {
                skipped.push(format!(
                    "{r} (an overlap contract, and {} has no list)",
                    m.id
                ));
            } else {
                overlap_operation(&mut b, m, contract, listed, &purposes, &granted);
            }
            continue;
        }
        single_operation(&mut b, contract, listed, &purposes, &granted);
    }
    for source in m.events.iter().filter(|e| !e.emitters.is_empty()) {
        if let Some(contract) = config.catalog.get(&source.contract) {
            events_emit_operation(&mut b, contract, &source.emitters);
        }
    }
    let mut description = format!(
        "What the systems of {} ({}) may ask their gateway on its local listener (PROTOCOL.md §4): \
         one `POST /v1/query/{{id}}/{{version}}` per catalog contract one of its configured \
         subsystems is granted and the manifest grants {} for that purpose, and per federated \
         contract it defines that one of them is granted. The caller is a subsystem named by \
         its client certificate, issued by the member's own trust anchor; each subsystem may ask \
         only what its own grants list (`x-simpul-subsystems`), else 403 `not-granted`. Every \
         refusal is an RFC 9457 problem document; a provider's is relayed with its status (§4.2).",
        m.id, m.name, m.id
    );
    if !skipped.is_empty() {
        description.push_str(&format!(
            " Granted to a subsystem in the configuration but not served: {}.",
            skipped.join("; ")
        ));
    }
    let doc = skeleton(
        format!("Simpul local face of {}", m.id),
        description,
        json!(local.url()),
        format!("The local listener of {} ({})", m.id, local.listen),
        &m.id,
        Face::Local,
        manifest.serial,
    );
    b.finish(
        doc,
        json!({
            "type": "mutualTLS",
            "description": format!(
                "Mutual TLS against the member's own trust anchor (its member CA or pinned certificates), \
                 never the federation CA. The client certificate names a subsystem of {} configured in \
                 [[members.subsystems]] (URI SAN `urn:simpul:<subsystem id>`); any other identity is \
                 refused with 403 `forbidden` or `identity-kind` before the body is read.",
                m.id
            )
        }),
    )
}

/// The `Simpul-User-Id` header a member system may name its end user in (PROTOCOL.md §4.2).
fn user_header() -> Value {
    json!({
        "name": "Simpul-User-Id",
        "in": "header",
        "required": false,
        "description": format!(
            "The end user the system asks for (e.g. an officer's login): 1 to {MAX_USER_ID} visible ASCII \
             characters or spaces, given once. Never sent to the provider; recorded only as a keyed \
             hash. Anything else is 400 `malformed` before any exchange."
        ),
        // HTTP drops spaces around a field value (RFC 9110 §5.5), so what arrives begins
        // and ends with a visible character.
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID, "pattern": "^[!-~]([ -~]*[!-~])?$"}
    })
}

/// The W3C Trace Context headers either face takes (PROTOCOL.md §3.8): outside every
/// signature, ignored when they do not follow the recommendation, never refused.
fn trace_headers() -> [Value; 2] {
    [
        json!({
            "name": "traceparent",
            "in": "header",
            "required": false,
            "description": "W3C Trace Context `traceparent` (PROTOCOL.md §3.8): names the trace in the gateway's logs and is sent on, with a new parent id, to the next hop. One that does not follow the recommendation is ignored, never refused.",
            "schema": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"}
        }),
        json!({
            "name": "tracestate",
            "in": "header",
            "required": false,
            "description": "W3C Trace Context `tracestate`, sent on as it came with a valid `traceparent` when it is 1 to 512 visible ASCII characters or spaces; otherwise ignored, never refused.",
            "schema": {"type": "string"}
        }),
    ]
}

fn subsystems_extension(granted: &[(MemberId, Vec<String>)]) -> Value {
    Value::Array(
        granted
            .iter()
            .map(|(s, p)| json!({"subsystem": s, "purposes": p}))
            .collect(),
    )
}

/// The local body: `{"purpose", "query"}`, both required, nothing else.
fn local_body(purposes: &[String], query: Value) -> Value {
    json!({
        "type": "object",
        "description": "What a member system sends: the purpose it asks for and the query (PROTOCOL.md §4.1). Strict JSON: no member name twice, I-JSON numbers.",
        "required": ["purpose", "query"],
        "additionalProperties": false,
        "properties": {
            "purpose": {"type": "string", "enum": purposes},
            "query": query
        }
    })
}

/// Every code a single contract's local query can be answered with: the local face's own and,
/// since a provider's problem is relayed with its status when its `type` is a code of the
/// protocol with that status, every code.
fn single_codes() -> Vec<ProblemCode> {
    ProblemCode::ALL.to_vec()
}

/// What a federated query can be refused with: only checks of this gateway (PROTOCOL.md
/// §4.1, §4.3); a part's failure is in its answer.
const FEDERATED_CODES: &[ProblemCode] = &[
    ProblemCode::Malformed,
    ProblemCode::InvalidQuery,
    ProblemCode::Forbidden,
    ProblemCode::NotGranted,
    ProblemCode::IdentityKind,
    ProblemCode::RequestTimeout,
    ProblemCode::PayloadTooLarge,
    ProblemCode::UnsupportedMediaType,
    ProblemCode::SubsystemRateLimited,
    ProblemCode::Internal,
    ProblemCode::ProviderUnavailable,
];

fn single_operation(
    b: &mut Builder,
    contract: &Contract,
    listed: &ManifestContract,
    purposes: &[String],
    granted: &[(MemberId, Vec<String>)],
) {
    b.embed(contract);
    let r = contract.reference();
    let doc = contract.doc();
    let base = format!("local.{}.v{}", r.id, r.version);
    b.schemas.insert(
        format!("{base}.body"),
        local_body(purposes, schema_ref(&request_schema_name(&r))),
    );
    b.schemas.insert(
        format!("{base}.answer"),
        json!({
            "type": "object",
            "description": "The verified answer, with the signed envelopes as evidence (PROTOCOL.md §4.2).",
            "required": ["exchange_id", "provider", "result", "evidence"],
            "additionalProperties": false,
            "properties": {
                "exchange_id": schema_ref("ExchangeId"),
                "provider": {"type": "string", "const": listed.provider},
                "result": schema_ref(&response_schema_name(&r)),
                "evidence": schema_ref("Evidence")
            }
        }),
    );
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": format!("{}'s verified answer.", listed.provider),
            "headers": {"Cache-Control": header_ref("Cache-Control")},
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.answer"))}}
        }),
    );
    responses.extend(problem_responses(&single_codes(), false));
    let [traceparent, tracestate] = trace_headers();
    let operation = json!({
        "operationId": format!("query.{}.v{}", r.id, r.version),
        "summary": doc.title,
        "description": format!(
            "{}\n\nAsked of {} through this gateway, which signs the request, sends it over mutual TLS \
             and verifies the signed answer. Contract digest `{}`.",
            doc.description, listed.provider, contract.digest()
        ),
        "parameters": [user_header(), traceparent, tracestate],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.body"))}}
        },
        "responses": responses,
        "x-simpul-provider": listed.provider,
        "x-simpul-digest": contract.digest(),
        "x-simpul-subsystems": subsystems_extension(granted),
    });
    b.paths.insert(query_path(&r), json!({ "post": operation }));
}

/// The path of an event contract on the local face (PROTOCOL.md §4.5).
pub fn events_path(r: &ContractRef) -> String {
    format!("/v1/events/{}/{}", r.id, r.version)
}

/// What the local face's events routes can be refused with (PROTOCOL.md §4.5).
const EVENTS_CODES: &[ProblemCode] = &[
    ProblemCode::Malformed,
    ProblemCode::InvalidQuery,
    ProblemCode::Forbidden,
    ProblemCode::NotGranted,
    ProblemCode::IdentityKind,
    ProblemCode::UnknownContract,
    ProblemCode::RequestTimeout,
    ProblemCode::PayloadTooLarge,
    ProblemCode::UnsupportedMediaType,
    ProblemCode::ManifestExpired,
    ProblemCode::Internal,
    ProblemCode::ProviderUnavailable,
];

/// An event as the local face hands it on (PROTOCOL.md §4.5): the webhook's body, and each
/// item of a fetch with its `seq`.
fn received_event(contract: &Contract) -> Value {
    let r = contract.reference();
    json!({
        "type": "object",
        "required": ["type", "version", "id", "provider", "emitted_at", "received_at", "data", "jws"],
        "additionalProperties": false,
        "properties": {
            "type": {"type": "string", "const": r.id},
            "version": {"type": "string", "const": r.version},
            "id": schema_ref("ExchangeId"),
            "provider": {"type": "string", "const": contract.doc().provider},
            "emitted_at": {"type": "string", "format": "date-time"},
            "received_at": {"type": "string", "format": "date-time"},
            "data": schema_ref(&request_schema_name(&r)),
            "jws": schema_ref("CompactJws"),
            "seq": {"type": "integer", "minimum": 1}
        }
    })
}

/// `GET /v1/events/{id}/{version}`: the inbox's events of an event contract a subsystem is
/// granted, after a position the member system keeps.
fn events_fetch_operation(
    b: &mut Builder,
    contract: &Contract,
    listed: &ManifestContract,
    granted: &[(MemberId, Vec<String>)],
) {
    b.embed(contract);
    let r = contract.reference();
    let base = format!("local.{}.v{}", r.id, r.version);
    b.schemas
        .insert(format!("{base}.event"), received_event(contract));
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "The events received after `after`, in the order received; `next` is the position to ask after next time.",
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["events", "next"],
                "additionalProperties": false,
                "properties": {
                    "events": {"type": "array", "maxItems": 500, "items": schema_ref(&format!("{base}.event"))},
                    "next": {"type": "integer", "minimum": 0}
                }
            }}}
        }),
    );
    responses.extend(problem_responses(EVENTS_CODES, false));
    let operation = json!({
        "operationId": format!("events.fetch.{}.v{}", r.id, r.version),
        "summary": format!("Received events of {}", r.id),
        "description": format!(
            "{}\n\nThe events {} emitted that this gateway received, verified and recorded (PROTOCOL.md §2.8, §4.5). \
             Reading them records nothing new. Contract digest `{}`.",
            contract.doc().description, listed.provider, contract.digest()
        ),
        "parameters": [
            {"name": "after", "in": "query", "required": false, "description": "The last position already read; 0 (the default) reads from the start of the inbox.", "schema": {"type": "integer", "minimum": 0}},
            {"name": "limit", "in": "query", "required": false, "description": "At most this many events (1 to 500, the default).", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
        ],
        "responses": responses,
        "x-simpul-provider": listed.provider,
        "x-simpul-digest": contract.digest(),
        "x-simpul-subsystems": subsystems_extension(granted),
    });
    let path = b.paths.entry(events_path(&r)).or_insert_with(|| json!({}));
    path["get"] = operation;
}

/// `POST /v1/events/{id}/{version}`: an event emitted by one of the contract's emitters.
fn events_emit_operation(b: &mut Builder, contract: &Contract, emitters: &[MemberId]) {
    b.embed(contract);
    let r = contract.reference();
    let base = format!("local.{}.v{}", r.id, r.version);
    b.schemas.insert(
        format!("{base}.emit"),
        json!({
            "type": "object",
            "description": "One change to emit: its data, and optionally the member system's own number for it (a change sent again with the same `source` is not emitted twice).",
            "required": ["data"],
            "additionalProperties": false,
            "properties": {
                "data": schema_ref(&request_schema_name(&r)),
                "source": {"type": "integer"}
            }
        }),
    );
    let emitted = json!({
        "type": "object",
        "required": ["event_id", "seq", "repeated"],
        "additionalProperties": false,
        "properties": {
            "event_id": schema_ref("ExchangeId"),
            "seq": {"type": "integer", "minimum": 1},
            "repeated": {"type": "boolean"}
        }
    });
    let mut responses = Map::new();
    responses.insert(
        "202".into(),
        json!({
            "description": "Signed, kept in the outbox and recorded; delivered to every subscriber from now on.",
            "content": {"application/json": {"schema": emitted.clone()}}
        }),
    );
    responses.insert(
        "200".into(),
        json!({
            "description": "Emitted before under the same `source`: the first event, nothing new.",
            "content": {"application/json": {"schema": emitted}}
        }),
    );
    responses.extend(problem_responses(EVENTS_CODES, false));
    let operation = json!({
        "operationId": format!("events.emit.{}.v{}", r.id, r.version),
        "summary": format!("Emit {}", r.id),
        "description": format!(
            "{}\n\nThis gateway checks the data against the contract, signs the event once, keeps it in its outbox \
             and records it before it answers (PROTOCOL.md §2.8, §4.5). Contract digest `{}`.",
            contract.doc().description, contract.digest()
        ),
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.emit"))}}
        },
        "responses": responses,
        "x-simpul-digest": contract.digest(),
        "x-simpul-emitters": emitters,
    });
    let path = b.paths.entry(events_path(&r)).or_insert_with(|| json!({}));
    path["post"] = operation;
}

/// The local face's operation for an overlap contract (PROTOCOL.md §4.4): the query names
/// one of the member's own lists; the answer is the count.
fn overlap_operation(
    b: &mut Builder,
    m: &Member,
    contract: &Contract,
    listed: &ManifestContract,
    purposes: &[String],
    granted: &[(MemberId, Vec<String>)],
) {
    let r = contract.reference();
    let doc = contract.doc();
    let base = format!("local.{}.v{}", r.id, r.version);
    let lists: Vec<&String> = m.lists.iter().map(|l| &l.name).collect();
    let count = json!({"type": "integer", "minimum": 0});
    b.schemas.insert(
        format!("{base}.body"),
        local_body(
            purposes,
            json!({
                "type": "object",
                "description": "Which of this gateway's own lists to count against the provider's, and whether per label of the list (labels under the contract's minimum pooled into `(other)`).",
                "required": ["list"],
                "additionalProperties": false,
                "properties": {
                    "list": {"type": "string", "enum": lists},
                    "grouped": {"type": "boolean"}
                }
            }),
        ),
    );
    b.schemas.insert(
        format!("{base}.answer"),
        json!({
            "type": "object",
            "description": "The run's count, with its signed request and answer as evidence (PROTOCOL.md §4.4).",
            "required": ["exchange_id", "provider", "result", "evidence"],
            "additionalProperties": false,
            "properties": {
                "exchange_id": schema_ref("ExchangeId"),
                "provider": {"type": "string", "const": listed.provider},
                "result": {
                    "type": "object",
                    "required": ["overlap", "theirs", "identifiers", "groups", "report"],
                    "additionalProperties": false,
                    "properties": {
                        "overlap": count,
                        "theirs": count,
                        "identifiers": count,
                        "groups": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["label", "size", "overlap"],
                                "additionalProperties": false,
                                "properties": {"label": {"type": "string"}, "size": count, "overlap": count}
                            }
                        },
                        "report": {
                            "type": "object",
                            "required": ["exchange_id", "recorded"],
                            "additionalProperties": false,
                            "properties": {
                                "exchange_id": {"type": ["string", "null"]},
                                "recorded": {"type": "boolean"},
                                "problem": {"type": "string"}
                            }
                        }
                    }
                },
                "evidence": schema_ref("Evidence")
            }
        }),
    );
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": format!("The count, from {}'s verified answer.", listed.provider),
            "headers": {"Cache-Control": header_ref("Cache-Control")},
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.answer"))}}
        }),
    );
    responses.extend(problem_responses(&single_codes(), false));
    let [traceparent, tracestate] = trace_headers();
    let operation = json!({
        "operationId": format!("query.{}.v{}", r.id, r.version),
        "summary": doc.title,
        "description": format!(
            "{}\n\nAn overlap run (PROTOCOL.md §2.7, §4.4): this gateway reads the list named, blinds it, \
             sends it to {} after the signed request, counts from the signed answer, and reports the count \
             in a second exchange. Contract digest `{}`.",
            doc.description, listed.provider, contract.digest()
        ),
        "parameters": [user_header(), traceparent, tracestate],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.body"))}}
        },
        "responses": responses,
        "x-simpul-provider": listed.provider,
        "x-simpul-digest": contract.digest(),
        "x-simpul-subsystems": subsystems_extension(granted),
    });
    b.paths.insert(query_path(&r), json!({ "post": operation }));
}

fn federated_operation(
    b: &mut Builder,
    config: &Config,
    fc: &FederatedContract,
    granted: &[(MemberId, Vec<String>)],
) {
    let r = &fc.reference;
    let base = format!("federated.{}.v{}", r.id, r.version);
    let mut part_queries = Vec::new();
    let mut part_schemas = Map::new();
    for (name, part) in &fc.parts {
        // Config::parse has checked that every part is in the catalog.
        let result = match config.catalog.get(part) {
            Some(c) => {
                b.embed(c);
                part_queries.push(schema_ref(&request_schema_name(part)));
                schema_ref(&response_schema_name(part))
            }
            None => json!({}),
        };
        part_schemas.insert(
            name.clone(),
            json!({
                "oneOf": [
                    {
                        "type": "object",
                        "description": format!("Part `{name}` answered: {part}, verified."),
                        "required": ["status", "provider", "exchange_id", "result", "evidence"],
                        "additionalProperties": false,
                        "properties": {
                            "status": {"const": "ok"},
                            "provider": {"type": "string"},
                            "exchange_id": schema_ref("ExchangeId"),
                            "result": result,
                            "evidence": schema_ref("Evidence")
                        }
                    },
                    schema_ref("PartError")
                ]
            }),
        );
    }
    b.schemas.insert(
        "PartError".into(),
        json!({
            "type": "object",
            "description": "A part of a federated query that has no verified answer: the problem it would have produced on its own (PROTOCOL.md §4.3).",
            "required": ["status", "problem"],
            "additionalProperties": false,
            "properties": {
                "status": {"const": "error"},
                "problem": schema_ref("Problem")
            }
        }),
    );
    let names: Vec<&String> = fc.parts.iter().map(|(n, _)| n).collect();
    b.schemas.insert(
        format!("{base}.body"),
        local_body(
            std::slice::from_ref(&fc.purpose),
            json!({
                "description": "Valid against every part's request schema.",
                "allOf": part_queries
            }),
        ),
    );
    b.schemas.insert(
        format!("{base}.answer"),
        json!({
            "type": "object",
            "description": "One entry per part, by name; a failed part never hides the others (PROTOCOL.md §4.3).",
            "required": ["exchange_id", "parts"],
            "additionalProperties": false,
            "properties": {
                "exchange_id": schema_ref("ExchangeId"),
                "parts": {
                    "type": "object",
                    "required": names,
                    "additionalProperties": false,
                    "properties": part_schemas
                }
            }
        }),
    );
    let parts_text: Vec<String> = fc
        .parts
        .iter()
        .map(|(n, p)| format!("`{n}` ({p})"))
        .collect();
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "Every part's outcome, even if every part failed.",
            "headers": {"Cache-Control": header_ref("Cache-Control")},
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.answer"))}}
        }),
    );
    responses.extend(problem_responses(FEDERATED_CODES, false));
    let [traceparent, tracestate] = trace_headers();
    let operation = json!({
        "operationId": format!("query.{}.v{}", r.id, r.version),
        "summary": fc.title,
        "description": format!(
            "A federated contract this gateway defines: one query asked of every part at once, for \
             `{}`, under one deadline of {} ms. Parts: {}.",
            fc.purpose,
            fc.deadline.as_millis(),
            parts_text.join(", ")
        ),
        "parameters": [user_header(), traceparent, tracestate],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": schema_ref(&format!("{base}.body"))}}
        },
        "responses": responses,
        "x-simpul-subsystems": subsystems_extension(granted),
    });
    b.paths.insert(query_path(r), json!({ "post": operation }));
}

/// What the exchange route can be refused with (PROTOCOL.md §3.3 and its notes).
const EXCHANGE_CODES: &[ProblemCode] = &[
    ProblemCode::PayloadTooLarge,
    ProblemCode::RequestTimeout,
    ProblemCode::Malformed,
    ProblemCode::UnsupportedMediaType,
    ProblemCode::BadSignature,
    ProblemCode::IdentityMismatch,
    ProblemCode::BadTreeHead,
    ProblemCode::LogForked,
    ProblemCode::WrongAudience,
    ProblemCode::Stale,
    ProblemCode::Replay,
    ProblemCode::UnknownContract,
    ProblemCode::Forbidden,
    ProblemCode::RateLimited,
    ProblemCode::InvalidQuery,
    ProblemCode::ProviderUnavailable,
    ProblemCode::ProviderTimeout,
    ProblemCode::ProviderError,
    ProblemCode::ManifestExpired,
    ProblemCode::Internal,
];

/// The federation listener (PROTOCOL.md §2.3, §3, §5.4): one `POST /v1/exchange/{id}/{version}`
/// per contract the manifest lists `m` as providing and `m`'s configuration binds, and the GET
/// routes.
fn peer_face(config: &Config, manifest: &ManifestDoc, m: &Member) -> Value {
    let mut b = Builder::new();
    b.schemas.insert(
        "JwsHeader".into(),
        json!({
            "type": "object",
            "description": "The protected header of an exchange JWS (PROTOCOL.md §1.5): no `crit`.",
            "required": ["alg", "kid", "typ"],
            "properties": {
                "alg": {"enum": ["ES256", "EdDSA"]},
                "kid": {"type": "string", "description": "`<member id>#<RFC 7638 thumbprint>`, a key of the manifest"},
                "typ": {"enum": [REQUEST_TYP, ANSWER_TYP]}
            },
            "not": {"required": ["crit"]}
        }),
    );
    let mut skipped = Vec::new();
    for listed in manifest.contracts.iter().filter(|c| c.provider == m.id) {
        let r = ContractRef::new(&listed.id, &listed.version);
        if m.events.iter().any(|e| e.contract == r) {
            // Emitted, so delivered from here to its subscribers' faces, never asked here.
            continue;
        }
        if !m.provides.iter().any(|p| p.contract == r) {
            skipped.push(format!("{r} (no binding in the configuration)"));
            continue;
        }
        let Some(contract) = config.catalog.get(&r) else {
            skipped.push(format!("{r} (no document in the catalog)"));
            continue;
        };
        exchange_operation(&mut b, m, contract, listed);
    }
    // The event contracts it subscribes to: their providers deliver here (§2.8).
    for listed in manifest
        .contracts
        .iter()
        .filter(|c| c.consumers.iter().any(|g| g.member == m.id))
    {
        let r = ContractRef::new(&listed.id, &listed.version);
        if let Some(contract) = config.catalog.get(&r).filter(|c| c.event().is_some()) {
            delivery_operation(&mut b, m, contract, listed);
        }
    }
    get_routes(&mut b, m);
    let url = manifest
        .members
        .iter()
        .find(|mm| mm.id == m.id)
        .map_or_else(|| m.gateway.clone(), |mm| mm.gateway.clone());
    let mut description = format!(
        "The federation listener of {} ({}) as its peers see it: the exchange face, one \
         `POST /v1/exchange/{{id}}/{{version}}` per contract the manifest lists {} as providing \
         (PROTOCOL.md §3) and per event contract it subscribes to, where the contract's provider \
         delivers its events (§2.8), and the GET routes (§2.3, §5.4). A request body is a compact JWS whose \
         payload is described by the schema named in `x-jws-payload`; so is the answer. Every answer \
         of the exchange route, a refusal included, carries `Simpul-Tree-Head` and \
         `Simpul-Manifest-Serial`.",
        m.id, m.name, m.id
    );
    if !skipped.is_empty() {
        description.push_str(&format!(
            " Listed in the manifest but not served here: {}.",
            skipped.join("; ")
        ));
    }
    let doc = skeleton(
        format!("Simpul federation face of {}", m.id),
        description,
        json!(url.trim_end_matches('/')),
        format!("The gateway URL of {} in the manifest", m.id),
        &m.id,
        Face::Peer,
        manifest.serial,
    );
    b.finish(
        doc,
        json!({
            "type": "mutualTLS",
            "description": "Mutual TLS with a certificate of the federation CA (PROTOCOL.md §1.3). On the exchange route the certificate must name the member that signs the request (`iss`); the GET routes serve any caller that completed the handshake.",
        }),
    )
}

/// Who signs a face's exchange and what its payloads carry: the consumer asks, the provider
/// answers (or, for a delivery, the event contract's provider asks and the subscriber answers).
struct Envelopes<'a> {
    /// The name its schemas go under, `exchange.<id>.v<version>` or `delivery.…`.
    base: String,
    /// Who may sign the request (`iss`), and what they ask for.
    askers: Vec<&'a MemberId>,
    purposes: BTreeSet<&'a String>,
    /// Who answers: this member.
    answerer: &'a MemberId,
    /// The schemas of `query` and of `result`.
    query: Value,
    result: Value,
    /// The request's bound in bytes (PROTOCOL.md §3.5).
    max_request_bytes: usize,
}

impl Envelopes<'_> {
    /// Embeds the two payload schemas and answers the request's and the answer's JWS schemas.
    fn embed(&self, b: &mut Builder, r: &ContractRef) -> (Value, Value) {
        let base = &self.base;
        b.schemas.insert(
            format!("{base}.request-payload"),
            json!({
                "type": "object",
                "description": "The payload of the request JWS (`typ` `simpul-request+jws`), signed by a key of `iss` (PROTOCOL.md §3.1).",
                "required": ["v", "id", "iss", "aud", "contract", "version", "purpose", "iat", "exp", "query"],
                "additionalProperties": false,
                "properties": {
                    "v": {"const": 1},
                    "id": schema_ref("ExchangeId"),
                    "iss": {"type": "string", "enum": self.askers, "description": "Who asks: a member the manifest grants this contract."},
                    "sub": {"type": "string", "description": "The asker's subsystem that asked, four parts, of `iss`; omitted rather than null."},
                    "aud": {"type": "string", "const": self.answerer},
                    "contract": {"type": "string", "const": r.id},
                    "version": {"type": "string", "const": r.version},
                    "purpose": {"type": "string", "enum": self.purposes, "description": "One the manifest grants (`x-simpul-grants`)."},
                    "iat": {"type": "integer", "description": "Issued at, Unix seconds, within ±60 s of the answerer's clock."},
                    "exp": {"type": "integer", "description": "Expires at: after `iat` and now, at most 300 s after `iat`."},
                    "query": self.query
                }
            }),
        );
        b.schemas.insert(
            format!("{base}.answer-payload"),
            json!({
                "type": "object",
                "description": "The payload of the answer JWS (`typ` `simpul-response+jws`), signed by a key of the answering member (PROTOCOL.md §3.2).",
                "required": ["v", "id", "iss", "aud", "contract", "version", "request_hash", "iat", "result"],
                "additionalProperties": false,
                "properties": {
                    "v": {"const": 1},
                    "id": schema_ref("ExchangeId"),
                    "iss": {"type": "string", "const": self.answerer},
                    "aud": {"type": "string", "enum": self.askers},
                    "contract": {"type": "string", "const": r.id},
                    "version": {"type": "string", "const": r.version},
                    "request_hash": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$", "description": "b64url-sha256 of the exact request body bytes."},
                    "iat": {"type": "integer"},
                    "result": self.result
                }
            }),
        );
        let jws = |payload: &str, typ: &str| {
            json!({
                "allOf": [schema_ref("CompactJws")],
                "description": format!("A compact JWS, `typ` `{typ}`, whose payload is `{payload}`."),
                "x-jws-header": schema_ref("JwsHeader"),
                "x-jws-payload": schema_ref(payload),
            })
        };
        let mut request = jws(&format!("{base}.request-payload"), REQUEST_TYP);
        // Only the request has this bound (PROTOCOL.md §3.5); ASCII, so characters are bytes.
        request["maxLength"] = json!(self.max_request_bytes);
        (request, jws(&format!("{base}.answer-payload"), ANSWER_TYP))
    }
}

/// The request headers of the exchange route (PROTOCOL.md §3.1).
fn exchange_parameters() -> Value {
    let [traceparent, tracestate] = trace_headers();
    json!([
        {
            "name": "Simpul-Tree-Head",
            "in": "header",
            "required": false,
            "description": "The asker's newest signed tree head (compact JWS, `typ` `simpul-tree-head+jws`, at most 2,048 visible ASCII characters), witnessed when present (PROTOCOL.md §5.4).",
            "schema": {"type": "string", "maxLength": 2048}
        },
        {
            "name": "Simpul-Manifest-Serial",
            "in": "header",
            "required": false,
            "description": "The serial of the manifest the asker holds (PROTOCOL.md §1.8).",
            "schema": {"type": "integer", "minimum": 0}
        },
        traceparent,
        tracestate
    ])
}

/// The headers of every answer of the exchange route.
fn exchange_answer_headers() -> Value {
    json!({
        "Cache-Control": header_ref("Cache-Control"),
        "Simpul-Tree-Head": header_ref("Simpul-Tree-Head"),
        "Simpul-Manifest-Serial": header_ref("Simpul-Manifest-Serial")
    })
}

fn exchange_operation(b: &mut Builder, m: &Member, contract: &Contract, listed: &ManifestContract) {
    b.embed(contract);
    let r = contract.reference();
    let doc = contract.doc();
    let (request, answer) = Envelopes {
        base: format!("exchange.{}.v{}", r.id, r.version),
        askers: listed.consumers.iter().map(|c| &c.member).collect(),
        purposes: listed.consumers.iter().flat_map(|c| &c.purposes).collect(),
        answerer: &m.id,
        query: schema_ref(&request_schema_name(&r)),
        result: schema_ref(&response_schema_name(&r)),
        max_request_bytes: contract.max_request_bytes(),
    }
    .embed(b, &r);
    let mut responses = Map::new();
    // An overlap run's lists follow its envelope, both ways (PROTOCOL.md §2.7).
    let lists = json!({
        "type": "string",
        "format": "binary",
        "description": "The compact JWS, one LF byte, then the frames of the lists its payload announces (PROTOCOL.md §2.7)."
    });
    let mut answer_content = json!({JOSE_MEDIA_TYPE: {"schema": answer}});
    let mut request_content = json!({JOSE_MEDIA_TYPE: {"schema": request}});
    if contract.overlap().is_some() {
        answer_content[PSI_MEDIA_TYPE] = json!({"schema": lists});
        request_content[PSI_MEDIA_TYPE] = json!({"schema": lists});
    }
    responses.insert(
        "200".into(),
        json!({
            "description": "The signed answer.",
            "headers": exchange_answer_headers(),
            "content": answer_content
        }),
    );
    let mut codes = EXCHANGE_CODES.to_vec();
    if contract.statistics().is_some() {
        // Rows 35b and 35c (PROTOCOL.md §2.6).
        codes.extend([ProblemCode::PopulationTooSmall, ProblemCode::TableTooLarge]);
    }
    if contract.overlap().is_some() {
        // A run's and a report's refusals (PROTOCOL.md §2.7).
        codes.extend([
            ProblemCode::SetTooSmall,
            ProblemCode::RunsExhausted,
            ProblemCode::BadFrames,
            ProblemCode::RunMismatch,
        ]);
    }
    responses.extend(problem_responses(&codes, true));
    let operation = json!({
        "operationId": format!("exchange.{}.v{}", r.id, r.version),
        "summary": doc.title,
        "description": format!(
            "{}\n\nChecked in the order of PROTOCOL.md §3.3; the first failure is answered. Contract digest `{}`; \
             rate per consumer {} per second, bursts of {}.",
            doc.description,
            contract.digest(),
            listed.rate.per_second,
            listed.rate.burst
        ),
        "parameters": exchange_parameters(),
        "requestBody": {
            "required": true,
            "content": request_content
        },
        "responses": responses,
        "x-simpul-digest": contract.digest(),
        "x-simpul-grants": listed.consumers,
        "x-simpul-rate": listed.rate,
    });
    b.paths
        .insert(exchange_path(&r), json!({ "post": operation }));
}

/// What a subscriber's exchange route can refuse a delivery with: the exchange route's
/// refusals up to row 26 of §3.3 and those of rows E1–E8 of §2.8 — no rate, and no adapter
/// behind it to time out or fail.
fn delivery_codes() -> Vec<ProblemCode> {
    EXCHANGE_CODES
        .iter()
        .copied()
        .filter(|c| {
            !matches!(
                c,
                ProblemCode::RateLimited
                    | ProblemCode::ProviderTimeout
                    | ProblemCode::ProviderError
            )
        })
        .chain([ProblemCode::BadEvent])
        .collect()
}

/// `POST /v1/exchange/{id}/{version}` of an event contract `m` subscribes to: the contract's
/// provider delivers its signed events there and `m` answers a signed receipt (PROTOCOL.md
/// §2.8).
fn delivery_operation(b: &mut Builder, m: &Member, contract: &Contract, listed: &ManifestContract) {
    b.embed(contract);
    let r = contract.reference();
    let doc = contract.doc();
    let base = format!("delivery.{}.v{}", r.id, r.version);
    let purposes: BTreeSet<&String> = listed
        .consumers
        .iter()
        .filter(|c| c.member == m.id)
        .flat_map(|c| &c.purposes)
        .collect();
    b.schemas.insert(
        format!("{base}.query"),
        json!({
            "type": "object",
            "description": "A delivery (PROTOCOL.md §2.8): signed events of this contract in the order they were emitted, and notices of events that expired undelivered; at least one of either.",
            "required": ["events"],
            "additionalProperties": false,
            "properties": {
                "events": {
                    "type": "array",
                    "maxItems": contracts::events::MAX_EVENTS_PER_DELIVERY,
                    "items": {
                        "allOf": [schema_ref("CompactJws")],
                        "maxLength": contracts::events::MAX_EVENT_BYTES,
                        "description": format!("A signed event (`typ` `{}`) whose payload is `{base}.event`.", contracts::events::EVENT_TYP),
                        "x-jws-payload": schema_ref(&format!("{base}.event")),
                    }
                },
                "expired": {
                    "type": "array",
                    "maxItems": contracts::events::MAX_NOTICES_PER_DELIVERY,
                    "items": {
                        "type": "object",
                        "required": ["id", "hash"],
                        "additionalProperties": false,
                        "properties": {
                            "id": schema_ref("ExchangeId"),
                            "hash": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$", "description": "b64url-sha256 of the signed event's bytes."}
                        }
                    }
                }
            }
        }),
    );
    b.schemas.insert(
        format!("{base}.event"),
        json!({
            "type": "object",
            "description": "The payload of a signed event, signed once by the contract's provider when it was emitted (PROTOCOL.md §2.8).",
            "required": ["v", "id", "iss", "contract", "version", "iat", "exp", "data"],
            "additionalProperties": false,
            "properties": {
                "v": {"const": 1},
                "id": schema_ref("ExchangeId"),
                "iss": {"type": "string", "const": listed.provider},
                "contract": {"type": "string", "const": r.id},
                "version": {"type": "string", "const": r.version},
                "iat": {"type": "integer", "description": "Emitted at, Unix seconds."},
                "exp": {"type": "integer", "description": "`iat` plus the contract's retention; in the future when delivered."},
                "data": schema_ref(&request_schema_name(&r))
            }
        }),
    );
    b.schemas.insert(
        format!("{base}.receipt"),
        json!({
            "type": "object",
            "description": "The subscriber's receipt: one line per event of the delivery, in its order, and the count of expiry notices it recorded.",
            "required": ["events", "expired"],
            "additionalProperties": false,
            "properties": {
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "status"],
                        "additionalProperties": false,
                        "properties": {
                            "id": schema_ref("ExchangeId"),
                            "status": {"enum": ["accepted", "duplicate"], "description": "`accepted`: kept now and handed to the member system; `duplicate`: held already, not handed on again."}
                        }
                    }
                },
                "expired": {"type": "integer", "minimum": 0}
            }
        }),
    );
    let (request, answer) = Envelopes {
        base: base.clone(),
        askers: vec![&listed.provider],
        purposes,
        answerer: &m.id,
        query: schema_ref(&format!("{base}.query")),
        result: schema_ref(&format!("{base}.receipt")),
        max_request_bytes: contract.max_request_bytes(),
    }
    .embed(b, &r);
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "The signed receipt.",
            "headers": exchange_answer_headers(),
            "content": {JOSE_MEDIA_TYPE: {"schema": answer}}
        }),
    );
    responses.extend(problem_responses(&delivery_codes(), true));
    let operation = json!({
        "operationId": format!("delivery.{}.v{}", r.id, r.version),
        "summary": format!("Deliveries of {} from {}", r.id, listed.provider),
        "description": format!(
            "{}\n\nAn event contract {} subscribes to: {} delivers its signed events here, and this gateway \
             answers a signed receipt. Checked in the order of PROTOCOL.md §3.3 up to row 26, then rows E1–E8 of §2.8; \
             the first failure is answered. Contract digest `{}`.",
            doc.description,
            m.id,
            listed.provider,
            contract.digest()
        ),
        "parameters": exchange_parameters(),
        "requestBody": {
            "required": true,
            "content": {JOSE_MEDIA_TYPE: {"schema": request}}
        },
        "responses": responses,
        "x-simpul-digest": contract.digest(),
        "x-simpul-grants": listed.consumers.iter().filter(|c| c.member == m.id).collect::<Vec<_>>(),
    });
    b.paths
        .insert(exchange_path(&r), json!({ "post": operation }));
}

/// `GET /v1/manifest`, `/v1/contracts`, `/v1/contracts/{id}/{version}` (PROTOCOL.md §2.3) and
/// `/v1/audit/consistency` (§5.4).
fn get_routes(b: &mut Builder, m: &Member) {
    let json_answer = |description: &str, schema: Value| {
        json!({
            "description": description,
            "headers": {"Cache-Control": header_ref("Cache-Control")},
            "content": {"application/json": {"schema": schema}}
        })
    };
    b.schemas.insert(
        "ContractList".into(),
        json!({
            "type": "object",
            "required": ["provider", "contracts"],
            "additionalProperties": false,
            "properties": {
                "provider": {"type": "string", "const": m.id},
                "contracts": {
                    "type": "array",
                    "description": "The contracts this gateway provides, in no particular order.",
                    "items": {
                        "type": "object",
                        "required": ["id", "version", "title", "digest"],
                        "additionalProperties": false,
                        "properties": {
                            "id": {"type": "string"},
                            "version": {"type": "string"},
                            "title": {"type": "string"},
                            "digest": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"}
                        }
                    }
                }
            }
        }),
    );
    b.schemas.insert(
        "ContractDocument".into(),
        json!({
            "type": "object",
            "description": "A contract document (PROTOCOL.md §2.1) in its RFC 8785 form: SHA-256 of the body bytes is the manifest's digest.",
            "required": ["id", "version", "provider", "title", "description", "request", "response", "purposes", "cache", "personal_data"],
            "additionalProperties": false,
            "properties": {
                "id": {"type": "string"},
                "version": {"type": "string"},
                "provider": {"type": "string"},
                "title": {"type": "string"},
                "description": {"type": "string"},
                "request": {"type": ["object", "boolean"], "description": "JSON Schema 2020-12 of the exchange's `query`."},
                "response": {"type": ["object", "boolean"], "description": "JSON Schema 2020-12 of the answer's `result`."},
                "purposes": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "cache": {
                    "oneOf": [
                        {"type": "null"},
                        {"type": "object", "required": ["ttl_s"], "additionalProperties": false,
                         "properties": {"ttl_s": {"type": "integer", "minimum": 0}}}
                    ]
                },
                "personal_data": {"type": "array", "items": {"type": "string"}},
                "batch": {
                    "type": "object", "description": "A batch contract's items (PROTOCOL.md §2.5); absent in any other.",
                    "required": ["items", "max_items"], "additionalProperties": false,
                    "properties": {
                        "items": {"type": "string"},
                        "max_items": {"type": "integer", "minimum": 1, "maximum": contracts::contract::MAX_BATCH_ITEMS}
                    }
                },
                "max_request_bytes": {
                    "type": "integer", "minimum": contracts::envelope::MAX_REQUEST_BYTES, "maximum": contracts::contract::MAX_RAISED_REQUEST_BYTES,
                    "description": "The contract's own request body limit (PROTOCOL.md §3.5); absent: 65,536."
                }
            }
        }),
    );
    b.schemas.insert(
        "ConsistencyProof".into(),
        json!({
            "type": "object",
            "description": "An RFC 9162 consistency proof between two sizes of this gateway's log.",
            "required": ["first", "second", "path"],
            "additionalProperties": false,
            "properties": {
                "first": {"type": "integer", "minimum": 0},
                "second": {"type": "integer", "minimum": 0},
                "path": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"}}
            }
        }),
    );
    let mut manifest_answer = Map::new();
    manifest_answer.insert(
        "200".into(),
        json!({
            "description": "The signed manifest this gateway holds (PROTOCOL.md §1.6).",
            "headers": {
                "Cache-Control": header_ref("Cache-Control"),
                "Simpul-Manifest-Serial": header_ref("Simpul-Manifest-Serial")
            },
            "content": {JOSE_MEDIA_TYPE: {"schema": schema_ref("CompactJws")}}
        }),
    );
    b.paths.insert(
        "/v1/manifest".into(),
        json!({"get": {
            "operationId": "manifest",
            "summary": "The manifest this gateway holds",
            "responses": manifest_answer
        }}),
    );
    b.paths.insert(
        "/v1/contracts".into(),
        json!({"get": {
            "operationId": "contracts",
            "summary": "The contracts this gateway provides",
            "responses": {"200": json_answer("The list.", schema_ref("ContractList"))}
        }}),
    );
    let mut document_answers = Map::new();
    document_answers.insert(
        "200".into(),
        json_answer("The document.", schema_ref("ContractDocument")),
    );
    document_answers.extend(problem_responses(
        &[ProblemCode::UnknownContract, ProblemCode::Internal],
        false,
    ));
    let segment = |what: &str| {
        json!({
            "name": what, "in": "path", "required": true,
            "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
        })
    };
    b.paths.insert(
        "/v1/contracts/{id}/{version}".into(),
        json!({"get": {
            "operationId": "contract",
            "summary": "One contract document this gateway provides",
            "parameters": [segment("id"), segment("version")],
            "responses": document_answers
        }}),
    );
    let mut proof_answers = Map::new();
    proof_answers.insert(
        "200".into(),
        json_answer("The proof.", schema_ref("ConsistencyProof")),
    );
    proof_answers.extend(problem_responses(
        &[ProblemCode::Malformed, ProblemCode::ProviderUnavailable],
        false,
    ));
    let size = |what: &str| {
        json!({
            "name": what, "in": "query", "required": true,
            "schema": {"type": "integer", "minimum": 0}
        })
    };
    b.paths.insert(
        "/v1/audit/consistency".into(),
        json!({"get": {
            "operationId": "consistency",
            "summary": "A consistency proof between two sizes of this gateway's log",
            "description": "For partners witnessing this log (PROTOCOL.md §5.4). 400 `malformed` when a size is missing or not a whole number, `first` > `second`, or `second` is beyond the log's committed size.",
            "parameters": [size("first"), size("second")],
            "responses": proof_answers
        }}),
    );
}

/// The parts every face's document starts with: the version, `info`, the one server and
/// the `x-simpul-*` extensions naming the member, the face and the manifest's serial.
fn skeleton(
    title: String,
    description: String,
    url: Value,
    server: String,
    member: &MemberId,
    face: Face,
    serial: u64,
) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("openapi".into(), json!("3.1.0"));
    doc.insert(
        "info".into(),
        json!({"title": title, "version": "1", "description": description}),
    );
    doc.insert(
        "servers".into(),
        json!([{"url": url, "description": server}]),
    );
    doc.insert("x-simpul-member".into(), json!(member));
    doc.insert("x-simpul-face".into(), json!(face.as_str()));
    doc.insert("x-simpul-manifest-serial".into(), json!(serial));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::manifest::{ManifestMember, Rate};
    use std::path::Path;

    /// The demo federation of the repository's `config.toml`, with the catalog it names.
    fn demo() -> Config {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Config::load(&dir.join("config.toml")).unwrap()
    }

    /// The manifest `config` describes (keys and CA aside).
    fn manifest(config: &Config) -> ManifestDoc {
        ManifestDoc {
            v: 1,
            federation: config.federation.id.clone(),
            serial: 7,
            issued_at: 0,
            expires_at: 1,
            ca: vec![],
            members: config
                .members
                .iter()
                .map(|m| ManifestMember {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    gateway: m.gateway.clone(),
                    keys: vec![],
                })
                .collect(),
            contracts: config
                .members
                .iter()
                .flat_map(|m| {
                    // As the authority writes it: an event contract's subscribers are its
                    // consumers.
                    let provided = m.provides.iter().map(|p| (&p.contract, &p.consumers));
                    let emitted = m.events.iter().map(|e| (&e.contract, &e.subscribers));
                    provided
                        .chain(emitted)
                        .map(|(contract, consumers)| ManifestContract {
                            id: contract.id.clone(),
                            version: contract.version.clone(),
                            provider: m.id.clone(),
                            digest: String::new(),
                            consumers: consumers.clone(),
                            rate: Rate {
                                per_second: 1,
                                burst: 1,
                            },
                        })
                })
                .collect(),
        }
    }

    fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
        v.pointer(pointer)
            .unwrap_or_else(|| panic!("no {pointer} in the document"))
    }

    #[test]
    fn an_unknown_member_is_named_with_the_members_of_the_federation() {
        let config = demo();
        let e = document(&config, &manifest(&config), "ID:GOV:NOPE", Face::Local).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("ID:GOV:NOPE is not a member in "),
            "{text}"
        );
        for m in [
            "ID:GOV:KEMLU",
            "ID:GOV:DUKCAPIL",
            "ID:GOV:BP2MI",
            "ID:GOV:BPJSTK",
        ] {
            assert!(text.contains(m), "{text}");
        }
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_member_without_a_local_listener_has_no_local_face() {
        let mut config = demo();
        config.members[1].local = None;
        let m = manifest(&config);
        let e = document(&config, &m, "ID:GOV:DUKCAPIL", Face::Local).unwrap_err();
        assert!(matches!(e, OpenApiError::NoLocalFace { .. }), "{e}");
        assert!(document(&config, &m, "ID:GOV:DUKCAPIL", Face::Peer).is_ok());
    }

    #[test]
    fn a_reference_inside_an_embedded_schema_points_at_its_new_home() {
        let schema = json!({
            "$defs": {"date": {"type": "string"}},
            "properties": {
                "since": {"$ref": "#/$defs/date"},
                "self": {"$ref": "#"},
                "named": {"$ref": "#day"},
                "kept": {"const": {"$ref": "#/$defs/date"}},
                "enum": {"$ref": "#/$defs/date"}
            }
        });
        let e = embedded_schema("contract.x.v1.response", &schema);
        let base = "#/components/schemas/contract.x.v1.response";
        assert_eq!(
            e["properties"]["since"]["$ref"],
            format!("{base}/$defs/date")
        );
        assert_eq!(e["properties"]["self"]["$ref"], base);
        assert_eq!(e["properties"]["named"]["$ref"], "#day");
        assert_eq!(e["properties"]["kept"]["const"]["$ref"], "#/$defs/date");
        assert_eq!(
            e["properties"]["enum"]["$ref"],
            format!("{base}/$defs/date")
        );
        let own = json!({"$id": "urn:x", "properties": {"a": {"$ref": "#/$defs/a"}}});
        assert_eq!(embedded_schema("n", &own), own);
    }

    #[test]
    fn the_local_face_serves_what_a_subsystem_and_the_manifest_grant_and_nothing_else() {
        let config = demo();
        let mut m = manifest(&config);
        // The manifest no longer grants Kemlu insurance.status.
        for c in &mut m.contracts {
            if c.id == "insurance.status" {
                c.consumers.retain(|c| c.member.as_str() != "ID:GOV:KEMLU");
            }
        }
        let doc = document(&config, &m, "ID:GOV:KEMLU", Face::Local).unwrap();
        let paths = at(&doc, "/paths").as_object().unwrap();
        assert!(paths.contains_key("/v1/query/citizenship.status/1"));
        assert!(paths.contains_key("/v1/query/person.protection-profile/1"));
        assert!(!paths.contains_key("/v1/query/insurance.status/1"));
        let info = at(&doc, "/info/description").as_str().unwrap();
        assert!(
            info.contains("insurance.status/1 (the manifest does not grant"),
            "{info}"
        );
        // Dukcapil's one subsystem is granted nothing.
        let doc = document(&config, &m, "ID:GOV:DUKCAPIL", Face::Local).unwrap();
        assert!(at(&doc, "/paths").as_object().unwrap().is_empty());
    }

    #[test]
    fn a_federated_query_must_fit_every_part_and_answers_every_part_by_name() {
        let config = demo();
        let doc = document(&config, &manifest(&config), "ID:GOV:KEMLU", Face::Local).unwrap();
        let body = at(
            &doc,
            "/components/schemas/federated.person.protection-profile.v1.body",
        );
        assert_eq!(
            at(body, "/properties/purpose/enum"),
            &json!(["citizen-protection"])
        );
        assert_eq!(
            at(body, "/properties/query/allOf")
                .as_array()
                .unwrap()
                .len(),
            4
        );
        let answer = at(
            &doc,
            "/components/schemas/federated.person.protection-profile.v1.answer",
        );
        assert_eq!(
            at(answer, "/properties/parts/required"),
            &json!(["citizenship", "placement", "insurance", "residence"])
        );
        assert_eq!(
            at(
                answer,
                "/properties/parts/properties/placement/oneOf/0/properties/result/$ref"
            ),
            "#/components/schemas/contract.employment.placement.v1.response"
        );
        // No part's failure is a refusal: a federated query is never relayed a provider's.
        let responses = at(
            &doc,
            "/paths/~1v1~1query~1person.protection-profile~11/post/responses",
        );
        assert!(responses.get("401").is_none() && responses.get("502").is_none());
    }

    #[test]
    fn the_peer_face_serves_what_the_manifest_lists_and_the_configuration_binds() {
        let config = demo();
        let mut m = manifest(&config);
        m.contracts.push(ManifestContract {
            provider: MemberId::parse("ID:GOV:DUKCAPIL").unwrap(),
            ..m.contracts[0].clone()
        });
        let doc = document(&config, &m, "ID:GOV:DUKCAPIL", Face::Peer).unwrap();
        let paths = at(&doc, "/paths").as_object().unwrap();
        assert!(paths.contains_key("/v1/exchange/citizenship.status/1"));
        assert!(!paths.contains_key("/v1/exchange/residence.abroad/1"));
        for get in [
            "/v1/manifest",
            "/v1/contracts",
            "/v1/contracts/{id}/{version}",
            "/v1/audit/consistency",
        ] {
            assert!(paths[get].get("get").is_some(), "{get}");
        }
        assert_eq!(at(&doc, "/servers/0/url"), "https://localhost:7442");
        let payload = at(
            &doc,
            "/components/schemas/exchange.citizenship.status.v1.request-payload",
        );
        assert_eq!(
            at(payload, "/properties/iss/enum"),
            &json!(["ID:GOV:KEMLU", "ID:GOV:BP2MI", "ID:GOV:BPJSTK"])
        );
        assert_eq!(
            at(payload, "/properties/query/$ref"),
            "#/components/schemas/contract.citizenship.status.v1.request"
        );
        let info = at(&doc, "/info/description").as_str().unwrap();
        assert!(info.contains("residence.abroad/1 (no binding"), "{info}");
    }

    #[test]
    fn a_subscribers_peer_face_takes_deliveries_of_its_event_contracts_and_the_emitters_does_not() {
        let config = demo();
        let m = manifest(&config);
        let kemlu = document(&config, &m, "ID:GOV:KEMLU", Face::Peer).unwrap();
        let post = at(&kemlu, "/paths/~1v1~1exchange~1placement.changed~11/post");
        assert_eq!(post["operationId"], "delivery.placement.changed.v1");
        let payload = at(
            &kemlu,
            "/components/schemas/delivery.placement.changed.v1.request-payload",
        );
        assert_eq!(
            at(payload, "/properties/iss/enum"),
            &json!(["ID:GOV:BP2MI"])
        );
        assert_eq!(at(payload, "/properties/aud/const"), "ID:GOV:KEMLU");
        assert_eq!(
            at(payload, "/properties/purpose/enum"),
            &json!(["citizen-protection"])
        );
        let query = at(
            &kemlu,
            "/components/schemas/delivery.placement.changed.v1.query",
        );
        assert_eq!(at(query, "/properties/events/maxItems"), 64);
        let event = at(
            &kemlu,
            "/components/schemas/delivery.placement.changed.v1.event",
        );
        assert_eq!(
            at(event, "/properties/data/$ref"),
            "#/components/schemas/contract.placement.changed.v1.request"
        );
        let receipt = at(
            &kemlu,
            "/components/schemas/delivery.placement.changed.v1.answer-payload",
        );
        assert_eq!(
            at(receipt, "/properties/result/$ref"),
            "#/components/schemas/delivery.placement.changed.v1.receipt"
        );
        assert!(post["responses"]["400"].to_string().contains("bad-event"));
        // BPJS TK is not granted it; BP2MI emits it, and is never asked it.
        for member in ["ID:GOV:BPJSTK", "ID:GOV:BP2MI"] {
            let doc = document(&config, &m, member, Face::Peer).unwrap();
            assert!(
                doc.pointer("/paths/~1v1~1exchange~1placement.changed~11")
                    .is_none(),
                "{member}"
            );
            let info = at(&doc, "/info/description").as_str().unwrap();
            assert!(!info.contains("placement.changed"), "{member}: {info}");
        }
    }

    #[test]
    fn a_statistics_contracts_exchange_documents_its_422_refusals_and_no_other_does() {
        let config = demo();
        let m = manifest(&config);
        let doc = document(&config, &m, "ID:GOV:BP2MI", Face::Peer).unwrap();
        let counts = at(
            &doc,
            "/paths/~1v1~1exchange~1placement.counts~11/post/responses/422",
        );
        let types = counts.to_string();
        assert!(
            types.contains("population-too-small") && types.contains("table-too-large"),
            "{types}"
        );
        let one_person = at(
            &doc,
            "/paths/~1v1~1exchange~1employment.placement~11/post/responses",
        );
        assert!(one_person.get("422").is_none());
    }

    #[test]
    fn an_overlap_contract_is_asked_by_list_on_the_local_face_and_takes_lists_on_the_exchange() {
        let config = demo();
        let m = manifest(&config);
        let local = document(&config, &m, "ID:GOV:KEMLU", Face::Local).unwrap();
        let body = at(
            &local,
            "/components/schemas/local.placement.overlap.v1.body",
        );
        assert_eq!(
            body["properties"]["query"]["properties"]["list"]["enum"],
            json!(["selfreports"])
        );
        let peer = document(&config, &m, "ID:GOV:BP2MI", Face::Peer).unwrap();
        let run = at(&peer, "/paths/~1v1~1exchange~1placement.overlap~11/post");
        assert!(run["requestBody"]["content"][PSI_MEDIA_TYPE].is_object());
        assert!(run["responses"]["200"]["content"][PSI_MEDIA_TYPE].is_object());
        let types = run["responses"].to_string();
        for code in [
            "set-too-small",
            "runs-exhausted",
            "bad-frames",
            "run-mismatch",
        ] {
            assert!(types.contains(code), "{code}: {types}");
        }
        let one_person = at(
            &peer,
            "/paths/~1v1~1exchange~1employment.placement~11/post/requestBody/content",
        );
        assert!(one_person.get(PSI_MEDIA_TYPE).is_none());
    }

    #[test]
    fn the_end_user_header_is_the_one_the_local_face_reads() {
        let h = user_header();
        assert!(
            h["name"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(crate::consumer::local::USER_HEADER)
        );
        assert_eq!(h["schema"]["maxLength"], MAX_USER_ID);
    }

    #[test]
    fn each_problem_response_names_only_the_codes_of_its_status() {
        let responses = problem_responses(
            &[
                ProblemCode::Forbidden,
                ProblemCode::NotGranted,
                ProblemCode::Malformed,
            ],
            false,
        );
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["400", "403"]);
        let schema = at(
            &responses["403"],
            "/content/application~1problem+json/schema/allOf/1",
        );
        assert_eq!(
            at(schema, "/properties/type/enum"),
            &json!(["urn:simpul:error:forbidden", "urn:simpul:error:not-granted"])
        );
        assert_eq!(at(schema, "/properties/status/const"), 403);
    }
}
