//! The contract the URL path names is the one the signed payload names.

use contracts::{ContractRef, ExchangeRequest};

use super::refusal::Refusal;

pub(super) fn check_path(path: &ContractRef, request: &ExchangeRequest) -> Result<(), Refusal> {
    if path.id != request.contract || path.version != request.version {
        return Err(Refusal::PathMismatch {
            path: path.clone(),
            payload: ContractRef::new(&request.contract, &request.version),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn the_path_must_name_the_payloads_contract_and_version() {
        assert!(check_path(&citizenship(), &request()).is_ok());
        for other in [
            ContractRef::new("citizenship.status", "2"),
            ContractRef::new("insurance.status", "1"),
        ] {
            assert!(matches!(
                check_path(&other, &request()),
                Err(Refusal::PathMismatch { .. })
            ));
        }
    }
}
