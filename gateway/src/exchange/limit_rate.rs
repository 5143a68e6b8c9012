//! The consumer's rate on this contract is not exceeded (429 `rate-limited`, with
//! `Retry-After` from the limiter's own wait); a batch contract's rate counts items.

use contracts::{ContractRef, ExchangeRequest};
use limits::rate::{RateDecision, RateLimits};

use super::refusal::Refusal;

/// Spends `cost` units of `request.iss`'s quota on `contract` (one, or the items of a
/// batch), or refuses.
pub(super) async fn limit_rate(
    rates: &RateLimits,
    contract: &ContractRef,
    request: &ExchangeRequest,
    cost: u32,
) -> Result<(), Refusal> {
    match rates.check(contract, &request.iss, cost).await {
        RateDecision::Admit => Ok(()),
        RateDecision::Limit { wait } => Err(Refusal::RateLimited {
            consumer: request.iss.clone(),
            contract: contract.clone(),
            wait,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use contracts::manifest::Rate;
    use limits::rate::LocalLimits;

    #[tokio::test]
    async fn a_consumer_over_its_rate_is_refused_with_the_limiters_wait() {
        let rate = Rate {
            per_second: 1,
            burst: 1,
        };
        let rates = RateLimits::Local(LocalLimits::new(&[(citizenship(), rate)]));
        assert!(
            limit_rate(&rates, &citizenship(), &request(), 1)
                .await
                .is_ok()
        );
        match limit_rate(&rates, &citizenship(), &request(), 1).await {
            Err(Refusal::RateLimited { wait, consumer, .. }) => {
                assert_eq!(consumer, id(KEMLU));
                assert!(wait > std::time::Duration::ZERO);
            }
            other => panic!("{other:?}"),
        }
    }
}
