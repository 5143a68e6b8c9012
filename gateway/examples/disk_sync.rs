//! The disk's floor under a durable answer: how long one `fdatasync` of a small appended write
//! takes on the file system of a directory, as the audit journal makes one per group commit
//! (AUDIT.md §7.3). No answer leaves before its record's sync has returned, so no latency
//! percentile of the provider face can be below this one's on the same disk.
//!
//! ```sh
//! cargo run --release -p simpul-gateway --example disk_sync -- DIR [SECONDS]
//! ```
//!
//! Like the journal, it writes into space filled and synced beforehand (a 64 MiB file of
//! zeros), so each sync carries the data and no change of the file's size. It then appends
//! 2 KiB frames one after another, each followed by `fdatasync`, back to back for SECONDS
//! (5 by default), and prints one JSON object, a member to a line: `syncs`, and the latency of write + sync in
//! microseconds (`p50_us`, `p90_us`, `p99_us`, `p999_us`, `max_us`, `mean_us`). The file is
//! removed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The space filled ahead, as the journal's allocator does.
const SPACE: u64 = 64 << 20;
/// One group commit's frame: a few records.
const FRAME: usize = 2048;

/// Removes the probe file however the run ends.
struct Probe(PathBuf);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run(dir: &Path, time: Duration) -> Result<String, String> {
    let probe = Probe(dir.join(format!("disk-sync-{}.probe", std::process::id())));
    let mut file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&probe.0)
        .map_err(|e| format!("{}: cannot create the probe file: {e}", probe.0.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..SPACE / zeros.len() as u64 {
        file.write_all(&zeros)
            .map_err(|e| format!("{}: {e}", probe.0.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", probe.0.display()))?;
    let frame = vec![0x5au8; FRAME];
    let mut latencies = Vec::new();
    let mut offset = 0u64;
    let start = Instant::now();
    while start.elapsed() < time {
        let t = Instant::now();
        file.write_all_at(&frame, offset)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("{}: {e}", probe.0.display()))?;
        latencies.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        offset = (offset + FRAME as u64) % SPACE;
    }
    if latencies.is_empty() {
        return Err("no sync finished within the time given".into());
    }
    let mean = latencies.iter().sum::<u64>() as f64 / latencies.len() as f64;
    latencies.sort_unstable();
    let figures = serde_json::json!({
        "syncs": latencies.len(),
        "p50_us": percentile(&latencies, 50.0),
        "p90_us": percentile(&latencies, 90.0),
        "p99_us": percentile(&latencies, 99.0),
        "p999_us": percentile(&latencies, 99.9),
        "max_us": percentile(&latencies, 100.0),
        "mean_us": mean.round() as u64,
    });
    serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("disk_sync: usage: disk_sync DIR [SECONDS]");
        return ExitCode::from(2);
    };
    let seconds = match args.next().map(|s| s.parse::<f64>()) {
        None => 5.0,
        Some(Ok(s)) if s.is_finite() && s > 0.0 && s <= 3600.0 => s,
        Some(_) => {
            eprintln!("disk_sync: SECONDS must be a number above 0 and at most 3600");
            return ExitCode::from(2);
        }
    };
    match run(Path::new(&dir), Duration::from_secs_f64(seconds)) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("disk_sync: {e}");
            ExitCode::FAILURE
        }
    }
}
