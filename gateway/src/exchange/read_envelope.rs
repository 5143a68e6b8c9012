//! The body is `application/jose`, at most 64 KiB, and text.

use contracts::envelope::{JOSE_MEDIA_TYPE, MAX_REQUEST_BYTES};
use contracts::{Problem, ProblemCode};
use http::HeaderMap;
use hyper::body::Incoming;

use crate::http::{read_body, require_media_type};

pub(super) async fn read_envelope(headers: &HeaderMap, body: Incoming) -> Result<String, Problem> {
    let bytes = read_body(headers, body, MAX_REQUEST_BYTES).await?;
    require_media_type(headers, JOSE_MEDIA_TYPE)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Problem::new(
            ProblemCode::Malformed,
            "the body is not a compact JWS (not UTF-8)",
        )
    })
}
