//! One exchange's signature work on the provider — verify the request that came in, sign the
//! answer that goes out — through josekit (OpenSSL, how `contracts::jws` did it until
//! 2026-12) and through `contracts::jws` (aws-lc-rs), side by side in one run:
//! `cargo bench -p simpul-contracts --bench signatures`.
//!
//! Both sides read the request with `ParsedJws::parse` and write the answer's header and
//! payload the same way; what differs is the signature work (the josekit side also decodes
//! the request's signature a second time, about 0.1 µs). Run by `cargo test --benches`, it
//! only checks it still works.

use std::hint::black_box;

use contracts::canonical::{b64url, b64url_decode};
use contracts::envelope::{ANSWER_TYP, REQUEST_TYP};
use contracts::jws::Header;
use contracts::{Algorithm, ParsedJws, SigningKey, VerifyingKey};
use criterion::{Criterion, criterion_group, criterion_main};
use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier};

/// A request of the size the demo federation's lookups send.
const REQUEST: &str = r#"{"v":1,"id":"0b7e5a52-3f0c-4c52-9a43-5d2f4f1f6a01","iss":"ID:GOV:KEMLU","aud":"ID:GOV:DUKCAPIL","contract":"citizenship.status","version":"1","purpose":"consular-protection","iat":1796000000,"exp":1796000060,"query":{"nik":"3171011701900001"}}"#;

/// Its answer.
const ANSWER: &str = r#"{"v":1,"id":"0b7e5a52-3f0c-4c52-9a43-5d2f4f1f6a01","iss":"ID:GOV:DUKCAPIL","aud":"ID:GOV:KEMLU","contract":"citizenship.status","version":"1","iat":1796000000,"request_hash":"n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg","status":"ok","data":{"registered":true,"citizenship":"WNI","deceased":false}}"#;

/// The provider's signature work through josekit, as `contracts::jws` did it before.
struct Josekit {
    alg: Algorithm,
    kid: String,
    signer: Box<dyn JwsSigner>,
    verifier: Box<dyn JwsVerifier>,
}

impl Josekit {
    fn new(provider: &SigningKey, consumer: &SigningKey) -> Self {
        let pem = provider.private_pem().unwrap();
        let jwk = Jwk::from_map(consumer.public_jwk().as_object().unwrap().clone()).unwrap();
        let (signer, verifier): (Box<dyn JwsSigner>, Box<dyn JwsVerifier>) = match provider.alg() {
            Algorithm::ES256 => (
                Box::new(ES256.signer_from_pem(pem).unwrap()),
                Box::new(ES256.verifier_from_jwk(&jwk).unwrap()),
            ),
            Algorithm::EdDSA => (
                Box::new(EdDSA.signer_from_pem(pem).unwrap()),
                Box::new(EdDSA.verifier_from_jwk(&jwk).unwrap()),
            ),
        };
        Josekit {
            alg: provider.alg(),
            kid: provider.kid().to_owned(),
            signer,
            verifier,
        }
    }

    fn verify(&self, request: &str) -> bool {
        let parsed = ParsedJws::parse(request, REQUEST_TYP).unwrap();
        let (input, signature) = request.rsplit_once('.').unwrap();
        let signature = b64url_decode(signature).unwrap();
        parsed.alg == self.alg && self.verifier.verify(input.as_bytes(), &signature).is_ok()
    }

    fn sign(&self, typ: &str, payload: &[u8]) -> String {
        let header = Header {
            alg: self.alg.as_str().to_owned(),
            kid: Some(self.kid.clone()),
            typ: Some(typ.to_owned()),
            crit: None,
        };
        let mut out = b64url(&serde_json::to_vec(&header).unwrap());
        out.push('.');
        out.push_str(&b64url(payload));
        let signature = self.signer.sign(out.as_bytes()).unwrap();
        out.push('.');
        out.push_str(&b64url(&signature));
        out
    }
}

/// The same through `contracts::jws`.
struct AwsLc {
    signing: SigningKey,
    verifying: VerifyingKey,
}

impl AwsLc {
    fn verify(&self, request: &str) -> bool {
        let parsed = ParsedJws::parse(request, REQUEST_TYP).unwrap();
        self.verifying.verify(&parsed).is_ok()
    }

    fn sign(&self, typ: &str, payload: &[u8]) -> String {
        self.signing.sign(typ, payload).unwrap()
    }
}

fn exchange(c: &mut Criterion) {
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        let consumer = SigningKey::generate(alg, "ID:GOV:KEMLU").unwrap();
        let provider = SigningKey::generate(alg, "ID:GOV:DUKCAPIL").unwrap();
        let request = consumer.sign(REQUEST_TYP, REQUEST.as_bytes()).unwrap();
        let josekit = Josekit::new(&provider, &consumer);
        let aws_lc = AwsLc {
            signing: provider.clone(),
            verifying: consumer.verifying_key().unwrap(),
        };
        // Each verifies what the other signs before either is timed.
        let by_josekit = Josekit::new(&consumer, &provider).sign(REQUEST_TYP, REQUEST.as_bytes());
        for request in [&request, &by_josekit] {
            assert!(josekit.verify(request) && aws_lc.verify(request));
        }

        let name = alg.as_str();
        let mut group = c.benchmark_group(format!("{name} verify + sign per exchange"));
        group.bench_function("josekit (OpenSSL)", |b| {
            b.iter(|| {
                assert!(josekit.verify(black_box(&request)));
                black_box(josekit.sign(ANSWER_TYP, black_box(ANSWER.as_bytes())))
            })
        });
        group.bench_function("contracts::jws (aws-lc-rs)", |b| {
            b.iter(|| {
                assert!(aws_lc.verify(black_box(&request)));
                black_box(aws_lc.sign(ANSWER_TYP, black_box(ANSWER.as_bytes())))
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("{name} verify"));
        group.bench_function("josekit (OpenSSL)", |b| {
            b.iter(|| assert!(josekit.verify(black_box(&request))))
        });
        group.bench_function("contracts::jws (aws-lc-rs)", |b| {
            b.iter(|| assert!(aws_lc.verify(black_box(&request))))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("{name} sign"));
        group.bench_function("josekit (OpenSSL)", |b| {
            b.iter(|| black_box(josekit.sign(ANSWER_TYP, black_box(ANSWER.as_bytes()))))
        });
        group.bench_function("contracts::jws (aws-lc-rs)", |b| {
            b.iter(|| black_box(aws_lc.sign(ANSWER_TYP, black_box(ANSWER.as_bytes()))))
        });
        group.finish();
    }
}

criterion_group!(signatures, exchange);
criterion_main!(signatures);
