//! One module per `simpul` command.

pub mod audit;
pub mod cache;
pub mod completions;
pub mod console;
pub mod doctor;
pub mod join;
pub mod man;
pub mod manifest;
pub mod openapi;
pub mod pki;
pub mod query;
pub mod rotate;
pub mod serve;
pub mod up;

use std::process::ExitCode;
use std::time::Duration;

use gateway::client::{PeerClient, Reply};

use crate::error::CliError;

/// POSTs the JSON `body` to `url` through `client`, within `timeout`.
async fn post_json(
    client: &PeerClient,
    url: String,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, CliError> {
    client
        .call(
            http::Method::POST,
            &url,
            "application/json",
            body.into(),
            timeout,
        )
        .await
        .map_err(|source| CliError::Call { url, source })
}

/// Success when the gateway answered 2xx.
fn exit_code(reply: &Reply) -> ExitCode {
    if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
