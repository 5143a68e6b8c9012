//! The consumer side, in one place: asking a provider ([`ask`]: the grant checked, the
//! request built and signed, sent by one deadline, the answer verified and recorded), the
//! local face a member's own systems use ([`local`]) with what each of them may ask
//! ([`grants`]), and the federated lookup that asks several providers at once ([`fanout`]).

mod ask;
pub mod fanout;
pub(crate) mod grants;
pub mod local;
pub(crate) use local::caller;

pub use ask::CheckedQuery;
pub(crate) use ask::{Outgoing, Receiving, Recipient, ask, ask_as, send};

use contracts::MemberId;

/// Who asked through the local face: the member system its certificate names, and the end
/// user it named for the question (PROTOCOL.md §4.2), if any. Both go into the audit record
/// of every exchange made for it; the user only as a keyed hash.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The subsystem, as TLS authenticated it.
    pub subsystem: MemberId,
    /// The end user's id as the member system gave it.
    pub user: Option<String>,
    /// The member system's W3C trace context, if it sent one (PROTOCOL.md §3.8).
    pub trace: Option<contracts::trace::TraceContext>,
}
