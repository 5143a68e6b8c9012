//! A subsystem may be granted only what its member is granted: each grant of
//! `[[members.subsystems]]` checked against the member's own grants — those of a provider in
//! the same file when the configuration is read, the manifest's when the gateway starts.

use contracts::ContractRef;
use contracts::MemberId;

use super::{Config, ConfigError, Rejection};

/// Checks every purpose of every grant of `member`'s subsystems against `granted(contract,
/// purpose)`: whether the member itself may ask `contract` for `purpose` (`None`: not known
/// here, not checked). A federated contract's grant is checked part by part for its purpose.
///
/// # Errors
/// [`Rejection::NotGranted`], naming `members[i].subsystems[j].grants[k].purposes`.
pub fn check_subsystem_grants(
    config: &Config,
    member: &MemberId,
    granted: impl Fn(&ContractRef, &str) -> Option<bool>,
) -> Result<(), ConfigError> {
    let Some((i, m)) = config
        .members
        .iter()
        .enumerate()
        .find(|(_, m)| &m.id == member)
    else {
        return Ok(());
    };
    for (j, s) in m.subsystems.iter().enumerate() {
        for (k, g) in s.grants.iter().enumerate() {
            let parts: Vec<(Option<&str>, &ContractRef)> =
                match m.federated.iter().find(|f| f.reference == g.contract) {
                    Some(fc) => fc
                        .parts
                        .iter()
                        .map(|(name, r)| (Some(name.as_str()), r))
                        .collect(),
                    None => vec![(None, &g.contract)],
                };
            for purpose in &g.purposes {
                for (part, r) in &parts {
                    if granted(r, purpose) == Some(false) {
                        let what = match part {
                            Some(name) => format!("{} (part `{name}` of {})", r, g.contract),
                            None => r.to_string(),
                        };
                        return Err(ConfigError {
                            path: config.source.clone(),
                            field: format!("members[{i}].subsystems[{j}].grants[{k}].purposes"),
                            reason: format!(
                                "{} is granted {what} for `{purpose}`, which {member} itself is \
                                 not granted: remove it, or have the federation authority grant \
                                 it to {member} first",
                                s.id
                            ),
                            kind: Rejection::NotGranted,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}
