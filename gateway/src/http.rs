//! Building answers and reading bodies: problem details, JWS and JSON responses, and a body
//! read that is bounded before a byte is buffered.

use bytes::Bytes;
use contracts::envelope::{JOSE_MEDIA_TYPE, PROBLEM_MEDIA_TYPE};
use contracts::{Problem, ProblemCode};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use crate::fault::{Check, off};

/// Every response the gateway gives.
pub type Reply = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An RFC 9457 problem response with its status (and `Retry-After` where it has one).
pub fn problem(p: &Problem) -> Reply {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(p).unwrap_or_default();
    let mut r = respond(status, PROBLEM_MEDIA_TYPE, body.into());
    if let Some(s) = p.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// A 200 `application/jose` response.
pub fn jose(jws: String) -> Reply {
    respond(StatusCode::OK, JOSE_MEDIA_TYPE, jws.into())
}

/// A 200 JSON response.
pub fn json<T: Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body.into()),
        Err(e) => problem(&Problem::new(
            ProblemCode::Internal,
            format!("cannot encode answer: {e}"),
        )),
    }
}

/// A 200 JSON response from bytes already encoded.
pub fn json_bytes(body: Vec<u8>) -> Reply {
    respond(StatusCode::OK, "application/json", body.into())
}

/// Checks the media type (parameters ignored).
pub fn require_media_type(headers: &http::HeaderMap, expected: &str) -> Result<(), Problem> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if found.as_deref() == Some(expected) || off(Check::MediaType) {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemCode::UnsupportedMediaType,
            format!(
                "Content-Type must be {expected}, got {}",
                found.as_deref().unwrap_or("none")
            ),
        ))
    }
}

/// How long a client has to send a whole request body once its headers have arrived.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a whole body of at most `max` bytes within [`BODY_TIMEOUT`]: a declared length over
/// the bound is refused before reading, an undeclared one is cut off at the bound.
pub async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    max: usize,
) -> Result<Bytes, Problem> {
    let too_large = || {
        Problem::new(
            ProblemCode::PayloadTooLarge,
            format!("the body exceeds {max} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
        && !off(Check::BodyLimit)
    {
        return Err(too_large());
    }
    let max = if off(Check::BodyLimit) {
        usize::MAX
    } else {
        max
    };
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect());
    let Ok(read) = read.await else {
        return Err(Problem::new(
            ProblemCode::RequestTimeout,
            format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Problem::new(
            ProblemCode::Malformed,
            format!("cannot read the body: {e}"),
        )),
    }
}
