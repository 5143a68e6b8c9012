//! The process's open-file limit (`RLIMIT_NOFILE`): every connection a listener holds is a
//! descriptor, and a service gets a soft limit of 1,024 by default, so at start-up the soft
//! limit is raised to the hard one and compared with what the listeners' connection bounds
//! may hold open.

use std::fmt;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors counted for what is not a listener's connection: connections to other
/// gateways, database and audit-store connections, Redis, files.
pub const DESCRIPTOR_MARGIN: u64 = 1024;

/// One bound of the open-file limit: a number of descriptors, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// At most this many.
    Finite(u64),
    /// No bound.
    Unlimited,
}

impl From<Option<u64>> for Bound {
    fn from(v: Option<u64>) -> Self {
        v.map_or(Bound::Unlimited, Bound::Finite)
    }
}

impl From<Bound> for Option<u64> {
    fn from(b: Bound) -> Self {
        match b {
            Bound::Finite(n) => Some(n),
            Bound::Unlimited => None,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Finite(n) => write!(f, "{n}"),
            Bound::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// The process's open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// What the process may open now.
    pub soft: Bound,
    /// What the soft limit may be raised to without privileges.
    pub hard: Bound,
}

/// The soft limit could not be raised; the process keeps `limit`.
#[derive(Debug, thiserror::Error)]
#[error("cannot raise the open-file limit from {} to {}: {source}", .limit.soft, .limit.hard)]
pub struct RaiseError {
    /// The limit in force.
    pub limit: OpenFileLimit,
    /// Why `setrlimit` refused.
    pub source: std::io::Error,
}

/// The listeners may hold more connections than the process may open descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the listeners may hold {connections} connections, and with {margin} descriptors for \
     everything else that is more than the open-file limit of {soft}, which cannot be raised \
     further: lower limits.max_connections (it counts twice with a local listener) or \
     admin.max_connections, or raise the hard limit (LimitNOFILE= in the systemd unit, \
     `ulimit -Hn` in a shell)",
    margin = DESCRIPTOR_MARGIN
)]
pub struct Shortfall {
    /// The connections the listeners may hold in all.
    pub connections: u64,
    /// The soft limit.
    pub soft: u64,
}

/// The most connections a member's listeners hold open at once: the member listener's
/// bound `max` (`limits.max_connections`), the local listener's (the same bound) when it
/// has one, and the admin listener's (`admin.max_connections`) when it has one.
pub fn listener_connections(max: usize, local: bool, admin: Option<usize>) -> u64 {
    let local = if local { max } else { 0 };
    (max as u64)
        .saturating_add(local as u64)
        .saturating_add(admin.unwrap_or(0) as u64)
}

/// The process's open-file limit now.
pub fn open_file_limit() -> OpenFileLimit {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    OpenFileLimit {
        soft: current.into(),
        hard: maximum.into(),
    }
}

/// Raises the soft open-file limit to the hard one, if it is lower, and returns the limit
/// now in force.
///
/// # Errors
/// [`RaiseError`] with the limit unchanged, if the system refuses (macOS, for one, refuses
/// an unlimited soft limit).
pub fn raise_open_file_limit() -> Result<OpenFileLimit, RaiseError> {
    let limit = open_file_limit();
    if limit.soft == limit.hard {
        return Ok(limit);
    }
    let raised = Rlimit {
        current: limit.hard.into(),
        maximum: limit.hard.into(),
    };
    setrlimit(Resource::Nofile, raised).map_err(|e| RaiseError {
        limit,
        source: e.into(),
    })?;
    Ok(open_file_limit())
}

/// Whether listeners that may hold `connections` at once, plus [`DESCRIPTOR_MARGIN`], fit in
/// the soft limit of `limit`.
///
/// # Errors
/// [`Shortfall`] if they do not.
pub fn check_budget(limit: OpenFileLimit, connections: u64) -> Result<(), Shortfall> {
    match limit.soft {
        Bound::Finite(soft) if connections.saturating_add(DESCRIPTOR_MARGIN) > soft => {
            Err(Shortfall { connections, soft })
        }
        _ => Ok(()),
    }
}

/// At start-up, before the listeners accept: raises the soft open-file limit to the hard
/// one and logs the limit in force.
///
/// # Errors
/// [`Shortfall`] when listeners that may hold `connections` at once, with the margin for
/// everything else, would not fit in the limit even so: the gateway does not start, rather
/// than run out of descriptors under load (accepts failing, databases and peers unreachable).
pub fn prepare(connections: u64) -> Result<OpenFileLimit, Shortfall> {
    let limit = match raise_open_file_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "open-file limit not raised");
            e.limit
        }
    };
    tracing::info!(soft = %limit.soft, hard = %limit.hard, connections, "open-file limit");
    check_budget(limit, connections)?;
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(soft: u64) -> OpenFileLimit {
        OpenFileLimit {
            soft: Bound::Finite(soft),
            hard: Bound::Unlimited,
        }
    }

    #[test]
    fn connections_and_the_margin_within_the_soft_limit_fit() {
        assert_eq!(check_budget(limit(4096 + DESCRIPTOR_MARGIN), 4096), Ok(()));
        assert_eq!(
            check_budget(
                OpenFileLimit {
                    soft: Bound::Unlimited,
                    hard: Bound::Unlimited
                },
                u64::MAX
            ),
            Ok(())
        );
    }

    #[test]
    fn connections_beyond_the_soft_limit_less_the_margin_are_a_shortfall() {
        let e = check_budget(limit(1024), 4096 + 64).unwrap_err();
        assert_eq!(
            e,
            Shortfall {
                connections: 4160,
                soft: 1024
            }
        );
        assert!(e.to_string().contains("limits.max_connections"), "{e}");
        assert!(check_budget(limit(4096 + DESCRIPTOR_MARGIN - 1), 4096).is_err());
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        // The test process's own limit: raising to the hard limit needs no privilege.
        let raised = raise_open_file_limit().unwrap();
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(open_file_limit(), raised);
    }
}
