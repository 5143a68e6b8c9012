//! `aud` is this gateway's member.

use contracts::{ExchangeRequest, MemberId};

use super::refusal::Refusal;

pub(super) fn check_audience(me: &MemberId, request: &ExchangeRequest) -> Result<(), Refusal> {
    if &request.aud != me {
        return Err(Refusal::WrongAudience {
            aud: request.aud.clone(),
            me: me.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn only_this_gateways_member_is_the_audience() {
        assert!(check_audience(&id(DUKCAPIL), &request()).is_ok());
        assert!(matches!(
            check_audience(&id(BP2MI), &request()),
            Err(Refusal::WrongAudience { .. })
        ));
    }
}
