//! The exchange id has not been seen within the freshness window (409 `replay`); a consumer
//! whose window is full is refused until ids age out, and an id that cannot be checked
//! because the shared window (Redis) is out of reach is refused too (503, fail closed).

use std::time::Duration;

use contracts::{ExchangeId, ExchangeRequest};
use limits::replay::{Replay, ReplayRefusal};

use super::refusal::Refusal;

/// Remembers `id`, the id of `request`, in `window` at `now` (Unix time), or refuses it.
pub(super) async fn check_replay(
    window: &Replay,
    request: &ExchangeRequest,
    id: ExchangeId,
    now: Duration,
) -> Result<(), Refusal> {
    match window.check(&request.iss, id.as_u128(), now).await {
        Ok(()) => Ok(()),
        Err(ReplayRefusal::Replay) => Err(Refusal::Replayed {
            id: request.id.clone(),
        }),
        Err(ReplayRefusal::Full { retry_after, held }) => Err(Refusal::ReplayWindowFull {
            consumer: request.iss.clone(),
            held,
            retry_after,
        }),
        Err(ReplayRefusal::Unavailable(reason)) => {
            tracing::warn!(error = %reason, "the shared replay window cannot be asked: exchange refused");
            Err(Refusal::ReplayUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use limits::replay::ReplayWindow;
    use serde_json::json;

    const WINDOW: Duration = Duration::from_secs(120);
    const NOW: Duration = Duration::from_secs(1_800_000_000);

    #[tokio::test]
    async fn a_second_presentation_of_an_id_is_a_replay() {
        let window = Replay::Local(ReplayWindow::new(WINDOW, 10));
        let id = ExchangeId::parse(&request().id).unwrap();
        assert!(check_replay(&window, &request(), id, NOW).await.is_ok());
        assert!(matches!(
            check_replay(&window, &request(), id, NOW + Duration::from_secs(1)).await,
            Err(Refusal::Replayed { .. })
        ));
    }

    #[tokio::test]
    async fn a_full_window_refuses_new_ids_until_they_age_out() {
        let window = Replay::Local(ReplayWindow::new(WINDOW, 1));
        let first = ExchangeId::parse(&request().id).unwrap();
        assert!(check_replay(&window, &request(), first, NOW).await.is_ok());
        let other = request_with(json!({"id": "7b0e5b4e-3f0a-4c55-9d43-2f7c1b1a0e02"}));
        let id = ExchangeId::parse(&other.id).unwrap();
        assert!(matches!(
            check_replay(&window, &other, id, NOW).await,
            Err(Refusal::ReplayWindowFull { held: 1, .. })
        ));
        assert!(
            check_replay(&window, &other, id, NOW + WINDOW * 2)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn an_unreachable_shared_window_refuses_with_503() {
        let window = Replay::Redis(Box::new(
            limits::replay_redis::RedisReplay::new(
                "redis://127.0.0.1:9",
                "simpul-test",
                &request().aud,
                10,
                metrics::Counter::noop(),
            )
            .unwrap(),
        ));
        let id = ExchangeId::parse(&request().id).unwrap();
        let refused = check_replay(&window, &request(), id, NOW)
            .await
            .unwrap_err();
        assert!(matches!(refused, Refusal::ReplayUnavailable), "{refused:?}");
        let problem = refused.into_problem(Some(&request().id));
        assert_eq!(problem.status, 503);
        assert_eq!(
            problem.code(),
            Some(contracts::ProblemCode::ProviderUnavailable)
        );
        assert_eq!(problem.retry_after, Some(1));
    }
}
