//! Strict JSON and whole-string patterns over real TLS (PROTOCOL.md §3.3 rows 7, 13a, 13b
//! and 31): a member name given twice, a number no double holds, and a NIK followed by a
//! newline are each refused with their status and code, on the exchange face and the local
//! face alike.

use std::time::Duration;

use contracts::canonical::b64url;
use contracts::envelope::REQUEST_TYP;
use gateway::client::Reply;
use http::Method;
use serde_json::json;

use crate::common::*;

/// `request` as JSON text with its query written as `query_text`, signed by `member`.
fn signed_with_query_text(
    f: &Federation,
    member: &str,
    request: &contracts::ExchangeRequest,
    query_text: &str,
) -> String {
    let mut placeholder = request.clone();
    placeholder.query = json!("QUERY-PLACEHOLDER");
    let text = serde_json::to_string(&placeholder).unwrap().replacen(
        "\"QUERY-PLACEHOLDER\"",
        query_text,
        1,
    );
    f.signing_key(member)
        .sign(REQUEST_TYP, text.as_bytes())
        .unwrap()
}

/// POSTs raw JSON text to `member`'s local face as `subsystem`.
async fn local_text(f: &Federation, subsystem: &str, member: &str, body: String) -> Reply {
    let url = format!("{}/v1/query/citizenship.status/1", f.local_url(member));
    f.as_identity(subsystem, member)
        .call(
            Method::POST,
            &url,
            "application/json",
            body.into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_member_name_given_twice_is_refused_with_400_malformed() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let nik = request.query["nik"].as_str().unwrap().to_owned();
    // The same NIK twice: a reader that kept either copy would answer it.
    let twice = format!(r#"{{"nik":"{nik}","nik":"{nik}"}}"#);
    let jws = signed_with_query_text(&f, KEMLU, &request, &twice);
    let p = assert_problem(&f.exchange(KEMLU, jws, &request).await, 400, "malformed");
    assert!(p.detail.contains("`nik` appears twice"), "{}", p.detail);
    // Row 13a comes before the exchange id is taken as read (row 16 ★).
    assert_eq!(p.exchange_id, None);

    // In the protected header (row 7): refused before any key is used.
    let kid = f.signing_key(KEMLU).kid().to_owned();
    let header =
        format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"{REQUEST_TYP}","typ":"{REQUEST_TYP}"}}"#);
    let jws = format!(
        "{}.{}.{}",
        b64url(header.as_bytes()),
        b64url(&serde_json::to_vec(&request).unwrap()),
        b64url(&[0u8; 64])
    );
    let p = assert_problem(&f.exchange(KEMLU, jws, &request).await, 400, "malformed");
    assert!(p.detail.contains("twice"), "{}", p.detail);

    // On the local face: the body is strict JSON too.
    let body = format!(
        r#"{{"purpose":"citizen-protection","purpose":"citizen-protection","query":{{"nik":"{nik}"}}}}"#
    );
    let p = assert_problem(&local_text(&f, PEDULI, KEMLU, body).await, 400, "malformed");
    assert!(p.detail.contains("`purpose` appears twice"), "{}", p.detail);
}

#[tokio::test]
async fn a_number_beyond_2_pow_53_is_refused_with_400_malformed() {
    let f = Federation::start().await;
    for number in [
        "9007199254740993",
        "-9007199254740992",
        "1e300",
        "0.10000000000000001",
    ] {
        let request = f.citizenship_request();
        let nik = request.query["nik"].as_str().unwrap().to_owned();
        let query = format!(r#"{{"nik":"{nik}","n":{number}}}"#);
        let jws = signed_with_query_text(&f, KEMLU, &request, &query);
        let p = assert_problem(&f.exchange(KEMLU, jws, &request).await, 400, "malformed");
        assert!(p.detail.contains("I-JSON"), "{number}: {}", p.detail);

        let body = format!(r#"{{"purpose":"citizen-protection","query":{query}}}"#);
        let p = assert_problem(&local_text(&f, PEDULI, KEMLU, body).await, 400, "malformed");
        assert!(p.detail.contains("I-JSON"), "{number}: {}", p.detail);
    }
}

#[tokio::test]
async fn a_nik_followed_by_a_newline_is_refused_with_400_invalid_query() {
    let f = Federation::start().await;
    for suffix in ["\n", "\r\n"] {
        let mut request = f.citizenship_request();
        let nik = format!("{}{suffix}", request.query["nik"].as_str().unwrap());
        request.query = json!({ "nik": nik });
        let p = assert_problem(&f.send_signed(KEMLU, &request).await, 400, "invalid-query");
        assert_eq!(p.errors[0].pointer, "/query/nik");
        assert_eq!(p.exchange_id.as_deref(), Some(request.id.as_str()));

        let reply = f
            .local_query(
                PEDULI,
                KEMLU,
                "citizenship.status",
                json!({"purpose": "citizen-protection", "query": {"nik": nik}}),
            )
            .await;
        let p = assert_problem(&reply, 400, "invalid-query");
        assert_eq!(p.errors[0].pointer, "/query/nik");
        // Never the value, even escaped.
        assert!(
            !serde_json::to_string(&p).unwrap().contains(nik.trim_end()),
            "{p:?}"
        );
    }
}
