//! Synthetic data for the demo federation (`simpul up`), one section of the generator per file.
//!
//! Four ministries hold overlapping records about the same people, the way real registries
//! do: Dukcapil registers every resident (NIK, name, birth date), BP2MI records migrant-worker
//! placements abroad, BPJS Ketenagakerjaan records insurance membership (with, for a migrant
//! worker, the destination of the placement it covers), and Kemlu's Peduli WNI holds
//! self-reported stays abroad, which are messy (duplicates, name variants, mistyped NIKs).
//!
//! [`generate`] builds all four datasets in memory from a [`SeedConfig`]; it is pure and
//! deterministic, so the same seed gives byte-identical databases on every machine. Then
//! [`write_dataset`] writes one dataset into one member's SQLite file.
//!
//! The generator draws every random number from its own SplitMix64 rather than from a crate,
//! because the data must stay identical for a seed on every machine and in every future
//! version: a demo script, a benchmark or a bug report can name "seed 20261123" and mean
//! exactly the same people. Changing the order or number of draws changes the data, so treat
//! that order as part of the format (a test pins a fingerprint of the output). Each stage
//! (residents, placements, insurance, reports) draws from its own stream, so a change in a
//! later stage leaves the earlier datasets intact.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, ConnectOptions, Connection};

mod calendar;
mod config;
mod names;
mod nik;
mod people;
mod places;
mod random;
mod sample;
mod selfreports;
mod server;
mod sqlite;
#[cfg(test)]
mod tests;

use calendar::*;
use names::*;
use nik::*;
use places::*;
use random::*;

pub use config::{Dataset, SeedConfig};
pub use nik::nik_is_valid;
pub use people::{Population, generate};
pub use sample::{Sample, read_sample};
pub use selfreports::{
    HEADER as SELF_REPORT_HEADER, SEED_ROWS, SelfReportError, SelfReportMix, write_self_reports,
};
pub use server::{
    ServerTarget, ensure_change_table_server, server_has_dataset, write_dataset_server,
};
#[cfg(test)]
pub(crate) use sqlite::{PLACEMENT_CHANGES_SCHEMA, PLACEMENTS_SCHEMA};
pub use sqlite::{SeedError, ensure_change_table, write_dataset};

/// Says how far a long seed has got, at most every [`Progress::EVERY`], at INFO: a million
/// people take tens of seconds, which must not look like a hang.
pub(crate) struct Progress {
    what: String,
    total: usize,
    last: std::time::Instant,
}

impl Progress {
    /// How often it speaks.
    const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

    /// Progress of writing `total` rows of `what`.
    pub(crate) fn new(what: impl Into<String>, total: usize) -> Self {
        Progress {
            what: what.into(),
            total,
            last: std::time::Instant::now(),
        }
    }

    /// `done` rows are written.
    pub(crate) fn at(&mut self, done: usize) {
        if self.last.elapsed() >= Self::EVERY {
            self.last = std::time::Instant::now();
            tracing::info!(
                "seeding {}: {done} of {} rows ({}%)",
                self.what,
                self.total,
                done * 100 / self.total.max(1)
            );
        }
    }
}
