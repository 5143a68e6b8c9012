//! A server process's CPU time and peak memory, read from Linux's `/proc`, so that a load run
//! can say what each exchange cost the gateway it drove.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Why a process's figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A `/proc` file could not be read (the process is gone, or this is not Linux).
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// A `/proc` file did not hold what the kernel documents.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was missing or unreadable.
        what: &'static str,
    },
    /// The kernel's clock tick could not be learnt from `getconf CLK_TCK`.
    #[error("getconf CLK_TCK: {0}")]
    ClockTick(String),
}

/// One reading of a process's CPU time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTime {
    /// User plus system time, in clock ticks.
    pub ticks: u64,
}

/// A process watched through `/proc/PID`.
#[derive(Clone, Debug)]
pub struct Process {
    pid: u32,
    /// Clock ticks per second, for `utime` and `stime`.
    ticks_per_s: u64,
}

/// What a run cost the server process, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct ServerUsage {
    /// The process id.
    pub pid: u32,
    /// User plus system CPU seconds the process used during the measured run.
    pub cpu_s: f64,
    /// That CPU time per exchange completed, microseconds.
    pub cpu_us_per_exchange: f64,
    /// The process's peak resident set (`VmHWM`) at the end of the run, KiB: a peak over its
    /// whole life, not only over this run.
    pub peak_rss_kib: u64,
}

impl Process {
    /// Watches `pid`, learning the clock tick once; fails if the process cannot be read.
    pub fn new(pid: u32) -> Result<Self, UsageError> {
        let process = Process {
            pid,
            ticks_per_s: clock_ticks_per_second()?,
        };
        process.cpu_time()?;
        Ok(process)
    }

    fn path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    fn read(&self, file: &str) -> Result<(String, PathBuf), UsageError> {
        let path = self.path(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((text, path)),
            Err(source) => Err(UsageError::Read { path, source }),
        }
    }

    /// The process's user plus system time so far.
    pub fn cpu_time(&self) -> Result<CpuTime, UsageError> {
        let (text, path) = self.read("stat")?;
        parse_stat_cpu(&text).map_err(|what| UsageError::Malformed { path, what })
    }

    /// The process's peak resident set so far (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> Result<u64, UsageError> {
        let (text, path) = self.read("status")?;
        parse_status_kib(&text, "VmHWM").map_err(|what| UsageError::Malformed { path, what })
    }

    /// The CPU time between two readings.
    pub fn elapsed(&self, before: CpuTime, after: CpuTime) -> Duration {
        let ticks = after.ticks.saturating_sub(before.ticks);
        Duration::from_secs_f64(ticks as f64 / self.ticks_per_s as f64)
    }

    /// The report's figures for a run of `exchanges` that began at `before`.
    pub fn usage(&self, before: CpuTime, exchanges: u64) -> Result<ServerUsage, UsageError> {
        let cpu = self.elapsed(before, self.cpu_time()?);
        Ok(ServerUsage {
            pid: self.pid,
            cpu_s: cpu.as_secs_f64(),
            cpu_us_per_exchange: if exchanges == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / exchanges as f64
            },
            peak_rss_kib: self.peak_rss_kib()?,
        })
    }
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`: after it come `state` (field 3) … `utime` (14) and `stime` (15).
fn parse_stat_cpu(text: &str) -> Result<CpuTime, &'static str> {
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or("no `)` closing the command name")?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let mut tick = || -> Result<u64, &'static str> {
        fields
            .next()
            .ok_or("fewer than 15 fields")?
            .parse()
            .map_err(|_| "utime or stime is not a number")
    };
    let utime = tick()?;
    let stime = tick()?;
    Ok(CpuTime {
        ticks: utime.saturating_add(stime),
    })
}

/// The value of a `Key:   1234 kB` line of `/proc/PID/status`, KiB.
fn parse_status_kib(text: &str, key: &str) -> Result<u64, &'static str> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .ok_or("no such line (a kernel thread has no memory lines)")?;
    let mut parts = line.split_ascii_whitespace();
    let value = parts
        .next()
        .ok_or("no value")?
        .parse()
        .map_err(|_| "the value is not a number")?;
    match parts.next() {
        Some("kB") => Ok(value),
        _ => Err("the value is not in kB"),
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), asked of `getconf` once: the crate links
/// no libc binding of its own for one number.
fn clock_ticks_per_second() -> Result<u64, UsageError> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| UsageError::ClockTick(e.to_string()))?;
    if !out.status.success() {
        return Err(UsageError::ClockTick(format!("exited with {}", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UsageError::ClockTick(format!(
            "`{}` is not a positive number",
            text.trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a `)` in it, as a process may name itself.
        let stat = "4242 (my) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 \
                    12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu(stat), Ok(CpuTime { ticks: 325 }));
        assert!(parse_stat_cpu("4242 my proc S 1").is_err());
        assert!(parse_stat_cpu("4242 (p) S 1 2 3").is_err());
        assert!(parse_stat_cpu("4242 (p) S 1 2 3 4 5 6 7 8 9 x 1").is_err());
    }

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tsimpul\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Ok(12345));
        assert_eq!(parse_status_kib(status, "VmRSS"), Ok(100));
        assert!(parse_status_kib(status, "VmSwap").is_err());
        assert!(parse_status_kib("VmHWM:\t12 MB\n", "VmHWM").is_err());
        assert!(parse_status_kib("VmHWM:\tmany kB\n", "VmHWM").is_err());
    }

    #[test]
    fn this_process_is_read_from_the_real_proc() {
        let me = Process::new(std::process::id()).unwrap();
        let before = me.cpu_time().unwrap();
        // Burn CPU until the tick counter has moved (wall time alone proves nothing on a
        // busy machine), within a bound.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after.ticks < before.ticks + 5 && start.elapsed() < Duration::from_secs(30) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = me.cpu_time().unwrap();
        }
        assert!(after.ticks >= before.ticks + 5, "{before:?} → {after:?}");
        let cpu = me.elapsed(before, after);
        assert!(
            cpu >= Duration::from_millis(5) && cpu < Duration::from_secs(30),
            "{cpu:?}"
        );
        assert!(me.peak_rss_kib().unwrap() > 100);
        let usage = me.usage(before, 10).unwrap();
        assert_eq!(usage.pid, std::process::id());
        assert!(usage.cpu_us_per_exchange > 0.0);
    }

    #[test]
    fn a_process_that_does_not_exist_is_a_read_error() {
        // Above the kernel's pid_max (at most 2^22).
        assert!(matches!(
            Process::new(u32::MAX),
            Err(UsageError::Read { .. })
        ));
    }
}
