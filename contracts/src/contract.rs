//! Contract documents: one lookup a provider offers, with its request and response schemas.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{canonical_json, sha256_b64url};
use crate::member::MemberId;

/// A contract's id and version, e.g. `citizenship.status` `1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContractRef {
    /// Contract id.
    pub id: String,
    /// Contract version.
    pub version: String,
}

impl ContractRef {
    /// A reference from its parts.
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            version: version.into(),
        }
    }
}

impl fmt::Display for ContractRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.id, self.version)
    }
}

/// Response caching a contract allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// Seconds an answer may be served from cache.
    pub ttl_s: u64,
}

/// The contract document as published (PROTOCOL.md §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractDoc {
    /// Contract id: lower-case words separated by dots.
    pub id: String,
    /// Version.
    pub version: String,
    /// The member that answers it.
    pub provider: MemberId,
    /// One-line title.
    pub title: String,
    /// What the contract answers, and what it deliberately does not.
    pub description: String,
    /// JSON Schema 2020-12 of `query`.
    pub request: Value,
    /// JSON Schema 2020-12 of `result`.
    pub response: Value,
    /// Purpose codes this contract may be asked for.
    pub purposes: Vec<String>,
    /// Caching allowed, or null.
    pub cache: Option<CachePolicy>,
    /// JSON pointers into `query` that hold personal identifiers; in a batch contract, into
    /// each item.
    pub personal_data: Vec<String>,
    /// Present in a batch contract (PROTOCOL.md §2.5): where the query's items are, and how
    /// many one exchange may carry. Absent, not `null`, in any other, so documents written
    /// before the field existed keep their digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    /// The largest request body this contract takes, when more than the protocol's 65,536
    /// bytes ([`crate::envelope::MAX_REQUEST_BYTES`], PROTOCOL.md §3.5); at most
    /// [`MAX_RAISED_REQUEST_BYTES`]. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// Present in a statistics contract (PROTOCOL.md §2.6): the dimensions a question may
    /// name and the disclosure rules of its answer. Absent, not `null`, in any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<crate::statistics::Statistics>,
    /// Present in an overlap contract (PROTOCOL.md §2.7): what its lists hold and the
    /// bounds of a run. Absent, not `null`, in any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<crate::psi::wire::OverlapTerms>,
    /// Present in an event contract (PROTOCOL.md §2.8): `request` is then the schema of an
    /// event's `data`, and these terms say what orders its events and how long an undelivered
    /// one is kept. Absent, not `null`, in any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<crate::events::EventTerms>,
}

/// The largest `max_request_bytes` a contract may set: 4 MiB.
pub const MAX_RAISED_REQUEST_BYTES: u64 = 4 * 1024 * 1024;

/// The protocol's request body limit, which a contract may raise (PROTOCOL.md §3.5).
const DEFAULT_REQUEST_BYTES: u64 = crate::envelope::MAX_REQUEST_BYTES as u64;

/// The most items a batch contract may allow in one exchange.
pub const MAX_BATCH_ITEMS: u32 = 10_000;

/// What makes a contract a batch contract: many items asked and answered in one exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// JSON pointer into `query` of the array of items (`/items`).
    pub items: String,
    /// The most items one exchange carries; the request schema bounds the array by it.
    pub max_items: u32,
}

