//! Building answers and reading bodies: problem details, JWS and JSON responses, and a body
//! read that is bounded before a byte is buffered.

use bytes::Bytes;
use contracts::envelope::{JOSE_MEDIA_TYPE, PROBLEM_MEDIA_TYPE};
use contracts::{Problem, ProblemCode};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Serialize;

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
    if found.as_deref() == Some(expected) {
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

/// How much of a refused, oversized body is read and dropped before the 413 is sent; a body
/// declared larger than this is refused without reading.
pub const DRAIN_LIMIT: usize = 1024 * 1024;

/// How long a client has to send a whole request body once its headers have arrived.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a whole body of at most `max` bytes within [`BODY_TIMEOUT`]. An oversized body up to
/// [`DRAIN_LIMIT`] is read to its end and dropped, so the client reads the 413; one declared
/// or found larger than that is refused without reading on.
pub async fn read_body(
    headers: &http::HeaderMap,
    mut body: Incoming,
    max: usize,
) -> Result<Bytes, Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = Problem::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {max} bytes"),
    );
    // A body far over the bound is refused unread, and its connection closed.
    if declared.is_some_and(|len| len > DRAIN_LIMIT as u64) {
        return Err(too_large);
    }
    let read = async {
        let mut buf = Vec::with_capacity(declared.map_or(4096, |l| l.min(max as u64) as usize));
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                Problem::new(ProblemCode::Malformed, format!("cannot read the body: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            if seen > DRAIN_LIMIT {
                break;
            }
            // Over the bound the rest is still read, and dropped: a client that is still
            // sending when it is refused would otherwise meet a reset, not the 413.
            if seen <= max {
                buf.extend_from_slice(&data);
            }
        }
        if seen > max {
            Err(too_large)
        } else {
            Ok(Bytes::from(buf))
        }
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(Problem::new(
                ProblemCode::RequestTimeout,
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ))
        })
}
