//! Overlap counts without sharing lists (PROTOCOL.md §2.7): the provider's side of a run and
//! of its report, the consumer's side that blinds its own list, sends it, counts and
//! reports, and the `application/simpul-psi` body both read as it arrives.

pub(crate) mod body;
pub(crate) mod consumer;
pub(crate) mod provider;