/// Why a contract document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Not strict JSON, or not the document's shape.
    #[error("not a contract document: {0}")]
    Json(#[from] crate::json::JsonError),
    /// The document cannot be put in canonical form.
    #[error("not a contract document: {0}")]
    Parse(#[from] serde_json::Error),
    /// A field has a value the protocol does not allow.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// One schema violation: where in the instance, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaViolation {
    /// JSON pointer into the checked document.
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

/// The most violations reported for one document; the rest are counted, not listed.
pub const MAX_VIOLATIONS: usize = 16;

fn valid_contract_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn valid_version(v: &str) -> bool {
    (1..=16).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Whether `p` is a purpose code: 1 to 64 characters of `[a-z0-9-]`.
pub fn valid_purpose(p: &str) -> bool {
    (1..=64).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A validated contract with its digest and compiled schemas.
#[derive(Clone)]
pub struct Contract {
    doc: Arc<ContractDoc>,
    digest: String,
    request: Arc<jsonschema::Validator>,
    response: Arc<jsonschema::Validator>,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Contract({}/{} {})",
            self.doc.id, self.doc.version, self.digest
        )
    }
}

fn compile(field: &'static str, schema: &Value) -> Result<jsonschema::Validator, ContractError> {
    // Only the 2020-12 dialect, and no remote $ref: the crate is built without retrieval.
    jsonschema::draft202012::options()
        .build(schema)
        .map_err(|e| ContractError::Field {
            field,
            reason: format!("not a valid JSON Schema 2020-12: {e}"),
        })
}

impl Contract {
    /// Parses and validates a contract document from JSON text.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ContractError> {
        Self::new(crate::json::from_slice(bytes)?)
    }

    /// Validates a document: id, version and purpose syntax, pointer syntax, and that both
    /// schemas compile as JSON Schema 2020-12.
    pub fn new(doc: ContractDoc) -> Result<Self, ContractError> {
        let field = |field, reason: &str| ContractError::Field {
            field,
            reason: reason.to_owned(),
        };
        if !valid_contract_id(&doc.id) {
            return Err(field(
                "id",
                "must be dot-separated words of [a-z0-9-], at most 128 characters",
            ));
        }
        if !valid_version(&doc.version) {
            return Err(field(
                "version",
                "must be 1 to 16 characters of [A-Za-z0-9.-]",
            ));
        }
        if doc.provider.is_subsystem() {
            return Err(field("provider", "must be a member id, not a subsystem"));
        }
        if doc.purposes.is_empty() || !doc.purposes.iter().all(|p| valid_purpose(p)) {
            return Err(field(
                "purposes",
                "must list at least one purpose code of [a-z0-9-]",
            ));
        }
        if !doc.personal_data.iter().all(|p| p.starts_with('/')) {
            return Err(field(
                "personal_data",
                "each entry must be a JSON pointer starting with `/`",
            ));
        }
        if let Some(batch) = &doc.batch {
            check_batch(batch, &doc.request)?;
        }
        if let Some(stats) = &doc.statistics {
            crate::statistics::check(stats).map_err(|reason| ContractError::Field {
                field: "statistics",
                reason,
            })?;
            if doc.batch.is_some() {
                return Err(field(
                    "statistics",
                    "a contract is a statistics contract or a batch contract, not both",
                ));
            }
            if !doc.personal_data.is_empty() {
                return Err(field(
                    "personal_data",
                    "a statistics question names no person: the list must be empty",
                ));
            }
        }
        if let Some(terms) = &doc.overlap {
            crate::psi::wire::check(terms).map_err(|reason| ContractError::Field {
                field: "overlap",
                reason,
            })?;
            if doc.batch.is_some() || doc.statistics.is_some() {
                return Err(field(
                    "overlap",
                    "an overlap contract is not also a batch or a statistics contract",
                ));
            }
            if !doc.personal_data.is_empty() {
                return Err(field(
                    "personal_data",
                    "an overlap run names no person in its query: the list must be empty",
                ));
            }
            if doc.cache.is_some() {
                return Err(field(
                    "cache",
                    "every overlap run is answered under keys of its own: `cache` must be null",
                ));
            }
            if doc.max_request_bytes.is_some() {
                return Err(field(
                    "max_request_bytes",
                    "an overlap run's envelope keeps the protocol's limit; its lists follow it (§2.7)",
                ));
            }
        }
        if let Some(terms) = &doc.event {
            crate::events::check(terms, &doc.request).map_err(|reason| ContractError::Field {
                field: "event",
                reason,
            })?;
            if doc.batch.is_some() || doc.statistics.is_some() || doc.overlap.is_some() {
                return Err(field(
                    "event",
                    "an event contract is not also a batch, statistics or overlap contract",
                ));
            }
            if doc.cache.is_some() {
                return Err(field(
                    "cache",
                    "events are not cached: `cache` must be null",
                ));
            }
            if doc.max_request_bytes.is_some() {
                return Err(field(
                    "max_request_bytes",
                    "a delivery keeps the protocol's limit: each event is at most 8 KiB (§2.8)",
                ));
            }
            // Nothing answers an event but the receipt, whose form is the protocol's.
            if doc.response != Value::Bool(false) {
                return Err(field(
                    "response",
                    "an event contract's response schema is `false`: a delivery is answered by the protocol's receipt (§2.8)",
                ));
            }
        }
        if let Some(max) = doc.max_request_bytes
            && !(DEFAULT_REQUEST_BYTES..=MAX_RAISED_REQUEST_BYTES).contains(&max)
        {
            return Err(field(
                "max_request_bytes",
                "must be from 65536 to 4194304 (4 MiB)",
            ));
        }
        let request = compile("request", &doc.request)?;
        let response = compile("response", &doc.response)?;
        let digest = sha256_b64url(&canonical_json(&doc)?);
        Ok(Contract {
            doc: Arc::new(doc),
            digest,
            request: Arc::new(request),
            response: Arc::new(response),
        })
    }

    /// The document.
    pub fn doc(&self) -> &ContractDoc {
        &self.doc
    }

    /// `id` and `version`.
    pub fn reference(&self) -> ContractRef {
        ContractRef::new(&self.doc.id, &self.doc.version)
    }

    /// base64url SHA-256 of the document's RFC 8785 form: what the manifest pins.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The most bytes a request body to this contract may have (PROTOCOL.md §3.5).
    pub fn max_request_bytes(&self) -> usize {
        self.doc
            .max_request_bytes
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(crate::envelope::MAX_REQUEST_BYTES)
    }

    /// The dimensions and disclosure rules of a statistics contract; `None` for any other.
    pub fn statistics(&self) -> Option<&crate::statistics::Statistics> {
        self.doc.statistics.as_ref()
    }

    /// What the lists of an overlap contract hold and the bounds of a run; `None` for any
    /// other.
    pub fn overlap(&self) -> Option<&crate::psi::wire::OverlapTerms> {
        self.doc.overlap.as_ref()
    }

    /// What orders an event contract's events and how long an undelivered one is kept;
    /// `None` for any other.
    pub fn event(&self) -> Option<&crate::events::EventTerms> {
        self.doc.event.as_ref()
    }

    /// The items of a batch query: the array at the batch's pointer, when this is a batch
    /// contract and the query has one there.
    pub fn items<'q>(&self, query: &'q Value) -> Option<&'q [Value]> {
        let batch = self.doc.batch.as_ref()?;
        query.pointer(&batch.items)?.as_array().map(Vec::as_slice)
    }

    /// How many items `query` asks about, for a rate limit that counts items: the length of
    /// a batch query's array, at most the batch's `max_items` (a longer array is refused by
    /// the schema), and at least 1; 1 for any other contract.
    pub fn item_count(&self, query: &Value) -> u32 {
        match (&self.doc.batch, self.items(query)) {
            (Some(batch), Some(items)) => {
                u32::try_from(items.len()).map_or(batch.max_items, |n| n.clamp(1, batch.max_items))
            }
            _ => 1,
        }
    }

    /// The values at the personal-data pointers, one list per person the query is about:
    /// one list for an ordinary contract, one per item for a batch contract. A list is empty
    /// when the query holds none of them.
    pub fn personal_values(&self, query: &Value) -> Vec<Vec<Value>> {
        let pick = |v: &Value| -> Vec<Value> {
            self.doc
                .personal_data
                .iter()
                .filter_map(|p| v.pointer(p).cloned())
                .collect()
        };
        match (&self.doc.batch, self.items(query)) {
            (Some(_), Some(items)) => items.iter().map(pick).collect(),
            (Some(_), None) => Vec::new(),
            (None, _) => vec![pick(query)],
        }
    }

    /// Checks a query against the request schema; violations point into the query
    /// prefixed with `prefix` (the protocol reports `/query/nik`).
    pub fn check_request(&self, query: &Value, prefix: &str) -> Result<(), Vec<SchemaViolation>> {
        check(&self.request, query, prefix)
    }

    /// Checks a result against the response schema.
    pub fn check_response(&self, result: &Value, prefix: &str) -> Result<(), Vec<SchemaViolation>> {
        check(&self.response, result, prefix)
    }
}

