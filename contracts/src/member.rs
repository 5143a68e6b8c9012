//! Identities: member and subsystem ids (`INSTANCE:CLASS:CODE[:SUBSYSTEM]`), and the
//! operators and auditors of one member (`operator:…`, `auditor:…`), who are not subsystems.

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

/// What a person or tool on a member's admin listener may do: operate the gateway (metrics,
/// cache purges) or read its audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StaffRole {
    /// `operator`: metrics and cache purges.
    Operator,
    /// `auditor`: the audit log.
    Auditor,
}

impl StaffRole {
    /// The role as its id spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Operator => "operator",
            StaffRole::Auditor => "auditor",
        }
    }
}

/// An operator or auditor of one member: `ROLE:INSTANCE:CLASS:CODE:NAME`, e.g.
/// `operator:ID:GOV:KEMLU:OPS`. Five parts, so it is never a member or a subsystem id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StaffId {
    role: StaffRole,
    member: MemberId,
    name: String,
}

/// Why a string is not an operator or auditor id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{value}` is not an operator or auditor id (operator:INSTANCE:CLASS:CODE:NAME or auditor:INSTANCE:CLASS:CODE:NAME, each part [A-Za-z0-9._-]{{1,64}})"
)]
pub struct StaffIdError {
    /// The rejected text.
    pub value: String,
}

impl StaffId {
    /// The `role` called `name` of `member` (a three-part id).
    pub fn new(role: StaffRole, member: &MemberId, name: &str) -> Result<StaffId, StaffIdError> {
        let err = || StaffIdError {
            value: format!("{}:{member}:{name}", role.as_str()),
        };
        if member.is_subsystem() || !valid_part(name) {
            return Err(err());
        }
        Ok(StaffId {
            role,
            member: member.clone(),
            name: name.to_owned(),
        })
    }

    /// Parses `operator:…` or `auditor:…` followed by a member id and a name.
    pub fn parse(value: &str) -> Result<StaffId, StaffIdError> {
        let err = || StaffIdError {
            value: value.to_owned(),
        };
        let (role, rest) = match value.split_once(':') {
            Some(("operator", rest)) => (StaffRole::Operator, rest),
            Some(("auditor", rest)) => (StaffRole::Auditor, rest),
            _ => return Err(err()),
        };
        let id = MemberId::parse(rest).map_err(|_| err())?;
        if !id.is_subsystem() {
            return Err(err());
        }
        let name = rest.rsplit(':').next().unwrap_or_default();
        StaffId::new(role, &id.member(), name).map_err(|_| err())
    }

    /// Operator or auditor.
    pub fn role(&self) -> StaffRole {
        self.role
    }

    /// The member whose gateway it may administer or audit.
    pub fn member(&self) -> &MemberId {
        &self.member
    }

    /// Its name within the member and role (`OPS`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SAN URI that names it in a certificate.
    pub fn san_uri(&self) -> String {
        format!("{SAN_URI_PREFIX}{self}")
    }

    /// A string safe to use as a file name (`operator-OPS`; the member is the directory).
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.role.as_str(), self.name)
    }
}

impl fmt::Display for StaffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.role.as_str(), self.member, self.name)
    }
}

impl fmt::Debug for StaffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaffId({self})")
    }
}

impl FromStr for StaffId {
    type Err = StaffIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StaffId::parse(s)
    }
}

/// Whoever a certificate names: a member's gateway, one of its systems, or one of its
/// operators or auditors. Each kind is served on its own listeners (PROTOCOL.md §1.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A member (three parts): a gateway.
    Member(MemberId),
    /// A subsystem (four parts): one of a member's information systems.
    Subsystem(MemberId),
    /// An operator or auditor of one member.
    Staff(StaffId),
}

impl Identity {
    /// Parses any identity: a staff id when it starts with `operator:` or `auditor:`, a
    /// member or subsystem id otherwise. `None` when it is none of them.
    pub fn parse(value: &str) -> Option<Identity> {
        if let Ok(staff) = StaffId::parse(value) {
            return Some(Identity::Staff(staff));
        }
        let id = MemberId::parse(value).ok()?;
        Some(if id.is_subsystem() {
            Identity::Subsystem(id)
        } else {
            Identity::Member(id)
        })
    }

    /// Reads an identity back from a SAN URI; `None` when the URI names none.
    pub fn from_san_uri(uri: &str) -> Option<Identity> {
        uri.strip_prefix(SAN_URI_PREFIX).and_then(Identity::parse)
    }

