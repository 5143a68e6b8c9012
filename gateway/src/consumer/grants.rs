//! What each of the member's own systems may ask through the local face, and how often: its
//! grants (contracts and purposes, from `[[members.subsystems]]`) and its own rate, one
//! governor limiter per subsystem, so one noisy system spends only its own quota and never
//! the member's quota at the providers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use contracts::{ContractRef, MemberId};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Subsystem;

/// One subsystem's grants and limiter.
struct Granted {
    contracts: HashMap<ContractRef, Vec<String>>,
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

/// Every configured subsystem of this member, by id.
pub(crate) struct SubsystemGrants {
    by_id: HashMap<MemberId, Granted>,
    clock: DefaultClock,
}

/// Why a subsystem may not ask what it asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum NotGranted {
    /// No grant of the contract at all.
    #[error("{subsystem} is not granted {contract}")]
    Contract {
        /// The caller.
        subsystem: MemberId,
        /// What it asked.
        contract: ContractRef,
    },
    /// A grant of the contract, for other purposes.
    #[error("{subsystem} is granted {contract} for {granted}, not for `{purpose}`")]
    Purpose {
        /// The caller.
        subsystem: MemberId,
        /// What it asked.
        contract: ContractRef,
        /// The purpose it gave.
        purpose: String,
        /// The purposes it is granted, comma-separated.
        granted: String,
    },
}

/// A subsystem over its own rate, and how long until one more request is admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{subsystem} is over its own rate on the local face; retry in {} ms", wait.as_millis())]
pub(crate) struct OverRate {
    /// The caller.
    pub subsystem: MemberId,
    /// The limiter's wait.
    pub wait: Duration,
}

impl SubsystemGrants {
    /// The grants and a limiter at its rate for each of `subsystems`.
    pub(crate) fn new(subsystems: &[Subsystem]) -> Self {
        let by_id = subsystems
            .iter()
            .map(|s| {
                let per_second = NonZeroU32::new(s.rate.per_second).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(s.rate.burst).unwrap_or(per_second);
                let granted = Granted {
                    contracts: s
                        .grants
                        .iter()
                        .map(|g| (g.contract.clone(), g.purposes.clone()))
                        .collect(),
                    limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
                    burst,
                };
                (s.id.clone(), granted)
            })
            .collect();
        SubsystemGrants {
            by_id,
            clock: DefaultClock::default(),
        }
    }

    /// True when `id` is a configured subsystem of this member.
    pub(crate) fn contains(&self, id: &MemberId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether `subsystem` is granted `contract` for any purpose.
    pub(crate) fn granted(&self, subsystem: &MemberId, contract: &ContractRef) -> bool {
        self.by_id
            .get(subsystem)
            .is_some_and(|g| g.contracts.contains_key(contract))
    }

    /// Whether `subsystem` may ask `contract` for `purpose`.
    pub(crate) fn authorize(
        &self,
        subsystem: &MemberId,
        contract: &ContractRef,
        purpose: &str,
    ) -> Result<(), NotGranted> {
        let purposes = self
            .by_id
            .get(subsystem)
            .and_then(|g| g.contracts.get(contract))
            .ok_or_else(|| NotGranted::Contract {
                subsystem: subsystem.clone(),
                contract: contract.clone(),
            })?;
        if purposes.iter().any(|p| p == purpose) {
            Ok(())
        } else {
            Err(NotGranted::Purpose {
                subsystem: subsystem.clone(),
                contract: contract.clone(),
                purpose: purpose.to_owned(),
                granted: purposes.join(", "),
            })
        }
    }

    /// Spends `cost` units of `subsystem`'s own quota: one per question, or one per item of
    /// a batch contract, at most the burst.
    pub(crate) fn admit(&self, subsystem: &MemberId, cost: u32) -> Result<(), OverRate> {
        let Some(g) = self.by_id.get(subsystem) else {
            return Ok(());
        };
        let cost = NonZeroU32::new(cost)
            .unwrap_or(NonZeroU32::MIN)
            .min(g.burst);
        let over = |wait| OverRate {
            subsystem: subsystem.clone(),
            wait,
        };
        match g.limiter.check_n(cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(over(not_until.wait_time_from(self.clock.now()))),
            // Not reached: the cost is clamped to the burst above.
            Err(_) => Err(over(Duration::from_secs(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SubsystemGrant;
    use contracts::manifest::Rate;

    fn grants() -> SubsystemGrants {
        SubsystemGrants::new(&[Subsystem {
            id: MemberId::parse("ID:GOV:KEMLU:APP").unwrap(),
            rate: Rate {
                per_second: 1,
                burst: 2,
            },
            grants: vec![SubsystemGrant {
                contract: ContractRef::new("citizenship.status", "1"),
                purposes: vec!["citizen-protection".into()],
            }],
        }])
    }

    #[test]
    fn only_a_granted_contract_and_purpose_pass() {
        let g = grants();
        let app = MemberId::parse("ID:GOV:KEMLU:APP").unwrap();
        let c = ContractRef::new("citizenship.status", "1");
        assert_eq!(g.authorize(&app, &c, "citizen-protection"), Ok(()));
        assert!(matches!(
            g.authorize(&app, &c, "social-security"),
            Err(NotGranted::Purpose { .. })
        ));
        assert!(matches!(
            g.authorize(
                &app,
                &ContractRef::new("insurance.status", "1"),
                "citizen-protection"
            ),
            Err(NotGranted::Contract { .. })
        ));
        let other = MemberId::parse("ID:GOV:KEMLU:OTHER").unwrap();
        assert!(!g.contains(&other));
        assert!(matches!(
            g.authorize(&other, &c, "citizen-protection"),
            Err(NotGranted::Contract { .. })
        ));
    }

    #[test]
    fn a_subsystem_over_its_burst_waits() {
        let g = grants();
        let app = MemberId::parse("ID:GOV:KEMLU:APP").unwrap();
        assert_eq!(g.admit(&app, 1), Ok(()));
        assert_eq!(g.admit(&app, 1), Ok(()));
        let over = g.admit(&app, 1).unwrap_err();
        assert!(over.wait > Duration::ZERO && over.wait <= Duration::from_secs(1));
    }
}
