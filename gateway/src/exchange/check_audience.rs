//! `aud` is this gateway's member; the contract in the path is the one in the payload.

use contracts::{ContractRef, ExchangeRequest, Problem, ProblemCode};

use crate::gateway::Gateway;

pub(super) fn check_audience(gw: &Gateway, request: &ExchangeRequest) -> Result<(), Problem> {
    if request.aud != gw.member {
        return Err(Problem::new(
            ProblemCode::WrongAudience,
            format!("aud is {}, this gateway is {}", request.aud, gw.member),
        ));
    }
    Ok(())
}

pub(super) fn check_path(path: &ContractRef, request: &ExchangeRequest) -> Result<(), Problem> {
    if path.id != request.contract || path.version != request.version {
        return Err(Problem::new(
            ProblemCode::Malformed,
            format!(
                "the path names {path}, the payload {}/{}",
                request.contract, request.version
            ),
        ));
    }
    Ok(())
}
