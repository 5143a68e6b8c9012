//! The body is at most its bound, arrives in time, is `application/jose`, and is text.

use bytes::Bytes;
use contracts::envelope::JOSE_MEDIA_TYPE;
use http::HeaderMap;
use hyper::body::Incoming;

use super::refusal::Refusal;
use crate::http::{read_body, require_media_type};

/// Reads the whole body: at most `max` bytes, within the body timeout.
pub(super) async fn read_envelope(
    headers: &HeaderMap,
    body: Incoming,
    max: usize,
) -> Result<Bytes, Refusal> {
    read_body(headers, body, max).await.map_err(Refusal::Body)
}

/// The body is a JOSE compact serialisation by its media type.
pub(super) fn check_media_type(headers: &HeaderMap) -> Result<(), Refusal> {
    require_media_type(headers, JOSE_MEDIA_TYPE).map_err(Refusal::Body)
}

/// The body as text.
pub(super) fn into_text(body: Bytes) -> Result<String, Refusal> {
    String::from_utf8(body.to_vec()).map_err(|_| Refusal::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::ProblemCode;

    #[test]
    fn only_application_jose_is_an_envelope() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/jose".parse().unwrap(),
        );
        assert!(check_media_type(&headers).is_ok());
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        match check_media_type(&headers) {
            Err(Refusal::Body(p)) => assert_eq!(p.code(), Some(ProblemCode::UnsupportedMediaType)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_envelope_is_text() {
        assert_eq!(into_text(Bytes::from_static(b"a.b.c")).unwrap(), "a.b.c");
        assert!(matches!(
            into_text(Bytes::from_static(&[0xff, 0xfe])),
            Err(Refusal::NotText)
        ));
    }
}