    /// The member or subsystem id, for a gateway or a subsystem; `None` for staff.
    pub fn member_or_subsystem(&self) -> Option<&MemberId> {
        match self {
            Identity::Member(id) | Identity::Subsystem(id) => Some(id),
            Identity::Staff(_) => None,
        }
    }

    /// What kind of identity it is, for people: `member`, `subsystem`, `operator`, `auditor`.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Member(_) => "member",
            Identity::Subsystem(_) => "subsystem",
            Identity::Staff(s) => s.role().as_str(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Member(id) | Identity::Subsystem(id) => id.fmt(f),
            Identity::Staff(s) => s.fmt(f),
        }
    }
}

/// Every Simpul identity of any kind a DER certificate names, in order. A certificate that
/// does not parse names none.
pub fn certificate_all_identities(der: &[u8]) -> Vec<Identity> {
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
            x509_parser::extensions::GeneralName::URI(uri) => Identity::from_san_uri(uri),
            _ => None,
        })
        .collect()
}

/// The one identity of any kind a DER certificate names: `None` when it names none or
/// several, so a certificate can never speak for two.
pub fn certificate_any_identity(der: &[u8]) -> Option<Identity> {
    let mut ids = certificate_all_identities(der);
    if ids.len() == 1 { ids.pop() } else { None }
}

/// True when `now` (Unix seconds) lies within the DER certificate's validity period; false
/// for a certificate that does not parse.
pub fn certificate_valid_at(der: &[u8], now: i64) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
        c.validity().not_before.timestamp() <= now && now <= c.validity().not_after.timestamp()
    })
}

/// The member and subsystem identities a DER certificate names: its `urn:simpul:` SAN URIs
/// naming a member or a subsystem, in order. A certificate that does not parse names none.
pub fn certificate_identities(der: &[u8]) -> Vec<MemberId> {
    certificate_all_identities(der)
        .iter()
        .filter_map(|id| id.member_or_subsystem().cloned())
        .collect()
}

/// The one member or subsystem a DER certificate names: `None` when it names none, several
/// identities (of any kind), or an operator or auditor, so a certificate can never speak
/// for two.
pub fn certificate_identity(der: &[u8]) -> Option<MemberId> {
    match certificate_any_identity(der)? {
        Identity::Member(id) | Identity::Subsystem(id) => Some(id),
        Identity::Staff(_) => None,
    }
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

    #[test]
    fn staff_ids_are_their_own_kind() {
        let op = StaffId::parse("operator:ID:GOV:KEMLU:OPS").unwrap();
        assert_eq!(op.role(), StaffRole::Operator);
        assert_eq!(op.member().as_str(), "ID:GOV:KEMLU");
        assert_eq!(op.name(), "OPS");
        assert_eq!(op.to_string(), "operator:ID:GOV:KEMLU:OPS");
        assert_eq!(op.san_uri(), "urn:simpul:operator:ID:GOV:KEMLU:OPS");
        assert_eq!(
            Identity::from_san_uri(&op.san_uri()),
            Some(Identity::Staff(op.clone()))
        );
        // Five parts: never a member or a subsystem.
        assert!(MemberId::parse("operator:ID:GOV:KEMLU:OPS").is_err());
        let auditor = StaffId::new(StaffRole::Auditor, &op.member().clone(), "AUDIT").unwrap();
        assert_eq!(auditor.to_string(), "auditor:ID:GOV:KEMLU:AUDIT");
        for bad in [
            "operator:ID:GOV:KEMLU",
            "operator:ID:GOV:KEMLU:A:B",
            "admin:ID:GOV:KEMLU:OPS",
            "operator:ID:GOV:KEMLU:O P",
        ] {
            assert!(StaffId::parse(bad).is_err(), "{bad} accepted");
        }
        // A four-part id whose first part is `operator` stays a subsystem.
        assert_eq!(
            Identity::parse("operator:GOV:KEMLU:X"),
            Some(Identity::Subsystem(
                MemberId::parse("operator:GOV:KEMLU:X").unwrap()
            ))
        );
        assert!(
            StaffId::new(
                StaffRole::Operator,
                &MemberId::parse("ID:GOV:KEMLU:X").unwrap(),
                "OPS"
            )
            .is_err()
        );
    }
}
