//! `simpul openapi --member ID [--face local|peer] [--out FILE]`: the OpenAPI 3.1 document
//! of one member's local face or federation face, from the configuration, its catalog and
//! the signed manifest it names.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use contracts::Manifest;
use gateway::assemble::load_authority_key;
use gateway::config::Config;
use gateway::openapi::{self, Face};
use serde_json::Value;

use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The member whose gateway the document describes, e.g. ID:GOV:KEMLU.
    #[arg(long)]
    member: String,
    /// `local`: what the member's own systems may ask on its local listener; `peer`: what
    /// other members' gateways may call on its federation listener.
    #[arg(long, value_enum, default_value_t = FaceArg::Local)]
    face: FaceArg,
    /// Write the document to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FaceArg {
    Local,
    Peer,
}

impl From<FaceArg> for Face {
    fn from(f: FaceArg) -> Self {
        match f {
            FaceArg::Local => Face::Local,
            FaceArg::Peer => Face::Peer,
        }
    }
}

pub fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let doc = generate(config, &args.member, args.face.into())?;
    let mut text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::Process(format!("cannot encode the document: {e}")))?;
    text.push('\n');
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(CliError::file(path))?,
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| CliError::Process(format!("standard output: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The document of `member`'s `face`, under the manifest the configuration names (verified
/// with the pinned authority key, and current).
fn generate(config: &Config, member: &str, face: Face) -> Result<Value, CliError> {
    // The member first: a wrong one is named before any file is read.
    openapi::find_member(config, member)?;
    let key = load_authority_key(&config.federation.authority_key)?;
    let path = config.federation.manifest.as_path();
    let text = std::fs::read_to_string(path).map_err(|e| CliError::File {
        path: path.to_owned(),
        reason: format!(
            "cannot read the manifest ({e}); `simpul up` or `simpul manifest sign` makes it"
        ),
    })?;
    let manifest =
        Manifest::verify(&text, &key, contracts::unix_now()).map_err(CliError::file(path))?;
    Ok(openapi::document(config, manifest.doc(), member, face)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{ContractRef, ProblemCode};
    use gateway::openapi::{events_path, query_path, request_schema_name, response_schema_name};

    /// The embedded demo federation in a scratch directory, with its PKI and a signed
    /// manifest, as `simpul up` makes them.
    fn demo() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let config = demo::embedded_config(dir.path()).unwrap();
        demo::pki::init(&config.federation.pki, &demo::pki_plan(&config), false).unwrap();
        gateway::authority::sign_manifest(&config, None).unwrap();
        (dir, config)
    }

    fn schema_ref(name: &str) -> Value {
        Value::String(format!("#/components/schemas/{name}"))
    }

    /// The schema a `$ref` of `doc` names.
    fn resolve<'a>(doc: &'a Value, r: &Value) -> &'a Value {
        let name = r
            .as_str()
            .and_then(|r| r.strip_prefix("#/"))
            .unwrap_or_else(|| panic!("not a local $ref: {r}"));
        doc.pointer(&format!("/{name}"))
            .unwrap_or_else(|| panic!("{r} names nothing"))
    }

    #[test]
    fn every_granted_contract_of_every_demo_member_is_on_its_local_face() {
        let (_dir, config) = demo();
        let mut seen = 0;
        for m in &config.members {
            let doc = generate(&config, m.id.as_str(), Face::Local).unwrap();
            assert_eq!(doc["openapi"], "3.1.0");
            assert_eq!(
                doc["servers"][0]["url"],
                m.local.as_ref().unwrap().url(),
                "{}",
                m.id
            );
            assert_eq!(
                doc["components"]["securitySchemes"]["mutualTLS"]["type"],
                "mutualTLS"
            );
            let paths = doc["paths"].as_object().unwrap();
            let granted: Vec<&ContractRef> = m
                .subsystems
                .iter()
                .flat_map(|s| &s.grants)
                .map(|g| &g.contract)
                .collect();
            // One path per contract granted, and one per event contract the member emits
            // that none of its subsystems is granted.
            let emitted_only = m
                .events
                .iter()
                .filter(|e| !e.emitters.is_empty() && !granted.contains(&&e.contract))
                .count();
            assert_eq!(
                paths.len(),
                granted
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    + emitted_only,
                "{}",
                m.id
            );
            for e in m.events.iter().filter(|e| !e.emitters.is_empty()) {
                let op = &paths[&events_path(&e.contract)]["post"];
                assert!(op["responses"]["202"].is_object(), "{}", e.contract);
                let body = resolve(
                    &doc,
                    &op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                );
                assert_eq!(
                    body["properties"]["data"]["$ref"],
                    schema_ref(&request_schema_name(&e.contract))
                );
            }
            for r in granted {
                // An event contract is fetched from the inbox, not asked.
                if config.catalog.get(r).is_some_and(|c| c.event().is_some()) {
                    let op = &paths[&events_path(r)]["get"];
                    assert!(op["responses"]["200"].is_object(), "{r}");
                    assert!(op["responses"]["403"].is_object(), "{r}");
                    seen += 1;
                    continue;
                }
                let op = &paths[&query_path(r)]["post"];
                let body = resolve(
                    &doc,
                    &op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                );
                assert_eq!(body["required"], serde_json::json!(["purpose", "query"]));
                let answer = resolve(
                    &doc,
                    &op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
                );
                if config.catalog.get(r).is_some_and(|c| c.overlap().is_some()) {
                    // An overlap contract is asked by list: the member's own lists.
                    let lists: Vec<&String> = m.lists.iter().map(|l| &l.name).collect();
                    assert_eq!(
                        body["properties"]["query"]["properties"]["list"]["enum"],
                        serde_json::json!(lists),
                        "{r}"
                    );
                    assert!(answer["properties"]["result"]["properties"]["overlap"].is_object());
                } else if config.catalog.contains_key(r) {
                    assert_eq!(
                        body["properties"]["query"]["$ref"],
                        schema_ref(&request_schema_name(r))
                    );
                    assert_eq!(
                        answer["properties"]["result"]["$ref"],
                        schema_ref(&response_schema_name(r))
                    );
                    // The embedded schema is the contract's own, its references into
                    // itself (`#/$defs/…`) made to resolve where it is embedded.
                    let name = request_schema_name(r);
                    let embedded = resolve(&doc, &schema_ref(&name));
                    let own = serde_json::to_string(&config.catalog[r].doc().request)
                        .unwrap()
                        .replace(
                            "\"#/$defs/",
                            &format!("\"#/components/schemas/{name}/$defs/"),
                        );
                    assert_eq!(
                        embedded,
                        &serde_json::from_str::<serde_json::Value>(&own).unwrap()
                    );
                    // Every status a provider's problem can be relayed with.
                    for c in ProblemCode::ALL {
                        let p = &op["responses"][c.status().to_string()];
                        assert_eq!(
                            p["content"]["application/problem+json"]["schema"]["allOf"][0]["$ref"],
                            schema_ref("Problem"),
                            "{r} {}",
                            c.code()
                        );
                    }
                } else {
                    assert!(answer["properties"]["parts"].is_object(), "{r}");
                }
                for status in ["400", "403", "413", "415", "429"] {
                    assert!(op["responses"][status].is_object(), "{r} {status}");
                }
                seen += 1;
            }
        }
        // Kemlu's thirteen (with its two overlap contracts, the event contract it fetches and
        // placement.record), BP2MI's four, BPJSTK's three (each with its statistics
        // contracts); Dukcapil's SIAK asks nothing.
        assert_eq!(seen, 20);
    }

    #[test]
    fn every_provided_contract_of_every_demo_member_is_on_its_peer_face() {
        let (_dir, config) = demo();
        for m in &config.members {
            let doc = generate(&config, m.id.as_str(), Face::Peer).unwrap();
            assert_eq!(doc["servers"][0]["url"], m.gateway.as_str());
            let paths = doc["paths"].as_object().unwrap();
            // Its provided contracts, the event contracts it subscribes to (where their
            // providers deliver), and the four GET routes.
            let subscribed = config
                .members
                .iter()
                .flat_map(|o| &o.events)
                .filter(|e| e.subscribers.iter().any(|c| c.member == m.id))
                .count();
            assert_eq!(paths.len(), m.provides.len() + subscribed + 4, "{}", m.id);
            for p in &m.provides {
                let r = &p.contract;
                let op = &paths[&format!("/v1/exchange/{}/{}", r.id, r.version)]["post"];
                let body = &op["requestBody"]["content"]["application/jose"]["schema"];
                let payload = resolve(&doc, &body["x-jws-payload"]["$ref"]);
                assert_eq!(
                    payload["properties"]["query"]["$ref"],
                    schema_ref(&request_schema_name(r))
                );
                let answer = &op["responses"]["200"]["content"]["application/jose"]["schema"];
                let payload = resolve(&doc, &answer["x-jws-payload"]["$ref"]);
                assert_eq!(
                    payload["properties"]["result"]["$ref"],
                    schema_ref(&response_schema_name(r))
                );
                for status in [
                    "400", "401", "403", "404", "408", "409", "413", "415", "429", "500", "502",
                    "503", "504",
                ] {
                    assert_eq!(
                        op["responses"][status]["content"]["application/problem+json"]["schema"]["allOf"]
                            [0]["$ref"],
                        schema_ref("Problem"),
                        "{r} {status}"
                    );
                }
            }
            for get in [
                "/v1/manifest",
                "/v1/contracts",
                "/v1/contracts/{id}/{version}",
                "/v1/audit/consistency",
            ] {
                assert!(paths[get]["get"].is_object(), "{get}");
            }
        }
    }

    #[test]
    fn an_unknown_member_is_one_line_naming_it_and_the_members() {
        let (_dir, config) = demo();
        let e = generate(&config, "ID:GOV:KEMENKES", Face::Local)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ID:GOV:KEMENKES is not a member in "), "{e}");
        assert!(
            e.ends_with("ID:GOV:KEMLU, ID:GOV:DUKCAPIL, ID:GOV:BP2MI, ID:GOV:BPJSTK"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn a_missing_manifest_says_what_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = demo::embedded_config(dir.path()).unwrap();
        demo::pki::init(&config.federation.pki, &demo::pki_plan(&config), false).unwrap();
        let e = generate(&config, "ID:GOV:KEMLU", Face::Local)
            .unwrap_err()
            .to_string();
        assert!(e.contains("simpul manifest sign"), "{e}");
    }
}
