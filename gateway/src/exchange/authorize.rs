//! The contract is known and provided here, and the manifest allows this consumer to ask it
//! for this purpose.

use std::collections::{BTreeMap, HashMap};

use contracts::manifest::ManifestContract;
use contracts::{Contract, ContractRef, ExchangeRequest, Manifest, MemberId};

use super::refusal::Refusal;
use crate::gateway::Provided;

/// What the provider needs of one contract it answers.
pub(super) struct ProvidedContract<'g> {
    /// Its manifest entry: provider, grants, rate.
    pub(super) listed: &'g ManifestContract,
    /// Its document: schemas and personal-data pointers.
    pub(super) contract: &'g Contract,
    /// Its adapter, bulkhead, cache policy and counters.
    pub(super) provided: &'g Provided,
}

/// The contract `r`, if this gateway (`me`) provides it: listed under `me` in the manifest,
/// bound to an adapter, and with its document in the catalog.
pub(super) fn find_contract<'g>(
    manifest: &'g Manifest,
    catalog: &'g BTreeMap<ContractRef, Contract>,
    provided: &'g HashMap<ContractRef, Provided>,
    me: &MemberId,
    r: &ContractRef,
) -> Result<ProvidedContract<'g>, Refusal> {
    let unknown = || Refusal::NotProvided {
        contract: r.clone(),
        me: me.clone(),
    };
    Ok(ProvidedContract {
        listed: manifest
            .contract(r)
            .filter(|c| &c.provider == me)
            .ok_or_else(unknown)?,
        provided: provided.get(r).ok_or_else(unknown)?,
        contract: catalog.get(r).ok_or_else(unknown)?,
    })
}

/// A delivery of the event contract `contract` (PROTOCOL.md §2.8), the other way round from
/// an ordinary exchange: the manifest lists the contract with its sender (`request.iss`) as
/// the provider, and grants this gateway's member (`me`) — the subscriber — the contract for
/// `request.purpose`.
pub(crate) fn authorize_delivery<'g>(
    manifest: &'g Manifest,
    me: &MemberId,
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<&'g ManifestContract, Refusal> {
    let r = contract.reference();
    let listed = manifest.contract(&r).ok_or_else(|| Refusal::NotProvided {
        contract: r.clone(),
        me: me.clone(),
    })?;
    if listed.provider != request.iss {
        return Err(Refusal::NotEmitter {
            contract: r,
            sender: request.iss.clone(),
            provider: listed.provider.clone(),
        });
    }
    manifest.authorize(listed, me, &request.purpose)?;
    Ok(listed)
}

/// The manifest grants `request.iss` the contract for `request.purpose`.
pub(super) fn authorize(
    manifest: &Manifest,
    listed: &ManifestContract,
    request: &ExchangeRequest,
) -> Result<(), Refusal> {
    Ok(manifest.authorize(listed, &request.iss, &request.purpose)?)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn a_granted_consumer_and_purpose_pass() {
        let m = manifest(&[]);
        let listed = m.contract(&citizenship()).unwrap();
        assert!(authorize(&m, listed, &request()).is_ok());
    }

    #[test]
    fn a_consumer_without_a_grant_is_forbidden() {
        let m = manifest(&[]);
        let listed = m.contract(&citizenship()).unwrap();
        let r = request_with(json!({"iss": BP2MI, "sub": null}));
        assert!(matches!(
            authorize(&m, listed, &r),
            Err(Refusal::NotGranted(
                contracts::manifest::NotGranted::Consumer { .. }
            ))
        ));
    }

    #[test]
    fn a_purpose_not_granted_is_forbidden() {
        let m = manifest(&[]);
        let listed = m.contract(&citizenship()).unwrap();
        let r = request_with(json!({"purpose": "marketing"}));
        let refused = authorize(&m, listed, &r).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "ID:GOV:KEMLU may ask citizenship.status/1 for citizen-protection only, not for `marketing`"
        );
    }

    #[test]
    fn a_contract_listed_for_another_provider_or_not_bound_here_is_unknown() {
        let m = manifest(&[]);
        let catalog = BTreeMap::from([(citizenship(), contract())]);
        let provided = HashMap::new();
        // Listed, but provided by Dukcapil: not Kemlu's to answer.
        assert!(matches!(
            find_contract(&m, &catalog, &provided, &id(KEMLU), &citizenship()),
            Err(Refusal::NotProvided { .. })
        ));
        // Dukcapil's, but bound to no adapter here.
        assert!(matches!(
            find_contract(&m, &catalog, &provided, &id(DUKCAPIL), &citizenship()),
            Err(Refusal::NotProvided { .. })
        ));
    }
}