/// A batch's pointer is a plain path of object properties, and the request schema bounds
/// the array there by `maxItems` no larger than `max_items`: the schema, which every
/// partner's validator enforces, is what holds a batch to its size.
fn check_batch(batch: &Batch, request: &Value) -> Result<(), ContractError> {
    let refuse = |reason: &str| ContractError::Field {
        field: "batch",
        reason: reason.to_owned(),
    };
    if !(1..=MAX_BATCH_ITEMS).contains(&batch.max_items) {
        return Err(refuse("`max_items` must be from 1 to 10000"));
    }
    let Some(path) = batch.items.strip_prefix('/') else {
        return Err(refuse("`items` must be a JSON pointer starting with `/`"));
    };
    let mut schema = request;
    for segment in path.split('/') {
        if segment.is_empty() || segment.contains('~') {
            return Err(refuse("`items` must name object properties, plainly"));
        }
        schema = schema
            .get("properties")
            .and_then(|p| p.get(segment))
            .ok_or_else(|| refuse("the request schema has no property at `items`"))?;
    }
    let bounded = schema
        .get("maxItems")
        .and_then(Value::as_u64)
        .is_some_and(|m| m <= u64::from(batch.max_items));
    if schema.get("type").and_then(Value::as_str) != Some("array") || !bounded {
        return Err(refuse(
            "the request schema must make `items` an array with `maxItems` at most `max_items`",
        ));
    }
    Ok(())
}

