//! The consumer's rate on this contract is not exceeded (429 `rate-limited`, with
//! `Retry-After` from the limiter's own wait).

use contracts::{ExchangeRequest, Problem, ProblemCode};

use crate::gateway::{Gateway, Provided};
use crate::metrics::count;
use limits::rate::RateDecision;

pub(super) async fn limit_rate(
    gw: &Gateway,
    provided: &Provided,
    request: &ExchangeRequest,
) -> Result<(), Problem> {
    let contract = &*provided.reference;
    match gw.rates.check(contract, &request.iss).await {
        RateDecision::Admit => {
            provided.counters.rate_admitted.increment(1);
            Ok(())
        }
        RateDecision::Limit { wait } => {
            count!(gw.labels, "simpul_rate_limited_total", "contract" => contract.to_string(), "consumer" => request.iss.to_string());
            let mut p = Problem::new(
                ProblemCode::RateLimited,
                format!("{} is over its rate for {contract}", request.iss),
            );
            p.retry_after = Some(RateDecision::retry_after_s(wait));
            Err(p)
        }
    }
}
