//! The exchange face's admission limit (PROTOCOL.md §3.3, before the table): requests per
//! peer identity (the member or subsystem its TLS certificate names) and per peer address,
//! each a GCRA, checked when a request arrives, before its body is read or anything of it
//! is checked. Certified peers can still send garbage; this bounds how much of it one peer
//! makes the gateway read and verify. Kept in this process (each replica its own).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use contracts::MemberId;
use contracts::manifest::Rate;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::AdmissionLimits;
use crate::listener::AddressKey;

/// Which admission limit a request is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OverAdmission {
    /// Its TLS identity's.
    #[error(
        "this peer is over the gateway's admission limit for one identity (limits.admission_per_peer)"
    )]
    Peer {
        /// The limiter's wait until one more request would be admitted.
        wait: Duration,
    },
    /// Its address's.
    #[error(
        "this peer's address is over the gateway's admission limit for one address (limits.admission_per_address)"
    )]
    Address {
        /// The limiter's wait until one more request would be admitted.
        wait: Duration,
    },
}

impl OverAdmission {
    /// How long until one more request would be admitted.
    pub(crate) fn wait(self) -> Duration {
        match self {
            OverAdmission::Peer { wait } | OverAdmission::Address { wait } => wait,
        }
    }

    /// The limit's name, for metrics.
    pub(crate) fn limit(self) -> &'static str {
        match self {
            OverAdmission::Peer { .. } => "admission_per_peer",
            OverAdmission::Address { .. } => "admission_per_address",
        }
    }
}

/// The admission limits of one member listener.
pub(crate) struct Admission {
    /// By the certificate's identity; `None` is every certificate without one.
    peers: DefaultKeyedRateLimiter<Option<MemberId>>,
    addresses: DefaultKeyedRateLimiter<AddressKey>,
    clock: DefaultClock,
}

fn quota(rate: &Rate) -> Quota {
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
    Quota::per_second(per_second).allow_burst(burst)
}

impl Admission {
    /// Limits at `limits`' rates, nothing spent.
    pub(crate) fn new(limits: &AdmissionLimits) -> Self {
        Admission {
            peers: RateLimiter::keyed(quota(&limits.per_peer)),
            addresses: RateLimiter::keyed(quota(&limits.per_address)),
            clock: DefaultClock::default(),
        }
    }

    /// Spends one request of `peer`'s quota and one of `address`'s; the identity is checked
    /// first, as the more specific reason.
    pub(crate) fn admit(
        &self,
        peer: Option<&MemberId>,
        address: IpAddr,
    ) -> Result<(), OverAdmission> {
        self.peers
            .check_key(&peer.cloned())
            .map_err(|not_until| OverAdmission::Peer {
                wait: not_until.wait_time_from(self.clock.now()),
            })?;
        self.addresses
            .check_key(&AddressKey::from(address))
            .map_err(|not_until| OverAdmission::Address {
                wait: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Forgets the peers and addresses whose quota is full again, so the limiter holds only
    /// those seen recently (run once a minute).
    pub(crate) fn forget_idle(&self) {
        self.peers.retain_recent();
        self.peers.shrink_to_fit();
        self.addresses.retain_recent();
        self.addresses.shrink_to_fit();
    }

    /// Peers and addresses held (tests).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.peers.len(), self.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn limits(peer: (u32, u32), address: (u32, u32)) -> AdmissionLimits {
        AdmissionLimits {
            per_peer: Rate {
                per_second: peer.0,
                burst: peer.1,
            },
            per_address: Rate {
                per_second: address.0,
                burst: address.1,
            },
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn member(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    #[test]
    fn a_peer_beyond_its_burst_is_refused_and_others_are_not() {
        let a = Admission::new(&limits((1, 3), (1000, 1000)));
        let kemlu = member("ID:GOV:KEMLU");
        for _ in 0..3 {
            a.admit(Some(&kemlu), ip(1)).unwrap();
        }
        let over = a.admit(Some(&kemlu), ip(1)).unwrap_err();
        assert!(matches!(over, OverAdmission::Peer { .. }), "{over:?}");
        assert!(over.wait() > Duration::ZERO && over.wait() <= Duration::from_secs(1));
        a.admit(Some(&member("ID:GOV:BP2MI")), ip(1))
            .expect("another identity has its own quota");
    }

    #[test]
    fn one_address_is_limited_whatever_identities_it_presents() {
        let a = Admission::new(&limits((1000, 1000), (1, 2)));
        a.admit(Some(&member("ID:GOV:A")), ip(1)).unwrap();
        a.admit(Some(&member("ID:GOV:B")), ip(1)).unwrap();
        let over = a.admit(Some(&member("ID:GOV:C")), ip(1)).unwrap_err();
        assert!(matches!(over, OverAdmission::Address { .. }), "{over:?}");
        a.admit(Some(&member("ID:GOV:C")), ip(2))
            .expect("another address has its own quota");
    }

    #[test]
    fn idle_peers_are_forgotten() {
        let a = Admission::new(&limits((1_000_000, 1), (1_000_000, 1)));
        a.admit(Some(&member("ID:GOV:A")), ip(1)).unwrap();
        a.admit(None, ip(2)).unwrap();
        assert_eq!(a.held(), (2, 2));
        std::thread::sleep(Duration::from_millis(5));
        a.forget_idle();
        assert_eq!(a.held(), (0, 0));
    }
}