fn check(
    validator: &jsonschema::Validator,
    instance: &Value,
    prefix: &str,
) -> Result<(), Vec<SchemaViolation>> {
    if validator.is_valid(instance) {
        return Ok(());
    }
    Err(validator
        .iter_errors(instance)
        .take(MAX_VIOLATIONS)
        .map(|e| SchemaViolation {
            pointer: format!("{prefix}{}", e.instance_path()),
            message: match e.kind() {
                // A pattern is often hundreds of characters (the NIK's is 400): name where
                // it is rather than print it.
                jsonschema::error::ValidationErrorKind::Pattern { pattern } if pattern.len() > 40 => {
                    format!(
                        "the value does not have the form the contract requires (the pattern at {} of its schema; the description beside it says the rule)",
                        e.schema_path()
                    )
                }
                // Masked: the value itself (a NIK) must not travel in problems or logs.
                _ => e.masked().to_string(),
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> ContractDoc {
        serde_json::from_value(json!({
            "id": "citizenship.status", "version": "1", "provider": "ID:GOV:DUKCAPIL",
            "title": "t", "description": "d",
            "request": {"type": "object", "properties": {"nik": {"type": "string", "pattern": "^[0-9]{16}$"}},
                        "required": ["nik"], "additionalProperties": false},
            "response": {"type": "object"},
            "purposes": ["citizen-protection"], "cache": null, "personal_data": ["/nik"]
        }))
        .unwrap()
    }

    #[test]
    fn digest_is_stable_and_changes_with_the_document() {
        let a = Contract::new(doc()).unwrap();
        assert_eq!(a.digest(), Contract::new(doc()).unwrap().digest());
        let mut changed = doc();
        changed.title = "other".into();
        assert_ne!(a.digest(), Contract::new(changed).unwrap().digest());
    }

    #[test]
    fn violations_carry_prefixed_pointers() {
        let c = Contract::new(doc()).unwrap();
        assert!(
            c.check_request(&json!({"nik": "3171010101900001"}), "/query")
                .is_ok()
        );
        let errs = c
            .check_request(&json!({"nik": "12"}), "/query")
            .unwrap_err();
        assert_eq!(errs[0].pointer, "/query/nik");
    }

    #[test]
    fn a_long_pattern_is_named_by_where_it_is_not_printed() {
        let mut d = doc();
        let long = format!("^({})$", ["[0-9]{16}"; 8].join("|"));
        d.request["properties"]["nik"]["pattern"] = json!(long);
        let errs = Contract::new(d)
            .unwrap()
            .check_request(&json!({"nik": "12"}), "/query")
            .unwrap_err();
        let m = &errs[0].message;
        assert!(
            m.contains("/properties/nik/pattern") && !m.contains("[0-9]") && !m.contains("12"),
            "{m}"
        );
        // A short pattern is still shown, and the value never is.
        let errs = Contract::new(doc())
            .unwrap()
            .check_request(&json!({"nik": "12"}), "/query")
            .unwrap_err();
        assert!(
            errs[0].message.contains("^[0-9]{16}$") && !errs[0].message.contains("\"12\""),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn a_document_naming_a_field_twice_is_refused() {
        let text = serde_json::to_string(&doc()).unwrap();
        let twice = text.replacen('{', r#"{"title": "other", "#, 1);
        assert!(matches!(
            Contract::from_json(twice.as_bytes()),
            Err(ContractError::Json(crate::json::JsonError::DuplicateName(
                _
            )))
        ));
        assert!(Contract::from_json(text.as_bytes()).is_ok());
    }

    // ECMA-262 semantics, as JSON Schema requires: `$` is the end of the string, never the
    // place before a final newline (as it is in PCRE, Python and Perl).
    #[test]
    fn a_pattern_matches_the_whole_string_so_a_trailing_newline_is_invalid() {
        let c = Contract::new(doc()).unwrap();
        for nik in [
            "3171010101900001\n",
            "3171010101900001\r\n",
            "\n3171010101900001",
        ] {
            let errs = c
                .check_request(&json!({ "nik": nik }), "/query")
                .unwrap_err();
            assert_eq!(errs[0].pointer, "/query/nik", "{nik:?}");
        }
    }

    fn batch_doc() -> ContractDoc {
        let mut d = doc();
        d.request = json!({"type": "object", "properties": {"items": {"type": "array", "maxItems": 3,
            "items": {"type": "object", "properties": {"nik": {"type": "string"}}}}}});
        d.batch = Some(Batch {
            items: "/items".into(),
            max_items: 3,
        });
        d
    }

    #[test]
    fn a_batch_counts_its_items_and_reads_personal_data_in_each() {
        let c = Contract::new(batch_doc()).unwrap();
        let q = json!({"items": [{"nik": "a"}, {"nik": "b"}, {"other": 1}]});
        assert_eq!(c.item_count(&q), 3);
        assert_eq!(
            c.personal_values(&q),
            vec![vec![json!("a")], vec![json!("b")], vec![]]
        );
        // Longer than max_items: counted as max_items (the schema refuses it next); none: 1.
        let long = json!({"items": vec![json!({"nik": "x"}); 50]});
        assert_eq!(c.item_count(&long), 3);
        assert_eq!(c.item_count(&json!({"items": []})), 1);
        assert_eq!(c.item_count(&json!({"nik": "x"})), 1);
        // An ordinary contract: one person, one unit.
        let one = Contract::new(doc()).unwrap();
        assert_eq!(one.item_count(&q), 1);
        assert_eq!(
            one.personal_values(&json!({"nik": "a"})),
            vec![vec![json!("a")]]
        );
        assert_eq!(one.max_request_bytes(), crate::envelope::MAX_REQUEST_BYTES);
    }

    #[test]
    fn a_batch_the_schema_does_not_bound_is_refused() {
        let refused = |d: ContractDoc| {
            matches!(
                Contract::new(d),
                Err(ContractError::Field { field: "batch", .. })
            )
        };
        let mut d = batch_doc();
        d.request["properties"]["items"]["maxItems"] = json!(4);
        assert!(refused(d), "maxItems above max_items");
        let mut d = batch_doc();
        d.request["properties"]["items"]
            .as_object_mut()
            .unwrap()
            .remove("maxItems");
        assert!(refused(d), "no maxItems");
        let mut d = batch_doc();
        d.batch.as_mut().unwrap().items = "/rows".into();
        assert!(refused(d), "no such property");
        let mut d = batch_doc();
        d.batch.as_mut().unwrap().max_items = 0;
        assert!(refused(d), "max_items 0");
        let mut d = batch_doc();
        d.batch.as_mut().unwrap().items = "items".into();
        assert!(refused(d), "not a pointer");
        assert!(Contract::new(batch_doc()).is_ok());
    }

    #[test]
    fn a_body_limit_outside_its_range_is_refused_and_absent_fields_keep_the_digest() {
        for bad in [1_000, 4 * 1024 * 1024 + 1] {
            let mut d = doc();
            d.max_request_bytes = Some(bad);
            assert!(matches!(
                Contract::new(d),
                Err(ContractError::Field {
                    field: "max_request_bytes",
                    ..
                })
            ));
        }
        let mut d = doc();
        d.max_request_bytes = Some(1_048_576);
        assert_eq!(Contract::new(d).unwrap().max_request_bytes(), 1_048_576);
        // Absent, not null: a document without them is what it was before they existed.
        let text = serde_json::to_string(&doc()).unwrap();
        assert!(!text.contains("batch") && !text.contains("max_request_bytes"));
    }

    #[test]
    fn bad_documents_name_their_field() {
        let mut d = doc();
        d.id = "Bad Id".into();
        assert!(matches!(
            Contract::new(d),
            Err(ContractError::Field { field: "id", .. })
        ));
        let mut d = doc();
        d.request = json!({"type": 12});
        assert!(matches!(
            Contract::new(d),
            Err(ContractError::Field {
                field: "request",
                ..
            })
        ));
        let mut d = doc();
        d.personal_data = vec!["nik".into()];
        assert!(matches!(
            Contract::new(d),
            Err(ContractError::Field {
                field: "personal_data",
                ..
            })
        ));
    }
}
