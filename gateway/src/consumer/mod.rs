//! The consumer side, in one place: asking a provider ([`ask`]: the grant checked, the
//! request built and signed, sent by one deadline, the answer verified and recorded), the
//! local face a member's own systems use ([`local`]), and the federated lookup that asks
//! several providers at once ([`fanout`]).

mod ask;
pub mod fanout;
pub mod local;

pub use ask::{CheckedQuery, ask};
