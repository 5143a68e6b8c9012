//! One module per `simpul` command.

pub mod audit;
pub mod cache;
pub mod manifest;
pub mod pki;
pub mod query;
pub mod serve;
pub mod up;
