//! The provider's checks, one test per row of the table, in its order.

use contracts::canonical::{b64url, sha256_b64url};
use contracts::envelope::{ANSWER_TYP, JOSE_MEDIA_TYPE, REQUEST_TYP};
use contracts::{ExchangeAnswer, ParsedJws};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn valid_exchange_is_answered_and_signed_by_the_provider_key_in_the_manifest() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let jws = f.sign(KEMLU, &request);
    let reply = f.exchange(KEMLU, jws.clone(), &request).await;
    assert_ok(&reply);
    assert_eq!(reply.headers[http::header::CONTENT_TYPE], JOSE_MEDIA_TYPE);
    let text = std::str::from_utf8(&reply.body).unwrap();
    let parsed = ParsedJws::parse(text, ANSWER_TYP).unwrap();
    let kid = parsed.header.kid.clone().unwrap();
    let (owner, key) = f.manifest.key(&kid).expect("answer kid is in the manifest");
    assert_eq!(owner.as_str(), DUKCAPIL);
    key.verify(&parsed).unwrap();
    let answer: ExchangeAnswer = serde_json::from_slice(&parsed.payload).unwrap();
    assert_eq!(answer.id, request.id);
    assert_eq!(answer.iss.as_str(), DUKCAPIL);
    assert_eq!(answer.aud.as_str(), KEMLU);
    assert_eq!(answer.request_hash, sha256_b64url(jws.as_bytes()));
    assert_eq!(
        answer.result,
        json!({"registered": true, "citizenship": "WNI", "deceased": false})
    );
}

#[tokio::test]
async fn unregistered_person_is_answered_not_registered() {
    let f = Federation::start().await;
    let mut request = f.citizenship_request();
    // Valid NIK rules, but nobody has it: serial 9999 in a district the seed never uses.
    request.query = json!({"nik": "9699991701909999"});
    let reply = f.send_signed(KEMLU, &request).await;
    assert_eq!(reply.status, 200);
    let parsed = ParsedJws::parse(std::str::from_utf8(&reply.body).unwrap(), ANSWER_TYP).unwrap();
    let answer: ExchangeAnswer = serde_json::from_slice(&parsed.payload).unwrap();
    assert_eq!(
        answer.result,
        json!({"registered": false, "citizenship": "unknown", "deceased": false})
    );
}

#[tokio::test]
async fn body_over_64_kib_is_refused_with_413() {
    let f = Federation::start().await;
    let reply = f
        .post_exchange(
            KEMLU,
            DUKCAPIL,
            "citizenship.status",
            JOSE_MEDIA_TYPE,
            "a".repeat(64 * 1024 + 1),
        )
        .await;
    assert_problem(&reply, 413, "payload-too-large");
}

#[tokio::test]
async fn body_that_is_not_a_compact_jws_is_refused_with_400_malformed() {
    let f = Federation::start().await;
    for body in ["", "not a jws", "a.b", "e30.e30.e30.e30", "!!!.e30.sig"] {
        let reply = f
            .post_exchange(KEMLU, DUKCAPIL, "citizenship.status", JOSE_MEDIA_TYPE, body)
            .await;
        assert_problem(&reply, 400, "malformed");
    }
}

#[tokio::test]
async fn wrong_content_type_is_refused_with_415() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let reply = f
        .post_exchange(
            KEMLU,
            DUKCAPIL,
            "citizenship.status",
            "application/json",
            f.sign(KEMLU, &request),
        )
        .await;
    assert_problem(&reply, 415, "unsupported-media-type");
}

fn unsigned(
    header: serde_json::Value,
    request: &contracts::ExchangeRequest,
    signature: &[u8],
) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(&serde_json::to_vec(request).unwrap()),
        b64url(signature)
    )
}

