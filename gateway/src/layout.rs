//! Where a deployment's keys and certificates are: the layout of the `certs/` directory that
//! `simpul pki init` writes and every gateway reads at start-up (docs/OPERATIONS.md).

use std::path::PathBuf;

use contracts::{MemberId, StaffId};

/// The file name of a member CA's certificate revocation list, beside its certificate.
pub const MEMBER_CRL_FILE: &str = "member-crl.pem";

/// Where every PKI file lives under one directory (the `certs/` dir of a deployment).
#[derive(Clone, Debug)]
pub struct PkiLayout {
    /// The directory holding the CA files and one sub-directory per member.
    pub root: PathBuf,
}

impl PkiLayout {
    /// A layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The CA certificate: `<root>/ca.pem`.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// The CA private key: `<root>/ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// The federation CA's certificate revocation list (PEM): `<root>/federation-crl.pem`.
    pub fn federation_crl(&self) -> PathBuf {
        self.root.join("federation-crl.pem")
    }

    /// The federation authority's ES256 JWS signing key (PKCS#8 PEM): `<root>/authority.key`.
    pub fn authority_key(&self) -> PathBuf {
        self.root.join("authority.key")
    }

    /// The federation authority's public JWK, with its kid: `<root>/authority.jwk`.
    pub fn authority_jwk(&self) -> PathBuf {
        self.root.join("authority.jwk")
    }

    /// The directory of one member's files: `<root>/<member file_stem>` (a subsystem id maps
    /// to its member's directory).
    pub fn member_dir(&self, id: &MemberId) -> PathBuf {
        self.root.join(id.member().file_stem())
    }

    /// A member gateway's TLS certificate: `<root>/<member file_stem>/gateway.pem`.
    pub fn gateway_cert(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("gateway.pem")
    }

    /// A member gateway's TLS private key: `<root>/<member file_stem>/gateway.key`.
    pub fn gateway_key(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("gateway.key")
    }

    /// A member's ES256 JWS signing key (PKCS#8 PEM): `<root>/<member file_stem>/signing.key`.
    pub fn signing_key(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("signing.key")
    }

    /// A member's public signing JWK (kid `<member>#<thumbprint>`):
    /// `<root>/<member file_stem>/signing.jwk`.
    pub fn signing_jwk(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("signing.jwk")
    }

    /// A member's next signing key during a rotation (`simpul pki rotate`), PKCS#8 PEM:
    /// `<root>/<member file_stem>/signing.next.key`.
    pub fn next_signing_key(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("signing.next.key")
    }

    /// The public JWK of a member's next signing key, with its `not_before`:
    /// `<root>/<member file_stem>/signing.next.jwk`.
    pub fn next_signing_jwk(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("signing.next.jwk")
    }

    /// The public JWKs of a member's retired signing keys, each with its window, kept so
    /// that later manifests still list them (and signatures they made stay verifiable):
    /// `<root>/<member file_stem>/retired/`.
    pub fn retired_dir(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("retired")
    }

    /// A member's own CA, which issues its subsystems', operators' and auditors'
    /// certificates: `<root>/<member file_stem>/member-ca.pem`.
    pub fn member_ca_cert(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("member-ca.pem")
    }

    /// The member CA's private key: `<root>/<member file_stem>/member-ca.key`.
    pub fn member_ca_key(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join("member-ca.key")
    }

    /// The member CA's certificate revocation list (PEM):
    /// `<root>/<member file_stem>/member-crl.pem`.
    pub fn member_crl(&self, member: &MemberId) -> PathBuf {
        self.member_dir(member).join(MEMBER_CRL_FILE)
    }

    /// An operator's or auditor's client certificate:
    /// `<root>/<member file_stem>/<role>-<name>.pem` (`operator-OPS.pem`).
    pub fn staff_cert(&self, staff: &StaffId) -> PathBuf {
        self.member_dir(staff.member())
            .join(format!("{}.pem", staff.file_stem()))
    }

    /// An operator's or auditor's private key: `<root>/<member file_stem>/<role>-<name>.key`.
    pub fn staff_key(&self, staff: &StaffId) -> PathBuf {
        self.member_dir(staff.member())
            .join(format!("{}.key", staff.file_stem()))
    }

    /// A client certificate: `<root>/<member file_stem>/<subsystem file_stem>.pem` for a
    /// subsystem, `<root>/<member file_stem>/client.pem` for a member itself.
    pub fn client_cert(&self, subsystem: &MemberId) -> PathBuf {
        self.member_dir(subsystem)
            .join(format!("{}.pem", client_stem(subsystem)))
    }

    /// A client private key: `<root>/<member file_stem>/<subsystem file_stem>.key` for a
    /// subsystem, `<root>/<member file_stem>/client.key` for a member itself.
    pub fn client_key(&self, subsystem: &MemberId) -> PathBuf {
        self.member_dir(subsystem)
            .join(format!("{}.key", client_stem(subsystem)))
    }
}

fn client_stem(id: &MemberId) -> String {
    if id.is_subsystem() {
        id.file_stem()
    } else {
        "client".to_owned()
    }
}
