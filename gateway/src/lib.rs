//! The running Simpul gateway: configuration, assembly, mTLS listeners, the provider's
//! exchange pipeline, the consumer side (asking, the local face on a listener of its own,
//! fan-out), the audit trail
//! of each exchange, and the admin side. The `simpul` binary and the demo federation are
//! crates of their own.

// Refusals carry the protocol's whole problem document (168 bytes). They are the cold path
// and copying them costs nanoseconds; boxing every step's error would only add noise.
#![allow(clippy::result_large_err)]

pub mod admin;
mod admission;
mod anchor;
pub mod assemble;
mod audit_api;
mod audit_size;
pub mod authority;
pub mod client;
pub mod config;
mod console;
mod consumer;
pub mod descriptors;
pub mod doctor;
mod escaped;
mod events;
mod exchange;
mod fault;
pub mod gateway;
pub mod hsm;
mod http;
pub mod layout;
mod listener;
pub mod local_server;
pub mod metrics;
pub mod openapi;
mod overlap;
pub mod refresh;
mod refusals;
pub mod revocation;
pub mod server;
pub mod snapshot;
pub mod tls;
mod tracectx;
mod trail;
pub mod webhook;
pub mod witness;
