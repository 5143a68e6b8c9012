//! Building answers and reading bodies: problem details, JWS and JSON responses, and a body
//! read that is bounded before a byte is buffered.

use bytes::Bytes;
use contracts::envelope::{JOSE_MEDIA_TYPE, PROBLEM_MEDIA_TYPE};
use contracts::{Problem, ProblemCode};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

/// The protocol's response headers (PROTOCOL.md §1.8, §5.4) as header names made once: a name
/// inserted as a `&str` is copied into an allocation of its own on every response.
pub const TREE_HEAD: header::HeaderName =
    header::HeaderName::from_static(contracts::envelope::TREE_HEAD_HEADER);
pub const MANIFEST_SERIAL: header::HeaderName =
    header::HeaderName::from_static(contracts::envelope::MANIFEST_SERIAL_HEADER);

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

/// A 200 `application/simpul-psi` answer: the signed answer, an LF, and the lists it
/// announces (PROTOCOL.md §2.7).
pub fn with_lists(jws: &str, lists: Vec<u8>) -> Reply {
    let mut body = Vec::with_capacity(jws.len() + 1 + lists.len());
    body.extend_from_slice(jws.as_bytes());
    body.push(b'\n');
    body.extend_from_slice(&lists);
    drop(lists);
    respond(
        StatusCode::OK,
        contracts::psi::wire::PSI_MEDIA_TYPE,
        body.into(),
    )
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

/// How far past its bound a refused, oversized body is read and dropped before the 413 is
/// sent; a body declared longer than its bound and this is refused without reading.
pub const DRAIN_LIMIT: usize = 1024 * 1024;

/// How long a client has to send a whole request body once its headers have arrived.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a whole body of at most `max` bytes within [`BODY_TIMEOUT`]. An oversized body up to
/// [`DRAIN_LIMIT`] past `max` is read to its end and dropped, so the client reads the 413; one
/// declared or found longer than that is refused without reading on.
pub async fn read_body<B>(
    headers: &http::HeaderMap,
    mut body: B,
    max: usize,
) -> Result<Bytes, Problem>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Relative to the bound, which a contract may raise past the drain limit itself
    // (PROTOCOL.md §3.5).
    let drain = max.saturating_add(DRAIN_LIMIT);
    let too_large = Problem::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {max} bytes"),
    );
    // A body far over the bound is refused unread, and its connection closed.
    if declared.is_some_and(|len| len > drain as u64) {
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
            if seen > drain {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::{Body, Frame};

    use super::*;

    const MIB: usize = 1 << 20;

    /// A body arriving in frames of 64 KiB, as a chunked request does.
    struct Frames(VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn frames(len: usize) -> Frames {
        Frames(
            (0..len)
                .step_by(64 * 1024)
                .map(|at| Bytes::from(vec![b'a'; (len - at).min(64 * 1024)]))
                .collect(),
        )
    }

    fn declaring(len: usize) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        headers
    }

    #[tokio::test]
    async fn a_bound_raised_past_the_drain_limit_reads_a_body_under_it_whole() {
        // A contract may raise its limit to 4 MiB: a body of 1.5 MiB under a 2 MiB bound is
        // read whole, declared or chunked.
        let len = 3 * MIB / 2;
        for headers in [http::HeaderMap::new(), declaring(len)] {
            let body = read_body(&headers, frames(len), 2 * MIB).await.unwrap();
            assert_eq!(body.len(), len);
        }
    }

    #[tokio::test]
    async fn a_body_over_its_bound_is_refused_413_whether_drained_or_not() {
        for (len, max) in [
            (64 * 1024 + 1, 64 * 1024),
            (2 * MIB + 10, 2 * MIB),
            (4 * MIB, 2 * MIB),
            (8 * MIB, 64 * 1024),
        ] {
            for headers in [http::HeaderMap::new(), declaring(len)] {
                let refused = read_body(&headers, frames(len), max).await.unwrap_err();
                assert_eq!(refused.code(), Some(ProblemCode::PayloadTooLarge), "{len}");
                assert!(refused.detail.contains(&max.to_string()), "{len}");
            }
        }
    }
}