#[tokio::test]
async fn alg_none_is_refused_with_401_bad_signature() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let kid = f.signing_key(KEMLU).kid().to_owned();
    let jws = unsigned(
        json!({"alg": "none", "kid": kid, "typ": REQUEST_TYP}),
        &request,
        b"",
    );
    assert_problem(
        &f.exchange(KEMLU, jws, &request).await,
        401,
        "bad-signature",
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused_with_401_bad_signature() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let signer = f.signing_key(KEMLU);
    // The classic confusion attack: an HMAC keyed with the sender's public key.
    let secret = signer.public_jwk().to_string();
    let header = json!({"alg": "HS256", "kid": signer.kid(), "typ": REQUEST_TYP});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(&serde_json::to_vec(&request).unwrap())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let jws = format!("{input}.{}", b64url(tag.as_ref()));
    assert_problem(
        &f.exchange(KEMLU, jws, &request).await,
        401,
        "bad-signature",
    );
}

#[tokio::test]
async fn wrong_typ_is_refused_with_401_bad_signature() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let jws = f
        .signing_key(KEMLU)
        .sign(ANSWER_TYP, &serde_json::to_vec(&request).unwrap())
        .unwrap();
    assert_problem(
        &f.exchange(KEMLU, jws, &request).await,
        401,
        "bad-signature",
    );
}

#[tokio::test]
async fn kid_naming_no_manifest_key_is_refused_with_401_bad_signature() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let stranger = contracts::SigningKey::generate(contracts::Algorithm::ES256, KEMLU).unwrap();
    let jws = stranger
        .sign(REQUEST_TYP, &serde_json::to_vec(&request).unwrap())
        .unwrap();
    assert_problem(
        &f.exchange(KEMLU, jws, &request).await,
        401,
        "bad-signature",
    );
}

#[tokio::test]
async fn tampered_payload_is_refused_with_401_bad_signature() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let jws = f.sign(KEMLU, &request);
    let mut tampered = request.clone();
    tampered.purpose = "social-security".into();
    let parts: Vec<&str> = jws.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url(&serde_json::to_vec(&tampered).unwrap()),
        parts[2]
    );
    assert_problem(
        &f.exchange(KEMLU, forged, &request).await,
        401,
        "bad-signature",
    );
}

#[tokio::test]
async fn signature_by_another_members_key_under_the_senders_kid_is_refused_with_401_bad_signature()
{
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let jws = f.sign(BP2MI, &request);
    // Put Kemlu's kid on a signature made with BP2MI's key.
    let kemlu_kid = f.signing_key(KEMLU).kid().to_owned();
    let parts: Vec<&str> = jws.split('.').collect();
    let header = json!({"alg": "ES256", "kid": kemlu_kid, "typ": REQUEST_TYP});
    let forged = format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    assert_problem(
        &f.exchange(KEMLU, forged, &request).await,
        401,
        "bad-signature",
    );
}

#[tokio::test]
async fn request_signed_with_another_members_own_key_is_refused_with_401_identity_mismatch() {
    let f = Federation::start().await;
    // iss and certificate say Kemlu; the (valid) signature is BP2MI's under BP2MI's kid.
    let request = f.citizenship_request();
    let reply = f.exchange(KEMLU, f.sign(BP2MI, &request), &request).await;
    assert_problem(&reply, 401, "identity-mismatch");
}

#[tokio::test]
async fn iss_not_the_certificates_member_is_refused_with_401_identity_mismatch() {
    let f = Federation::start().await;
    // BP2MI signs a request as BP2MI, but it arrives over Kemlu's certificate.
    let request = f.nik_request(
        BP2MI,
        DUKCAPIL,
        "citizenship.status",
        "placement-verification",
    );
    let reply = f.exchange(KEMLU, f.sign(BP2MI, &request), &request).await;
    assert_problem(&reply, 401, "identity-mismatch");
}

