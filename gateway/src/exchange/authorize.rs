//! The contract is known and provided here, and the manifest allows this consumer to ask it
//! for this purpose.

use contracts::{Contract, ContractRef, ExchangeRequest, Problem, ProblemCode};

use crate::fault::{Check, off};
use crate::gateway::{Gateway, Provided};

pub(super) fn authorize<'g>(
    gw: &'g Gateway,
    request: &ExchangeRequest,
) -> Result<(&'g Contract, &'g Provided), Problem> {
    let mut r = ContractRef::new(&request.contract, &request.version);
    if off(Check::Contract) && !gw.provided.contains_key(&r) {
        // Faults builds only: answer an unknown contract with one that is provided here.
        if let Some(any) = gw.provided.keys().next() {
            r = any.clone();
        }
    }
    let unknown = || {
        Problem::new(
            ProblemCode::UnknownContract,
            format!("{r} is not provided by {}", gw.member),
        )
    };
    let listed = gw
        .manifest
        .contract(&r)
        .filter(|c| c.provider == gw.member)
        .ok_or_else(unknown)?;
    let adapter = gw.provided.get(&r).ok_or_else(unknown)?;
    let contract = gw.catalog.get(&r).ok_or_else(unknown)?;
    match gw.manifest.grant(listed, &request.iss) {
        _ if off(Check::Authorization) => Ok((contract, adapter)),
        None => Err(Problem::new(
            ProblemCode::Forbidden,
            format!("{} is not a consumer of {r} in the manifest", request.iss),
        )),
        Some(purposes) if !purposes.contains(&request.purpose) => Err(Problem::new(
            ProblemCode::Forbidden,
            format!(
                "{} may ask {r} for {} only, not for `{}`",
                request.iss,
                purposes.join(", "),
                request.purpose
            ),
        )),
        Some(_) => Ok((contract, adapter)),
    }
}
