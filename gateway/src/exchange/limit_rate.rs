//! The consumer's rate on this contract is not exceeded (429 `rate-limited`, with
//! `Retry-After` from the limiter's own wait).

use contracts::{ContractRef, ExchangeRequest, Problem, ProblemCode};

use crate::gateway::Gateway;
use crate::metrics::count;
use crate::middle::rate::RateDecision;

pub(super) async fn limit_rate(
    gw: &Gateway,
    contract: &ContractRef,
    request: &ExchangeRequest,
) -> Result<(), Problem> {
    match gw.rates.check(contract, &request.iss).await {
        RateDecision::Admit => {
            count!(gw.labels, "simpul_rate_admitted_total", "contract" => contract.to_string());
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