/// A subsystem's certificate comes from its member's own CA, which the federation listener
/// does not trust: it never reaches the exchange face.
#[tokio::test]
async fn subsystem_certificate_on_the_exchange_face_is_refused_in_the_handshake() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let url = format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL));
    let refused = f
        .as_subsystem(PEDULI, DUKCAPIL)
        .call(
            http::Method::POST,
            &url,
            JOSE_MEDIA_TYPE,
            f.sign(KEMLU, &request).into(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&refused), "{refused}");
}

#[tokio::test]
async fn wrong_aud_is_refused_with_400_wrong_audience() {
    let f = Federation::start().await;
    let mut request = f.citizenship_request();
    request.aud = id(BP2MI);
    let reply = f
        .post_exchange(
            KEMLU,
            DUKCAPIL,
            "citizenship.status",
            JOSE_MEDIA_TYPE,
            f.sign(KEMLU, &request),
        )
        .await;
    let p = assert_problem(&reply, 400, "wrong-audience");
    assert_eq!(
        p.exchange_id.as_deref(),
        Some(request.id.as_str()),
        "the exchange id is reported once read"
    );
}

#[tokio::test]
async fn path_and_payload_contract_differ_is_refused_with_400_malformed() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let reply = f
        .post_exchange(
            KEMLU,
            DUKCAPIL,
            "employment.placement",
            JOSE_MEDIA_TYPE,
            f.sign(KEMLU, &request),
        )
        .await;
    assert_problem(&reply, 400, "malformed");
}

#[tokio::test]
async fn payload_with_unknown_fields_or_wrong_version_is_refused_with_400_malformed() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let key = f.signing_key(KEMLU);
    let mut extra = serde_json::to_value(&request).unwrap();
    extra["admin"] = json!(true);
    let mut v2 = serde_json::to_value(&request).unwrap();
    v2["v"] = json!(2);
    let mut bad_id = serde_json::to_value(&request).unwrap();
    bad_id["id"] = json!("not-a-uuid");
    for payload in [extra, v2, bad_id] {
        let jws = key
            .sign(REQUEST_TYP, &serde_json::to_vec(&payload).unwrap())
            .unwrap();
        assert_problem(&f.exchange(KEMLU, jws, &request).await, 400, "malformed");
    }
}

async fn assert_stale(iat_offset: i64, exp_offset: i64) {
    let f = Federation::start().await;
    let mut request = f.citizenship_request();
    let now = contracts::unix_now();
    request.iat = now + iat_offset;
    request.exp = now + exp_offset;
    assert_problem(&f.send_signed(KEMLU, &request).await, 401, "stale");
}

#[tokio::test]
async fn iat_too_old_is_refused_with_401_stale() {
    assert_stale(-120, 60).await;
}

#[tokio::test]
async fn iat_too_far_ahead_is_refused_with_401_stale() {
    assert_stale(120, 180).await;
}

#[tokio::test]
async fn exp_past_is_refused_with_401_stale() {
    assert_stale(-30, -1).await;
}

#[tokio::test]
async fn validity_over_300_s_is_refused_with_401_stale() {
    assert_stale(0, 301).await;
}

#[tokio::test]
async fn unknown_contract_is_refused_with_404() {
    let f = Federation::start().await;
    // One not in the manifest at all, and one that is, but provided by another member.
    for contract in ["nonexistent.contract", "employment.placement"] {
        let request = f.request(
            KEMLU,
            DUKCAPIL,
            contract,
            "citizen-protection",
            json!({"nik": f.population.sample_in_all_four()}),
        );
        assert_problem(
            &f.send_signed(KEMLU, &request).await,
            404,
            "unknown-contract",
        );
    }
}

#[tokio::test]
async fn consumer_not_allowed_is_refused_with_403() {
    let f = Federation::start().await;
    // Dukcapil is not a consumer of BP2MI's placements.
    let request = f.nik_request(
        DUKCAPIL,
        BP2MI,
        "employment.placement",
        "citizen-protection",
    );
    assert_problem(&f.send_signed(DUKCAPIL, &request).await, 403, "forbidden");
}

