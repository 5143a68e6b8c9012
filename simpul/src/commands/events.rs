//! `simpul events`: a member's change notifications as its event store holds them — each
//! subscription it delivers (backlog, lag, the last event acknowledged, the last failure)
//! and each webhook it posts to — and `simpul events redeliver`, which moves a webhook back
//! so that its member system receives again what the inbox still holds. It reads and
//! writes the store beside a running gateway, which takes a moved webhook at its next round.

use std::process::ExitCode;

use audit_store::events::EventStore;
use clap::{Args as ClapArgs, Subcommand};
use contracts::MemberId;
use gateway::config::Config;

use crate::error::CliError;

#[derive(ClapArgs)]
pub struct Args {
    /// The member whose event store to read.
    #[arg(long)]
    member: MemberId,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<EventsCommand>,
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Post again to a webhook everything the inbox still holds after a point: the member
    /// system sees those events again, with their ids.
    Redeliver {
        /// The webhook (`[[members.webhooks]]` name).
        #[arg(long)]
        webhook: String,
        /// Post again every event after this inbox position (`seq`, as `GET /v1/events`
        /// and `simpul events` show it); 0 is everything the inbox holds.
        #[arg(long, conflicts_with = "since")]
        after: Option<i64>,
        /// Post again every event received at or after this time (RFC 3339, UTC, e.g.
        /// 2026-12-06T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
}

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let member = config.member(&args.member).ok_or_else(|| {
        CliError::Usage(format!(
            "{}: --member {} is not a member of this configuration",
            config.source, args.member
        ))
    })?;
    let store = EventStore::open(&member.audit, &config.base_dir, &member.id)
        .await
        .map_err(|e| CliError::Process(format!("{}'s event store: {e}", member.id)))?;
    let failed = |e: audit_store::events::EventStoreError| {
        CliError::Process(format!("{}'s event store: {e}", member.id))
    };
    match args.command {
        Some(EventsCommand::Redeliver {
            webhook,
            after,
            since,
        }) => {
            if !member.webhooks.iter().any(|w| w.name == webhook) {
                let names: Vec<&str> = member.webhooks.iter().map(|w| w.name.as_str()).collect();
                return Err(CliError::Usage(format!(
                    "{}: {} has no webhook named `{webhook}` (members.webhooks: {})",
                    config.source,
                    member.id,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            let to = match (after, since) {
                (Some(seq), _) => seq,
                (None, Some(t)) => {
                    let ms = contracts::parse_utc(&t).ok_or_else(|| {
                        CliError::Usage(format!(
                            "--since {t}: not an RFC 3339 time in UTC, e.g. 2026-12-06T08:00:00Z"
                        ))
                    })? * 1000;
                    store.inbox_seq_before(ms).await.map_err(failed)?
                }
                (None, None) => {
                    return Err(CliError::Usage(
                        "redeliver: say from where, with --after SEQ or --since TIME".into(),
                    ));
                }
            };
            store
                .hooks(std::slice::from_ref(&webhook))
                .await
                .map_err(failed)?;
            store.rewind(&webhook, to).await.map_err(failed)?;
            println!(
                "{}: webhook {webhook} posts again every event after inbox position {to}",
                member.id
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let cursors = store.cursors().await.map_err(failed)?;
            let names: Vec<String> = member.webhooks.iter().map(|w| w.name.clone()).collect();
            let hooks = store.hooks(&names).await.map_err(failed)?;
            let last = store.inbox_seq_before(i64::MAX).await.map_err(failed)?;
            let now = audit_store::now_ms();
            if args.json {
                let value = serde_json::json!({
                    "member": member.id,
                    "subscriptions": cursors.iter().map(|c| serde_json::json!({
                        "subscriber": c.subscriber, "contract": c.contract, "version": c.version,
                        "purpose": c.purpose, "active": c.active, "backlog": c.backlog,
                        "lag_s": c.oldest_pending_ms.map(|t| (now - t).max(0) / 1000),
                        "last_delivered": c.last_delivered_id,
                        "last_delivered_at": c.last_delivered_ms.map(|t| contracts::utc(t / 1000)),
                        "attempts": c.attempts, "last_error": c.last_error, "expiry_notices": c.notices,
                    })).collect::<Vec<_>>(),
                    "inbox_last_seq": last,
                    "webhooks": hooks.iter().map(|h| serde_json::json!({
                        "webhook": h.name, "position": h.delivered_seq,
                        "backlog": (last - h.delivered_seq).max(0), "attempts": h.attempts,
                        "last_error": h.last_error,
                        "last_posted_at": h.last_delivered_ms.map(|t| contracts::utc(t / 1000)),
                    })).collect::<Vec<_>>(),
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}: events it delivers", member.id);
            if cursors.is_empty() {
                println!("  (no subscriptions)");
            }
            for c in &cursors {
                let lag = c.oldest_pending_ms.map_or_else(
                    || "-".to_owned(),
                    |t| format!("{} s", (now - t).max(0) / 1000),
                );
                println!(
                    "  {}/{} to {}{}: backlog {}, lag {lag}, last {} at {}{}",
                    c.contract,
                    c.version,
                    c.subscriber,
                    if c.active { "" } else { " (no longer granted)" },
                    c.backlog,
                    c.last_delivered_id.as_deref().unwrap_or("-"),
                    c.last_delivered_ms
                        .map_or_else(|| "-".to_owned(), |t| contracts::utc(t / 1000)),
                    match (&c.last_error, c.attempts) {
                        (Some(e), n) if n > 0 => format!("; {n} failed tries, last: {e}"),
                        _ => String::new(),
                    }
                );
            }
            println!(
                "{}: webhooks (inbox holds up to position {last})",
                member.id
            );
            if hooks.is_empty() {
                println!("  (no webhooks)");
            }
            for h in &hooks {
                println!(
                    "  {}: position {}, backlog {}, last post {}{}",
                    h.name,
                    h.delivered_seq,
                    (last - h.delivered_seq).max(0),
                    h.last_delivered_ms
                        .map_or_else(|| "-".to_owned(), |t| contracts::utc(t / 1000)),
                    match (&h.last_error, h.attempts) {
                        (Some(e), n) if n > 0 => format!("; {n} failed tries, last: {e}"),
                        _ => String::new(),
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
