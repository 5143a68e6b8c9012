//! The exchange id has not been seen within the freshness window (409 `replay`); a consumer
//! whose window is full is refused until ids age out (503, fail closed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use contracts::{ExchangeRequest, Problem, ProblemCode};

use crate::gateway::Gateway;
use limits::rate::RateDecision;
use limits::replay::ReplayRefusal;

pub(super) fn check_replay(gw: &Gateway, request: &ExchangeRequest) -> Result<(), Problem> {
    // verify_signature has checked the id is a UUID.
    let id = uuid::Uuid::parse_str(&request.id)
        .map(|u| u.as_u128())
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    match gw.replay.check(&request.iss, id, now) {
        Ok(()) => Ok(()),
        Err(ReplayRefusal::Replay) => Err(Problem::new(
            ProblemCode::Replay,
            format!("exchange id {} was already presented", request.id),
        )),
        Err(ReplayRefusal::Full { retry_after }) => {
            let mut p = Problem::new(
                ProblemCode::ProviderUnavailable,
                format!(
                    "{} has {} exchange ids in the replay window, its bound; retry when they age out",
                    request.iss,
                    gw.replay.len(&request.iss)
                ),
            );
            p.retry_after = Some(RateDecision::retry_after_s(retry_after));
            Err(p)
        }
    }
}
