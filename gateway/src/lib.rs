//! The Simpul gateway: mTLS listeners, the exchange pipeline, the federation client, the
//! demo federation and the `simpul` CLI's commands.

// Refusals carry the protocol's whole problem document (168 bytes). They are the cold path
// and copying them costs nanoseconds; boxing every step's error would only add noise.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod audit_api;
pub mod client;
pub mod config;
pub mod consumer;
pub mod exchange;
pub mod fanout;
pub mod fault;
pub mod federation;
pub mod gateway;
pub mod http;
pub mod local;
pub mod metrics;
pub mod pki;
pub mod record;
pub mod seed;
pub mod server;
pub mod tls;