#[tokio::test]
async fn purpose_not_allowed_is_refused_with_403() {
    let f = Federation::start().await;
    // Kemlu may ask citizenship for citizen protection, not for social security.
    let request = f.nik_request(KEMLU, DUKCAPIL, "citizenship.status", "social-security");
    assert_problem(&f.send_signed(KEMLU, &request).await, 403, "forbidden");
}

#[tokio::test]
async fn invalid_nik_is_refused_with_400_and_the_pointer_to_query_nik() {
    let f = Federation::start().await;
    for nik in [
        "12",
        "3171011701900000",
        "3171013102900001",
        "1071011701900001",
    ] {
        let mut request = f.citizenship_request();
        request.query = json!({ "nik": nik });
        let p = assert_problem(&f.send_signed(KEMLU, &request).await, 400, "invalid-query");
        assert_eq!(p.errors.len(), 1, "{nik}");
        assert_eq!(p.errors[0].pointer, "/query/nik", "{nik}");
    }
}

#[tokio::test]
async fn provider_database_missing_is_refused_with_503() {
    let f = Federation::start_with(Options {
        remove_database_of: vec![DUKCAPIL],
        ..Default::default()
    })
    .await;
    let request = f.citizenship_request();
    let p = assert_problem(
        &f.send_signed(KEMLU, &request).await,
        503,
        "provider-unavailable",
    );
    assert!(
        !p.detail.contains(".db"),
        "the backend's own error stays in the provider's log: {}",
        p.detail
    );
}

#[tokio::test]
async fn manifest_and_contracts_are_served_and_match_the_pinned_digests() {
    let f = Federation::start().await;
    let client = f.as_gateway(KEMLU, DUKCAPIL);
    let get = |path: &str| {
        let url = format!("{}{path}", f.url(DUKCAPIL));
        let client = client.clone();
        async move {
            client
                .call(
                    http::Method::GET,
                    &url,
                    "application/json",
                    bytes::Bytes::new(),
                    std::time::Duration::from_secs(10),
                )
                .await
                .unwrap()
        }
    };
    let manifest = get("/v1/manifest").await;
    assert_eq!(manifest.status, 200);
    assert_eq!(
        std::str::from_utf8(&manifest.body).unwrap(),
        f.manifest.jws()
    );
    let list = get("/v1/contracts").await;
    let list: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    let ids: Vec<&str> = list["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["citizenship.status", "identity.verify"]);
    let doc = get("/v1/contracts/citizenship.status/1").await;
    assert_eq!(doc.status, 200);
    let pinned = &f
        .manifest
        .contract(&contracts::ContractRef::new("citizenship.status", "1"))
        .unwrap()
        .digest;
    assert_eq!(&sha256_b64url(&doc.body), pinned);
    assert_problem(
        &get("/v1/contracts/employment.placement/1").await,
        404,
        "unknown-contract",
    );
    assert_problem(&get("/v1/nothing").await, 404, "not-found");
    assert_problem(
        &get("/v1/exchange/citizenship.status/1").await,
        405,
        "method-not-allowed",
    );
}

#[tokio::test]
async fn exchange_id_not_in_canonical_uuid_form_is_refused_with_400_malformed() {
    let f = Federation::start().await;
    for spelling in [
        str::to_uppercase,
        |s: &str| format!("urn:uuid:{s}"),
        |s: &str| s.replace('-', ""),
    ] {
        let mut request = f.citizenship_request();
        request.id = spelling(&request.id);
        assert_problem(&f.send_signed(KEMLU, &request).await, 400, "malformed");
    }
}

#[tokio::test]
async fn sub_that_is_not_a_subsystem_of_iss_is_refused_with_401_identity_mismatch() {
    let f = Federation::start().await;
    for sub in [KEMLU, SISKOP2MI] {
        let mut request = f.citizenship_request();
        request.sub = Some(id(sub));
        assert_problem(
            &f.send_signed(KEMLU, &request).await,
            401,
            "identity-mismatch",
        );
    }
}
