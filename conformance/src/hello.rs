//! Raw TLS ClientHello probes, for what rustls will not say: it cannot offer TLS 1.1 or a
//! suite without ECDHE or AEAD, so these hellos are written by hand (RFC 5246 §7.4.1.2, a few
//! dozen bytes) and sent over plain TCP. The server's first record tells the story: a
//! ServerHello means it accepted what was offered; an alert or a closed connection means it
//! refused. Nothing after the ServerHello is ever sent, so no handshake completes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// SSL 3.0 on the wire.
pub const SSL_3_0: u16 = 0x0300;
/// TLS 1.0 on the wire.
pub const TLS_1_0: u16 = 0x0301;
/// TLS 1.1 on the wire.
pub const TLS_1_1: u16 = 0x0302;
/// TLS 1.2 on the wire.
pub const TLS_1_2: u16 = 0x0303;

/// Cipher suites by IANA number, with whether each has ECDHE key exchange and an AEAD cipher.
pub const SUITES: &[(u16, &str, bool)] = &[
    (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", true),
    (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", true),
    (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", true),
    (0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", true),
    (0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", true),
    (
        0xCCA9,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        true,
    ),
    (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", true),
    (0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", true),
    (0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", false),
    (0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", false),
    (0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", false),
    (0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", false),
    (0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", false),
    (0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", false),
    (0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA", false),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", false),
];

/// The name of a suite, or its number in hex.
pub fn suite_name(suite: u16) -> String {
    SUITES
        .iter()
        .find(|(n, _, _)| *n == suite)
        .map(|(_, name, _)| (*name).to_owned())
        .unwrap_or_else(|| format!("0x{suite:04X}"))
}

/// True for a TLS 1.2 suite with ECDHE key exchange and an AEAD cipher.
pub fn is_ecdhe_aead(suite: u16) -> bool {
    SUITES.iter().any(|(n, _, ok)| *n == suite && *ok)
}

/// A ClientHello whose highest version is `version`, offering `suites` and the extensions an
/// ECDHE handshake needs (server name, groups, point formats, signature algorithms, extended
/// master secret, secure renegotiation). It never offers TLS 1.3 (no `supported_versions`).
pub fn client_hello(version: u16, suites: &[u16], server_name: Option<&str>) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = server_name.filter(|n| n.parse::<std::net::IpAddr>().is_err()) {
        let name = name.as_bytes();
        let mut list = vec![0u8]; // host_name
        put_u16(&mut list, name.len());
        list.extend_from_slice(name);
        let mut body = Vec::new();
        put_u16(&mut body, list.len());
        body.extend_from_slice(&list);
        put_extension(&mut ext, 0x0000, &body);
    }
    // supported_groups: x25519, secp256r1, secp384r1.
    put_extension(
        &mut ext,
        0x000A,
        &[0, 6, 0x00, 0x1D, 0x00, 0x17, 0x00, 0x18],
    );
    // ec_point_formats: uncompressed.
    put_extension(&mut ext, 0x000B, &[1, 0]);
    // signature_algorithms: ECDSA P-256/P-384, RSA-PSS, RSA PKCS#1, Ed25519.
    let schemes: [u16; 7] = [0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501, 0x0807];
    let mut body = Vec::new();
    put_u16(&mut body, schemes.len() * 2);
    for s in schemes {
        body.extend_from_slice(&s.to_be_bytes());
    }
    put_extension(&mut ext, 0x000D, &body);
    put_extension(&mut ext, 0x0017, &[]); // extended_master_secret
    put_extension(&mut ext, 0xFF01, &[0]); // renegotiation_info, empty

    let mut hello = Vec::new();
    hello.extend_from_slice(&version.to_be_bytes());
    hello.extend_from_slice(&random_bytes());
    hello.push(0); // no session id
    put_u16(&mut hello, suites.len() * 2);
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null only
    put_u16(&mut hello, ext.len());
    hello.extend_from_slice(&ext);

    let mut handshake = vec![1u8]; // client_hello
    put_u24(&mut handshake, hello.len());
    handshake.extend_from_slice(&hello);

    // The record layer says at most TLS 1.0, as real clients do for their first flight.
    let mut record = vec![0x16];
    record.extend_from_slice(&version.min(TLS_1_0).to_be_bytes());
    put_u16(&mut record, handshake.len());
    record.extend_from_slice(&handshake);
    record
}

fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u16).to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes()[1..]);
}

fn put_extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    put_u16(out, body.len());
    out.extend_from_slice(body);
}

fn random_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

/// What the server sent back to a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloAnswer {
    /// It accepted: a ServerHello choosing `version` and `suite`.
    ServerHello {
        /// The version in the ServerHello.
        version: u16,
        /// The chosen cipher suite.
        suite: u16,
    },
    /// It refused with an alert.
    Alert {
        /// 1 warning, 2 fatal.
        level: u8,
        /// The alert description (40 handshake_failure, 70 protocol_version, …).
        description: u8,
    },
    /// It closed the connection without a word.
    Closed,
    /// It said nothing within the probe's time.
    Silent,
    /// It sent something that is neither a handshake nor an alert record.
    Unexpected(String),
}

impl HelloAnswer {
    /// True when the server refused the hello (an alert, a close, or silence).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            HelloAnswer::Alert { .. } | HelloAnswer::Closed | HelloAnswer::Silent
        )
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        match self {
            HelloAnswer::ServerHello { version, suite } => format!(
                "ServerHello version 0x{version:04X} suite {}",
                suite_name(*suite)
            ),
            HelloAnswer::Alert { level, description } => format!(
                "{} alert {} ({description})",
                if *level == 2 { "fatal" } else { "warning" },
                alert_name(*description)
            ),
            HelloAnswer::Closed => "connection closed".into(),
            HelloAnswer::Silent => "no answer".into(),
            HelloAnswer::Unexpected(what) => format!("unexpected answer: {what}"),
        }
    }
}

fn alert_name(description: u8) -> &'static str {
    match description {
        10 => "unexpected_message",
        40 => "handshake_failure",
        47 => "illegal_parameter",
        50 => "decode_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        109 => "missing_extension",
        _ => "other",
    }
}

/// Reads the server's first bytes: `Complete` once they decide the answer.
enum Parse {
    Complete(HelloAnswer),
    NeedMore,
}

fn classify(bytes: &[u8]) -> Parse {
    let Some(&kind) = bytes.first() else {
        return Parse::NeedMore;
    };
    match kind {
        0x15 => match bytes.get(5..7) {
            Some(&[level, description]) => {
                Parse::Complete(HelloAnswer::Alert { level, description })
            }
            _ => Parse::NeedMore,
        },
        0x16 => {
            // Record header (5), handshake type (1) and length (3), then the ServerHello:
            // version (2), random (32), session id (1 + n), cipher suite (2).
            let Some(&msg) = bytes.get(5) else {
                return Parse::NeedMore;
            };
            if msg != 2 {
                return Parse::Complete(HelloAnswer::Unexpected(format!(
                    "handshake message {msg} where a ServerHello was due"
                )));
            }
            let Some(&sid_len) = bytes.get(43) else {
                return Parse::NeedMore;
            };
            let at = 44 + sid_len as usize;
            match (bytes.get(9..11), bytes.get(at..at + 2)) {
                (Some(v), Some(s)) => Parse::Complete(HelloAnswer::ServerHello {
                    version: u16::from_be_bytes([v[0], v[1]]),
                    suite: u16::from_be_bytes([s[0], s[1]]),
                }),
                _ => Parse::NeedMore,
            }
        }
        other => Parse::Complete(HelloAnswer::Unexpected(format!(
            "a record of type {other} (not TLS?)"
        ))),
    }
}

/// Sends `hello` to `addr` over a new TCP connection and reads the server's answer, waiting
/// at most `wait` for it. Only the connect itself can fail; every answer is a [`HelloAnswer`].
pub async fn probe(addr: &str, hello: &[u8], wait: Duration) -> std::io::Result<HelloAnswer> {
    let mut tcp = tokio::time::timeout(wait, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.write_all(hello).await?;
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            match tcp.read(&mut buf).await {
                // A reset is the same refusal as a close, said more rudely.
                Ok(0) | Err(_) => {
                    return match classify(&got) {
                        Parse::Complete(answer) => answer,
                        Parse::NeedMore if got.is_empty() => HelloAnswer::Closed,
                        Parse::NeedMore => {
                            HelloAnswer::Unexpected(format!("{} bytes, then closed", got.len()))
                        }
                    };
                }
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if let Parse::Complete(answer) = classify(&got) {
                        return answer;
                    }
                }
            }
        }
    };
    Ok(tokio::time::timeout(wait, read)
        .await
        .unwrap_or(HelloAnswer::Silent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn hello_lengths_are_consistent() {
        let h = client_hello(TLS_1_1, &[0xC013, 0x002F], Some("localhost"));
        assert_eq!(h[0], 0x16);
        assert_eq!(u16::from_be_bytes([h[1], h[2]]), TLS_1_0);
        let record_len = u16::from_be_bytes([h[3], h[4]]) as usize;
        assert_eq!(record_len, h.len() - 5);
        assert_eq!(h[5], 1);
        let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs_len, record_len - 4);
        assert_eq!(u16::from_be_bytes([h[9], h[10]]), TLS_1_1);
        // No SNI for an address.
        let with_ip = client_hello(TLS_1_2, &[0xC02B], Some("127.0.0.1"));
        let with_name = client_hello(TLS_1_2, &[0xC02B], Some("localhost"));
        assert!(with_ip.len() < with_name.len());
    }

    #[test]
    fn server_answers_are_classified() {
        let alert = [0x15, 3, 3, 0, 2, 2, 70];
        assert!(matches!(
            classify(&alert),
            Parse::Complete(HelloAnswer::Alert {
                level: 2,
                description: 70
            })
        ));
        let mut server_hello = vec![0x16, 3, 3, 0, 80, 2, 0, 0, 76, 3, 2];
        server_hello.extend_from_slice(&[7u8; 32]);
        server_hello.push(0);
        assert!(matches!(classify(&server_hello), Parse::NeedMore));
        server_hello.extend_from_slice(&[0xC0, 0x13]);
        assert!(matches!(
            classify(&server_hello),
            Parse::Complete(HelloAnswer::ServerHello {
                version: 0x0302,
                suite: 0xC013
            })
        ));
        assert!(matches!(
            classify(b"HTTP/1.1 400"),
            Parse::Complete(HelloAnswer::Unexpected(_))
        ));
    }

    /// The probe can fail: a server that answers any hello with a TLS 1.1 ServerHello is
    /// seen as accepting it, so a gateway that speaks TLS 1.1 cannot pass the case.
    #[tokio::test]
    async fn a_permissive_server_is_seen_as_accepting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let mut answer = vec![0x16, 3, 2, 0, 42, 2, 0, 0, 38, 3, 2];
            answer.extend_from_slice(&[9u8; 32]);
            answer.extend_from_slice(&[0, 0xC0, 0x13, 0]);
            s.write_all(&answer).await.unwrap();
        });
        let answer = probe(
            &addr,
            &client_hello(TLS_1_1, &[0xC013], None),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(
            answer,
            HelloAnswer::ServerHello {
                version: TLS_1_1,
                suite: 0xC013
            }
        );
        assert!(!answer.is_refusal());
    }

    #[tokio::test]
    async fn a_closing_server_is_a_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        });
        let answer = probe(
            &addr,
            &client_hello(TLS_1_1, &[0xC013], None),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(answer.is_refusal(), "{answer:?}");
    }
}
