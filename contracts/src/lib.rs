//! The Simpul protocol model, shared by the gateway and the conformance suite.
//!
//! This crate knows the documents and envelopes of `docs/PROTOCOL.md` — member ids,
//! contract documents, the federation manifest, exchange requests and answers, problem
//! details — and how to sign, verify, canonicalise and digest them. It knows nothing of
//! sockets, databases or configuration files.

pub mod canonical;
pub mod catalog;
pub mod checks;
pub mod contract;
pub mod disclosure;
pub mod envelope;
pub mod events;
pub mod json;
pub mod jws;
pub mod keyfile;
pub mod manifest;
pub mod manifest_diff;
pub mod member;
pub mod names;
pub mod nik;
pub mod problem;
pub mod psi;
pub mod statistics;
pub mod trace;

pub use catalog::{CatalogError, embedded_catalog, load_catalog};
pub use contract::{Contract, ContractDoc, ContractError, ContractRef, SchemaViolation};
pub use envelope::{ExchangeAnswer, ExchangeId, ExchangeRequest};
pub use jws::{Algorithm, ExternalSigner, JwsError, ParsedJws, SigningKey, VerifyingKey};
pub use manifest::{KeyRefused, KeyWindow, Manifest, ManifestError};
pub use member::{Identity, MemberId, MemberIdError, StaffId, StaffRole};
pub use problem::{Problem, ProblemCode};

/// Seconds since the Unix epoch, the unit of every timestamp on the wire.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `secs` since the Unix epoch as an RFC 3339 UTC time, `2026-12-04T23:59:59Z`, for people
/// (the wire keeps seconds).
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms", days_from_civil's inverse).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The seconds since the Unix epoch of an RFC 3339 UTC time written as [`utc`] writes it,
/// `2026-12-04T23:59:59Z`; `None` for any other text or a date that does not exist.
pub fn parse_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hour, minute, second) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days from civil (H. Hinnant), then checked by writing it back.
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    (utc(secs) == text).then_some(secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_utc_time_reads_back_to_its_seconds_and_nothing_else_reads() {
        for secs in [0, 951_782_400, 1_796_515_199, 1_796_515_200, 4_102_444_800] {
            assert_eq!(super::parse_utc(&super::utc(secs)), Some(secs));
        }
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04 23:59:59Z",
            "2026-12-04T23:59:59+07:00",
            "2026-12-4T23:59:59Z",
            "",
        ] {
            assert_eq!(super::parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_gives_the_civil_date_and_time() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_796_428_799), "2026-12-04T23:59:59Z");
        assert_eq!(super::utc(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(super::utc(-1), "1969-12-31T23:59:59Z");
    }
}
