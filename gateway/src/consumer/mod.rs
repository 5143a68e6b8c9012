//! The consumer side, in one place: asking a provider ([`ask`]: the grant checked, the
//! request built and signed, sent by one deadline, the answer verified and recorded), the
//! local face a member's own systems use ([`local`]) with what each of them may ask
//! ([`grants`]), and the federated lookup that asks several providers at once ([`fanout`]).

mod ask;
pub mod fanout;
pub(crate) mod grants;
pub mod local;

pub use ask::{CheckedQuery, ask};
