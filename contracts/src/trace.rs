//! W3C Trace Context (Level 1): the `traceparent` and `tracestate` headers a member system
//! may send to its gateway's local face, which the gateways carry, outside every signature,
//! to the provider and on into an HTTP adapter's upstream call (PROTOCOL.md §3.8). A header
//! that does not follow the recommendation is ignored, never refused: tracing must not
//! change whether an exchange is answered.

use std::fmt;

/// The request header that names the trace and the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The request header with vendors' trace data, carried as it came.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` carried on; a longer one is dropped (the recommendation
/// allows 32 list members; 512 characters is what it asks every vendor to carry).
pub const MAX_TRACESTATE: usize = 512;

/// One hop's trace context: the trace, the span of the sender, the sampling flags.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
    state: Option<String>,
}

impl TraceContext {
    /// Reads the context from a request's header values: `None` when `traceparent` is
    /// absent or does not follow the recommendation (then `tracestate` is ignored too).
    pub fn from_headers(traceparent: Option<&[u8]>, tracestate: Option<&[u8]>) -> Option<Self> {
        let parent = std::str::from_utf8(traceparent?).ok()?;
        let (trace_id, parent_id, flags) = parse_traceparent(parent)?;
        let state = tracestate
            .and_then(|s| std::str::from_utf8(s).ok())
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_TRACESTATE
                    && s.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .map(str::to_owned);
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
            state,
        })
    }

    /// The context of a new span of this trace, whose parent is the sender of `self`: the
    /// same trace, flags and state, a fresh random span id.
    pub fn child(&self) -> TraceContext {
        let mut parent_id = [0u8; 8];
        // A span id of zeros is not valid; the odds of eight random zero bytes are nil,
        // and a failed random source leaves the id of the sender rather than zeros.
        if aws_lc_rs::rand::fill(&mut parent_id).is_err() || parent_id == [0; 8] {
            parent_id = self.parent_id;
        }
        TraceContext {
            parent_id,
            ..self.clone()
        }
    }

    /// The same trace, flags and state with `span_id` as the sender's span: the span of the
    /// gateway that sends it on, when a tracing system gave that span an id. An id of zeros
    /// is not valid: a fresh random one is taken instead.
    pub fn with_span_id(&self, span_id: [u8; 8]) -> TraceContext {
        if span_id == [0; 8] {
            return self.child();
        }
        TraceContext {
            parent_id: span_id,
            ..self.clone()
        }
    }

    /// The trace id's 16 bytes.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The sender's span id's 8 bytes.
    pub fn parent_id_bytes(&self) -> [u8; 8] {
        self.parent_id
    }

    /// Whether the sender sampled the trace (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The trace id, 32 lower-case hexadecimal digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The `traceparent` header value, version `00`.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }

    /// The `tracestate` header value to send on, if one came.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// `version-traceid-parentid-flags` under the recommendation's rules: lower-case hex only;
/// version `ff` invalid; version `00` exactly 55 characters; a later version read for its
/// first four fields when what follows them starts with `-`; neither id all zeros.
fn parse_traceparent(s: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let b = s.as_bytes();
    if b.len() < 55 {
        return None;
    }
    let version = unhex::<1>(&b[0..2])?[0];
    if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let trace_id = unhex::<16>(&b[3..35])?;
    let parent_id = unhex::<8>(&b[36..52])?;
    // Level 1 defines only `sampled`; every other flag is sent on as zero.
    let flags = unhex::<1>(&b[53..55])?[0] & 0x01;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some((trace_id, parent_id, flags))
}

/// `N` bytes from `2N` lower-case hexadecimal digits.
fn unhex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn read(parent: &str) -> Option<TraceContext> {
        TraceContext::from_headers(Some(parent.as_bytes()), None)
    }

    #[test]
    fn the_recommendations_example_is_read_and_written_back_unchanged() {
        let t = read(GOOD).unwrap();
        assert_eq!(t.traceparent(), GOOD);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_span_id() {
        let t =
            TraceContext::from_headers(Some(GOOD.as_bytes()), Some(b"congo=t61rcWkgMzE")).unwrap();
        let c = t.child();
        let (p, q) = (c.traceparent(), t.traceparent());
        assert_eq!(p[..36], q[..36], "same version and trace id");
        assert_ne!(p[36..52], q[36..52], "a new span id");
        assert_eq!(p[52..], q[52..], "same flags");
        assert_eq!(c.tracestate(), Some("congo=t61rcWkgMzE"));
        assert!(read(&p).is_some(), "the child's header reads back: {p}");
    }

    #[test]
    fn a_span_id_given_is_sent_and_zeros_are_not() {
        let t = read(GOOD).unwrap();
        let given = t.with_span_id([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            given.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        assert_eq!(given.parent_id_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(given.sampled());
        let zeros = t.with_span_id([0; 8]);
        assert_ne!(zeros.parent_id_bytes(), [0; 8]);
        assert_eq!(zeros.trace_id_bytes(), t.trace_id_bytes());
    }

    #[test]
    fn values_outside_the_recommendation_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // 00 with more
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // later version, no dash
        ] {
            assert!(read(bad).is_none(), "{bad:?} was accepted");
        }
        assert!(TraceContext::from_headers(Some(&[0xff; 55]), None).is_none());
    }

    #[test]
    fn flags_other_than_sampled_are_sent_on_as_zero() {
        let t = read("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert!(t.traceparent().ends_with("-01"), "{t:?}");
    }

    #[test]
    fn a_later_version_is_read_for_its_first_four_fields() {
        let t = read("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future").unwrap();
        assert_eq!(t.traceparent(), GOOD, "sent on as version 00");
    }

    #[test]
    fn a_tracestate_too_long_or_with_control_characters_is_dropped() {
        let long = "a=".to_owned() + &"b".repeat(MAX_TRACESTATE);
        for bad in [long.as_bytes(), b"a=b\nc=d", b""] {
            let t = TraceContext::from_headers(Some(GOOD.as_bytes()), Some(bad)).unwrap();
            assert_eq!(t.tracestate(), None);
        }
        assert!(
            TraceContext::from_headers(None, Some(b"a=b")).is_none(),
            "no tracestate without a traceparent"
        );
    }
}
