#![allow(clippy::result_large_err)] // the problem document is the refusal type; see gateway/src/lib.rs
//! The exchange spine over real TLS on loopback: every refusal of PROTOCOL.md §3 with its
//! status and code, the success path verified as a consumer would, the local face and the
//! federated lookup on the member's own listener.

mod apart;
mod batch;
mod cancel;
mod cleanse;
mod cli;
mod common;
mod connections;
mod console;
mod doctor;
mod events;
mod exchange;
mod flood;
mod garbage;
mod hsm;
mod join;
mod local;
mod middle;
mod overlap;
mod revocation;
mod rotation;
mod runtime;
mod startup;
mod statistics;
mod strict;
mod telemetry;
mod trail;
mod transport;
mod witness;
