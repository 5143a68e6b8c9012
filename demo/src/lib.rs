//! The demo federation that `simpul up` runs: its synthetic population (four ministries'
//! overlapping records about the same people), the development PKI, and the preparation
//! that makes whatever is missing before the gateways start. Nothing here is linked into
//! a production gateway's library.

pub mod pki;
mod plan;
pub mod population;
mod prepare;

pub use plan::{DemoPlan, SeedTarget};
pub use prepare::{
    PrepareError, Prepared, demo_caller, member_schema, pki_plan, prepare, use_database_server,
};
