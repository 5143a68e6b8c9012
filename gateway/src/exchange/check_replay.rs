//! The exchange id has not been seen within the freshness window (409 `replay`); a consumer
//! whose window is full is refused until ids age out (503, fail closed).

use std::time::Duration;

use contracts::{ExchangeId, ExchangeRequest};
use limits::replay::{ReplayRefusal, ReplayWindow};

use super::refusal::Refusal;

/// Remembers `id`, the id of `request`, in `window` at `now` (Unix time), or refuses it.
pub(super) fn check_replay(
    window: &ReplayWindow,
    request: &ExchangeRequest,
    id: ExchangeId,
    now: Duration,
) -> Result<(), Refusal> {
    match window.check(&request.iss, id.as_u128(), now) {
        Ok(()) => Ok(()),
        Err(ReplayRefusal::Replay) => Err(Refusal::Replayed {
            id: request.id.clone(),
        }),
        Err(ReplayRefusal::Full { retry_after }) => Err(Refusal::ReplayWindowFull {
            consumer: request.iss.clone(),
            held: window.len(&request.iss),
            retry_after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use serde_json::json;

    const WINDOW: Duration = Duration::from_secs(120);
    const NOW: Duration = Duration::from_secs(1_800_000_000);

    #[test]
    fn a_second_presentation_of_an_id_is_a_replay() {
        let window = ReplayWindow::new(WINDOW, 10);
        let id = ExchangeId::parse(&request().id).unwrap();
        assert!(check_replay(&window, &request(), id, NOW).is_ok());
        assert!(matches!(
            check_replay(&window, &request(), id, NOW + Duration::from_secs(1)),
            Err(Refusal::Replayed { .. })
        ));
    }

    #[test]
    fn a_full_window_refuses_new_ids_until_they_age_out() {
        let window = ReplayWindow::new(WINDOW, 1);
        let first = ExchangeId::parse(&request().id).unwrap();
        assert!(check_replay(&window, &request(), first, NOW).is_ok());
        let other = request_with(json!({"id": "7b0e5b4e-3f0a-4c55-9d43-2f7c1b1a0e02"}));
        let id = ExchangeId::parse(&other.id).unwrap();
        assert!(matches!(
            check_replay(&window, &other, id, NOW),
            Err(Refusal::ReplayWindowFull { held: 1, .. })
        ));
        assert!(check_replay(&window, &other, id, NOW + WINDOW * 2).is_ok());
    }
}
