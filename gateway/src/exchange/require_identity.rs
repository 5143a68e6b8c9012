//! `iss` is the member named by the TLS client certificate and by the signing key, and
//! `sub`, if any, is a subsystem of `iss`.

use contracts::{ExchangeRequest, MemberId};

use super::refusal::Refusal;

pub(super) fn require_identity(
    peer: Option<&MemberId>,
    signer: &MemberId,
    request: &ExchangeRequest,
) -> Result<(), Refusal> {
    let Some(peer) = peer else {
        return Err(Refusal::NoPeerIdentity);
    };
    if peer != &request.iss || signer != &request.iss {
        return Err(Refusal::IdentityMismatch {
            iss: request.iss.clone(),
            peer: peer.clone(),
            signer: signer.clone(),
        });
    }
    if let Some(sub) = &request.sub
        && (!sub.is_subsystem() || sub.member() != request.iss)
    {
        return Err(Refusal::ForeignSubsystem {
            sub: sub.clone(),
            iss: request.iss.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn certificate_key_and_iss_naming_one_member_pass() {
        assert!(require_identity(Some(&id(KEMLU)), &id(KEMLU), &request()).is_ok());
    }

    #[test]
    fn a_certificate_without_an_identity_is_refused() {
        assert!(matches!(
            require_identity(None, &id(KEMLU), &request()),
            Err(Refusal::NoPeerIdentity)
        ));
    }

    #[test]
    fn another_members_certificate_or_key_is_refused() {
        for (peer, signer) in [(BP2MI, KEMLU), (KEMLU, BP2MI)] {
            let refused = require_identity(Some(&id(peer)), &id(signer), &request());
            assert!(
                matches!(refused, Err(Refusal::IdentityMismatch { .. })),
                "{peer} {signer}"
            );
        }
    }

    #[test]
    fn a_sub_of_another_member_is_refused() {
        let r = request_with(json!({"sub": "ID:GOV:BP2MI:SISKOP2MI"}));
        assert!(matches!(
            require_identity(Some(&id(KEMLU)), &id(KEMLU), &r),
            Err(Refusal::ForeignSubsystem { .. })
        ));
    }
}
