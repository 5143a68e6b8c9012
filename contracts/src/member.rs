//! Member and subsystem identifiers: `INSTANCE:CLASS:CODE[:SUBSYSTEM]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The prefix of the SAN URI that carries an identity in a certificate.
pub const SAN_URI_PREFIX: &str = "urn:simpul:";

/// A member (`ID:GOV:DUKCAPIL`) or one of its subsystems (`ID:GOV:KEMLU:PEDULI-WNI`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(String);

/// Why a string is not a member id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{value}` is not a member id (INSTANCE:CLASS:CODE or INSTANCE:CLASS:CODE:SUBSYSTEM, each part [A-Za-z0-9._-]{{1,64}})"
)]
pub struct MemberIdError {
    /// The rejected text.
    pub value: String,
}

fn valid_part(part: &str) -> bool {
    (1..=64).contains(&part.len())
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl MemberId {
    /// Parses and validates an id with three (member) or four (subsystem) parts.
    pub fn parse(value: &str) -> Result<Self, MemberIdError> {
        let parts: Vec<&str> = value.split(':').collect();
        if (parts.len() == 3 || parts.len() == 4) && parts.iter().all(|p| valid_part(p)) {
            Ok(Self(value.to_owned()))
        } else {
            Err(MemberIdError {
                value: value.to_owned(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a subsystem id (four parts).
    pub fn is_subsystem(&self) -> bool {
        self.0.matches(':').count() == 3
    }

    /// The member this id belongs to: itself for a member, the first three parts for a subsystem.
    pub fn member(&self) -> MemberId {
        if self.is_subsystem() {
            let cut = self.0.rfind(':').unwrap_or(self.0.len());
            MemberId(self.0[..cut].to_owned())
        } else {
            self.clone()
        }
    }

    /// A subsystem of this member.
    pub fn subsystem(&self, code: &str) -> Result<MemberId, MemberIdError> {
        MemberId::parse(&format!("{}:{code}", self.member().0))
    }

    /// The SAN URI that names this id in a certificate.
    pub fn san_uri(&self) -> String {
        format!("{SAN_URI_PREFIX}{}", self.0)
    }

    /// Reads an id back from a SAN URI; `None` when the URI is not a Simpul identity.
    pub fn from_san_uri(uri: &str) -> Option<MemberId> {
        uri.strip_prefix(SAN_URI_PREFIX)
            .and_then(|rest| MemberId::parse(rest).ok())
    }

    /// A string safe to use as a file name (`ID_GOV_DUKCAPIL`).
    pub fn file_stem(&self) -> String {
        self.0.replace(':', "_")
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.0)
    }
}

impl FromStr for MemberId {
    type Err = MemberIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemberId::parse(s)
    }
}

impl Serialize for MemberId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MemberId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The Simpul identities a DER certificate names: its `urn:simpul:` SAN URIs, in order. A
/// certificate that does not parse names none.
pub fn certificate_identities(der: &[u8]) -> Vec<MemberId> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(uri) => MemberId::from_san_uri(uri),
            _ => None,
        })
        .collect()
}

/// The one identity a DER certificate names: `None` when it names none or several, so a
/// certificate can never speak for two members.
pub fn certificate_identity(der: &[u8]) -> Option<MemberId> {
    let mut ids = certificate_identities(der);
    if ids.len() == 1 { ids.pop() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_and_subsystem_ids_parse() {
        let m = MemberId::parse("ID:GOV:DUKCAPIL").unwrap();
        assert!(!m.is_subsystem());
        assert_eq!(m.member(), m);
        let s = MemberId::parse("ID:GOV:KEMLU:PEDULI-WNI").unwrap();
        assert!(s.is_subsystem());
        assert_eq!(s.member().as_str(), "ID:GOV:KEMLU");
        assert_eq!(s.san_uri(), "urn:simpul:ID:GOV:KEMLU:PEDULI-WNI");
        assert_eq!(MemberId::from_san_uri(&s.san_uri()), Some(s));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "ID:GOV",
            "ID:GOV:A:B:C",
            "ID::X",
            "ID:GOV:DUK CAPIL",
            "ID:GOV:Ü",
            &format!("ID:GOV:{}", "A".repeat(65)),
        ] {
            assert!(MemberId::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(MemberId::from_san_uri("urn:other:ID:GOV:X"), None);
    }
}
