//! The Simpul conformance suite and load generator.
//!
//! `simpul-conformance run` plays a counterparty against a live gateway and checks, case by
//! case, that it speaks `docs/PROTOCOL.md` exactly: mutual TLS, every refusal of the
//! exchange check table with its status and problem `type`, the contracts it serves, the
//! signed answers it gives. `simpul-conformance load` drives one contract with many
//! keep-alive connections, as fast as the gateway answers or at a fixed rate, and reports
//! exchanges per second, latency percentiles and, given its pid, the gateway's CPU time per
//! exchange.
//!
//! The crate depends on the protocol model (`contracts`) and generic crates only — never on
//! the gateway — so a mistake in the gateway cannot hide behind the same mistake here.

pub mod cases;
pub mod client;
pub mod config;
pub mod hello;
pub mod load;
pub mod report;
pub mod usage;

/// Installs aws-lc-rs as the process's TLS crypto provider. Every configuration here names
/// its provider explicitly; this only keeps a library that asks for the default from
/// panicking.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
