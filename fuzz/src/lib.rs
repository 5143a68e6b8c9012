//! What each fuzz target feeds the real parsers and checks of Simpul: one function per
//! target, shared by the AFL++ binaries in `fuzz_targets/` and by `replay`, which runs a
//! file through a target without instrumentation (to reproduce or minimise a crash).
//!
//! A panic in a target is a bug in the crate it calls (or, for `sql`, a bound name that is
//! not in the statement).

use std::path::Path;
use std::sync::OnceLock;

use contracts::envelope::LocalQuery;
use contracts::manifest::ManifestDoc;
use contracts::{Algorithm, Contract, ExchangeRequest, Manifest, ParsedJws, SigningKey};

/// The federation authority's key for the manifest target: a throwaway ES256 key made by
/// `simpul pki init` for these targets only (it signs nothing outside them).
const AUTHORITY_PEM: &[u8] = include_bytes!("../keys/authority.key");
const AUTHORITY: &str = "ID:GOV:SIMPUL";
const MANIFEST_TYP: &str = "simpul-manifest+jws";
const REQUEST_TYP: &str = "simpul-request+jws";
/// A moment inside the seed manifest's validity, so the checks after expiry are reached.
const NOW: i64 = 1_796_400_000;

fn authority() -> Option<&'static SigningKey> {
    static KEY: OnceLock<Option<SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_pem(Algorithm::ES256, AUTHORITY, AUTHORITY_PEM).ok())
        .as_ref()
}

fn catalog() -> &'static [Contract] {
    static CATALOG: OnceLock<Vec<Contract>> = OnceLock::new();
    CATALOG.get_or_init(|| contracts::embedded_catalog().unwrap_or_default())
}

/// The strict JSON reader, then a compact JWS parsed as a request envelope and as a
/// manifest and verified with the authority key; a verified request's payload is read as
/// the gateway reads it.
pub fn jws(data: &[u8]) {
    let _ = contracts::json::value_from_slice(data);
    let _ = contracts::json::value_without_repeated_names(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(key) = authority() else { return };
    let Ok(verifying) = key.verifying_key() else {
        return;
    };
    for typ in [REQUEST_TYP, MANIFEST_TYP] {
        if let Ok(parsed) = ParsedJws::parse(text.trim(), typ) {
            let _ = parsed.kid_parts();
            if verifying.verify(&parsed).is_ok() {
                let _ = contracts::json::from_slice::<ExchangeRequest>(&parsed.payload);
            }
            let _ = contracts::envelope::signed_at(&parsed.payload);
        }
    }
}

/// The query path: a local query (the body a ministry system sends its gateway) read by the
/// strict reader and checked against a catalog contract's request schema, the way
/// `CheckedQuery::check` and the provider's `validate_query` do. The first byte chooses the
/// contract; a request envelope's payload is tried too.
pub fn query(data: &[u8]) {
    let catalog = catalog();
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let Some(contract) = catalog.get(usize::from(pick) % catalog.len().max(1)) else {
        return;
    };
    if let Ok(local) = contracts::json::from_slice::<LocalQuery>(body) {
        let _ = contracts::contract::valid_purpose(&local.purpose);
        let _ = contract.check_request(&local.query, "/query");
    }
    if let Ok(request) = contracts::json::from_slice::<ExchangeRequest>(body) {
        let _ = contract.check_request(&request.query, "/query");
    }
    if let Ok(value) = contracts::json::value_from_slice(body) {
        let _ = contract.check_response(&value, "/result");
    }
}

/// The manifest verifier: `data` as a whole JWS against the pinned authority key, then
/// `data` as a manifest payload signed by that key, so the document's consistency checks
/// are reached past the signature.
pub fn manifest(data: &[u8]) {
    let Some(key) = authority() else { return };
    let Ok(verifying) = key.verifying_key() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Manifest::verify(text, &verifying, NOW);
    }
    let Ok(jws) = key.sign(MANIFEST_TYP, data) else {
        return;
    };
    if let Ok(manifest) = Manifest::verify(&jws, &verifying, NOW) {
        let _ = manifest.summary();
        let _ = serde_json::to_vec(manifest.doc());
    }
    // The document's own checks, as `Manifest::sign` runs them.
    if let Ok(doc) = contracts::json::from_slice::<ManifestDoc>(data) {
        let _ = Manifest::sign(&doc, key);
    }
}

/// The contract document loader: a catalog file as `load_catalog` reads each one, then its
/// schemas run on an empty query and answer.
pub fn contract(data: &[u8]) {
    if let Ok(contract) = Contract::from_json(data) {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let _ = contract.check_request(&empty, "/query");
        let _ = contract.check_response(&empty, "/result");
        let _ = contract.digest();
    }
}

/// The config loader: `data` as `config.toml`, in a directory that does not exist, so the
/// embedded catalog stands in for the catalog directory and no file of the checkout is read
/// as configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = gateway::config::Config::parse_with_fallback_catalog(
        text,
        "fuzz.toml",
        Path::new("/nonexistent/simpul-fuzz"),
        Some(catalog().to_vec()),
    );
}

/// The SQL named-parameter rewriter, in every dialect, for a one-person statement and for a
/// batch statement whose `:keys` list stands for one and for three values.
pub fn sql(data: &[u8]) {
    use adapters::statement::{Dialect, prepare, prepare_list};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
        if let Ok(prepared) = prepare(text, dialect) {
            // Every name bound must be a name of the statement.
            for name in &prepared.params {
                assert!(text.contains(name.as_str()), "{name} not in the statement");
            }
        }
        for count in [1, 3] {
            if let Ok(prepared) = prepare_list(text, dialect, "keys", count) {
                // Exactly one placeholder per value of the list, and nothing else bound.
                assert_eq!(prepared.params.len(), count, "{text:?}");
                assert!(prepared.params.iter().all(|p| p == "keys"), "{text:?}");
            }
        }
    }
}

/// The targets by name, for `replay`.
pub const TARGETS: [(&str, fn(&[u8])); 6] = [
    ("jws", jws),
    ("query", query),
    ("manifest", manifest),
    ("contract", contract),
    ("config", config),
    ("sql", sql),
];
