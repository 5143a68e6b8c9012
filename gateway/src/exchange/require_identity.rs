//! `iss` is the member named by the TLS client certificate and by the signing key.

use contracts::{ExchangeRequest, MemberId, Problem, ProblemCode};

pub(super) fn require_identity(
    peer: Option<&MemberId>,
    signer: &MemberId,
    request: &ExchangeRequest,
) -> Result<(), Problem> {
    let Some(peer) = peer else {
        return Err(Problem::new(
            ProblemCode::IdentityMismatch,
            "the client certificate names no Simpul identity",
        ));
    };
    if peer != &request.iss || signer != &request.iss {
        return Err(Problem::new(
            ProblemCode::IdentityMismatch,
            format!(
                "iss is {}, the client certificate names {peer}, the signing key belongs to {signer}: all three must be the same member",
                request.iss
            ),
        ));
    }
    if let Some(sub) = &request.sub
        && (!sub.is_subsystem() || sub.member() != request.iss)
    {
        return Err(Problem::new(
            ProblemCode::IdentityMismatch,
            format!("sub {sub} is not a subsystem of iss {}", request.iss),
        ));
    }
    Ok(())
}
