//! The connection bound of one listener: a [`Slot`] per open connection, at most
//! [`ConnectionBounds::max`] in all and [`ConnectionBounds::per_address`] from one peer
//! address; a slot frees when it is dropped, whenever its connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::ConnectionBounds;

/// The open connections of one listener, counted in all and per peer address.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bounds: ConnectionBounds,
    /// Set to the number open whenever it changes, under the lock, so it never shows a
    /// stale count after a newer one.
    open_gauge: metrics::Gauge,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    /// Only addresses with a connection open: an entry goes when its last slot does.
    per_address: HashMap<AddressKey, usize>,
}

/// What one peer is counted as: an IPv4 address (an IPv4-mapped IPv6 address is the IPv4
/// address), or the /64 prefix of an IPv6 address — the smallest block a site is given, so
/// one site cannot take every slot by hopping between its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AddressKey {
    V4(std::net::Ipv4Addr),
    V6Prefix64(u64),
}

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4),
                None => AddressKey::V6Prefix64((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection gets no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The listener holds its bound.
    #[error("the listener holds max_connections ({max}) connections")]
    Full {
        /// The bound.
        max: usize,
    },
    /// The peer's address holds its bound.
    #[error("the peer's address holds max_connections_per_address ({max}) connections")]
    AddressFull {
        /// The bound.
        max: usize,
    },
}

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    inner: Arc<Inner>,
    key: AddressKey,
}

impl ConnectionLimit {
    /// A limit with nothing open, reporting the number open to `open_gauge`.
    pub fn new(bounds: ConnectionBounds, open_gauge: metrics::Gauge) -> Self {
        open_gauge.set(0.0);
        ConnectionLimit {
            inner: Arc::new(Inner {
                bounds,
                open_gauge,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// A slot for a connection from `peer`, or why there is none. The address's own bound
    /// is checked first: it is the more specific reason.
    pub fn admit(&self, peer: IpAddr) -> Result<Slot, Refused> {
        let key = AddressKey::from(peer);
        let bounds = self.inner.bounds;
        let mut counts = self.inner.lock();
        let from_peer = counts.per_address.get(&key).copied().unwrap_or(0);
        if from_peer >= bounds.per_address {
            return Err(Refused::AddressFull {
                max: bounds.per_address,
            });
        }
        if counts.open >= bounds.max {
            return Err(Refused::Full { max: bounds.max });
        }
        counts.open += 1;
        *counts.per_address.entry(key).or_insert(0) += 1;
        self.inner.open_gauge.set(counts.open as f64);
        Ok(Slot {
            inner: self.inner.clone(),
            key,
        })
    }

    /// The connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.inner.lock().open
    }

    /// The peer addresses with a connection open now.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.inner.lock().per_address.len()
    }
}

impl Inner {
    /// The counts; a panic while they were held cannot leave them half-updated (each update
    /// is a few integer operations), so a poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.inner.lock();
        counts.open = counts.open.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.key);
            }
        }
        self.inner.open_gauge.set(counts.open as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limit(max: usize, per_address: usize) -> ConnectionLimit {
        ConnectionLimit::new(
            ConnectionBounds {
                max,
                per_address,
                handshakes: 1,
            },
            metrics::Gauge::noop(),
        )
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn connections_beyond_the_bound_are_refused_until_a_slot_is_dropped() {
        let limit = limit(3, 3);
        let slots: Vec<Slot> = (1..=3).map(|i| limit.admit(v4(i)).unwrap()).collect();
        assert_eq!(limit.admit(v4(4)).unwrap_err(), Refused::Full { max: 3 });
        drop(slots);
        assert_eq!(limit.open(), 0);
        assert!(limit.admit(v4(4)).is_ok());
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let limit = limit(10, 2);
        let _a = limit.admit(v4(1)).unwrap();
        let _b = limit.admit(v4(1)).unwrap();
        assert_eq!(
            limit.admit(v4(1)).unwrap_err(),
            Refused::AddressFull { max: 2 }
        );
        let _c = limit
            .admit(v4(2))
            .expect("another address still gets a slot");
        assert_eq!(limit.open(), 3);
    }

    #[test]
    fn the_address_bound_is_reported_before_the_listeners() {
        let limit = limit(2, 2);
        let _a = limit.admit(v4(1)).unwrap();
        let _b = limit.admit(v4(1)).unwrap();
        assert_eq!(
            limit.admit(v4(1)).unwrap_err(),
            Refused::AddressFull { max: 2 }
        );
        assert_eq!(limit.admit(v4(2)).unwrap_err(), Refused::Full { max: 2 });
    }

    #[test]
    fn a_dropped_slot_frees_its_address_and_forgets_it() {
        let limit = limit(10, 1);
        let a = limit.admit(v4(1)).unwrap();
        let _b = limit.admit(v4(2)).unwrap();
        assert!(limit.admit(v4(1)).is_err());
        drop(a);
        assert_eq!(
            limit.addresses(),
            1,
            "no entry is kept for an address with none open"
        );
        assert!(limit.admit(v4(1)).is_ok());
    }

    #[test]
    fn an_ipv6_site_counts_as_one_address_and_a_mapped_ipv4_as_its_ipv4() {
        let limit = limit(10, 1);
        let site = |host: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, host));
        let _a = limit.admit(site(1)).unwrap();
        assert!(limit.admit(site(2)).is_err(), "same /64");
        assert!(
            limit
                .admit(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 8, 0, 0, 0, 1)))
                .is_ok(),
            "another /64"
        );
        let _v4 = limit.admit(v4(9)).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        assert_eq!(
            limit.admit(mapped).unwrap_err(),
            Refused::AddressFull { max: 1 }
        );
    }

    #[test]
    fn slots_dropped_on_other_threads_are_all_returned() {
        let limit = limit(64, 64);
        let slots: Vec<Slot> = (0..64).map(|_| limit.admit(v4(1)).unwrap()).collect();
        let threads: Vec<_> = slots
            .into_iter()
            .map(|s| std::thread::spawn(move || drop(s)))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!((limit.open(), limit.addresses()), (0, 0));
    }
}
