//! Small fixtures for the rules' unit tests: members, keys, a signed manifest, a contract
//! document from the catalog, and exchange requests. No sockets, no files.

use contracts::manifest::{Consumer, ManifestContract, ManifestDoc, ManifestMember, Rate};
use contracts::{
    Algorithm, Contract, ContractRef, ExchangeRequest, Manifest, MemberId, SigningKey,
};
use serde_json::{Value, json};

pub(super) const KEMLU: &str = "ID:GOV:KEMLU";
pub(super) const DUKCAPIL: &str = "ID:GOV:DUKCAPIL";
pub(super) const BP2MI: &str = "ID:GOV:BP2MI";
pub(super) const NOW: i64 = 1_800_000_000;

pub(super) fn id(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

pub(super) fn key(member: &str) -> SigningKey {
    SigningKey::generate(Algorithm::ES256, member).unwrap()
}

/// `citizenship.status` 1, as the catalog holds it.
pub(super) fn contract() -> Contract {
    Contract::from_json(
        include_bytes!("../../../contracts/catalog/citizenship.status.v1.json").as_slice(),
    )
    .unwrap()
}

pub(super) fn citizenship() -> ContractRef {
    ContractRef::new("citizenship.status", "1")
}

/// A manifest signed by a fresh authority: Dukcapil provides `citizenship.status` 1 to
/// Kemlu for `citizen-protection`; a member's keys are those of `keys` that are its, or a
/// fresh one.
pub(super) fn manifest(keys: &[&SigningKey]) -> Manifest {
    let authority = key("ID:GOV:SIMPUL");
    let members = [KEMLU, DUKCAPIL, BP2MI]
        .iter()
        .map(|m| ManifestMember {
            id: id(m),
            name: m.to_string(),
            gateway: "https://localhost:1".into(),
            keys: {
                let mine: Vec<Value> = keys
                    .iter()
                    .filter(|k| k.kid().starts_with(&format!("{m}#")))
                    .map(|k| k.public_jwk().clone())
                    .collect();
                if mine.is_empty() {
                    vec![key(m).public_jwk().clone()]
                } else {
                    mine
                }
            },
        })
        .collect();
    let doc = ManifestDoc {
        v: 1,
        federation: "ID".into(),
        serial: 1,
        issued_at: NOW - 10,
        expires_at: NOW + 86_400,
        ca: vec![ca_pem()],
        members,
        contracts: vec![ManifestContract {
            id: "citizenship.status".into(),
            version: "1".into(),
            provider: id(DUKCAPIL),
            digest: contract().digest().to_owned(),
            consumers: vec![Consumer {
                member: id(KEMLU),
                purposes: vec!["citizen-protection".into()],
            }],
            rate: Rate {
                per_second: 1,
                burst: 1,
            },
        }],
    };
    let jws = Manifest::sign(&doc, &authority).unwrap();
    Manifest::verify(&jws, &authority.verifying_key().unwrap(), NOW).unwrap()
}

/// `doc` signed by a fresh authority, verified at [`NOW`].
pub(super) fn resigned(doc: &ManifestDoc) -> Manifest {
    let authority = key("ID:GOV:SIMPUL");
    let jws = Manifest::sign(doc, &authority).unwrap();
    Manifest::verify(&jws, &authority.verifying_key().unwrap(), NOW).unwrap()
}

/// A self-signed CA certificate (a manifest lists at least one; these rules never read it).
fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

/// Kemlu asks Dukcapil's `citizenship.status` 1 about one NIK.
pub(super) fn request() -> ExchangeRequest {
    request_with(json!({}))
}

/// [`request`], with the fields of `changes` replaced.
pub(super) fn request_with(changes: Value) -> ExchangeRequest {
    let mut v = json!({
        "v": 1, "id": "7b0e5b4e-3f0a-4c55-9d43-2f7c1b1a0e01", "iss": KEMLU,
        "sub": "ID:GOV:KEMLU:PEDULI-WNI", "aud": DUKCAPIL,
        "contract": "citizenship.status", "version": "1", "purpose": "citizen-protection",
        "iat": NOW, "exp": NOW + 60, "query": {"nik": "3171011701900001"}
    });
    for (k, value) in changes.as_object().unwrap() {
        v[k] = value.clone();
    }
    serde_json::from_value(v).unwrap()
}
