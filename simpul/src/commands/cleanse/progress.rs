//! How far a run has come, on standard error: a progress bar with rate and time left on a
//! terminal, a plain line every few seconds elsewhere (a log file, a CI job), nothing in tests.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// The bar of a step whose rows are counted in advance.
const BAR: &str = "{prefix:>6} [{bar:30}] {pos}/{len} rows, {rate}, {eta} left";
/// The bar of a step whose rows are not (reading the file, writing the outputs).
const SPINNER: &str = "{prefix:>6} {spinner} {pos} rows, {rate}";

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// An indicatif progress bar (standard error is a terminal).
    Bar,
    /// A plain line every `every` (standard error is a file or a pipe).
    Lines {
        /// Between two lines.
        every: Duration,
    },
    /// Nothing (the tests' runs).
    #[cfg(test)]
    Quiet,
}

impl Progress {
    /// A bar on a terminal, else a line every 5 seconds.
    pub fn for_stderr() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines {
                every: Duration::from_secs(5),
            }
        }
    }

    /// Runs `work`, a step whose rows are not counted as it goes (`group`, `choose`), with a
    /// line saying what it does before and how long it took after.
    pub async fn timed<T>(
        &self,
        step: &'static str,
        what: &str,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let shown = match self {
            Progress::Bar | Progress::Lines { .. } => true,
            #[cfg(test)]
            Progress::Quiet => false,
        };
        if shown {
            eprintln!("{step}: {what}");
        }
        let started = Instant::now();
        let out = work.await;
        if shown {
            eprintln!("{step}: done in {:.1} s", started.elapsed().as_secs_f64());
        }
        out
    }

    /// A meter of the step `step` (`load`, `verify`, `write`), counting rows: `total` when
    /// known, `done` already before this run.
    pub fn meter(&self, step: &'static str, total: Option<u64>, done: u64) -> Meter {
        let bar = match self {
            Progress::Bar => {
                let template = match total {
                    Some(_) => BAR,
                    None => SPINNER,
                };
                let style = ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .with_key(
                        "rate",
                        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.0} rows/s", state.per_sec());
                        },
                    )
                    .progress_chars("=> ");
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
                    .with_style(style)
                    .with_prefix(step)
                    .with_position(done);
                // The rate and time left count this run's rows only.
                bar.reset_eta();
                Some(bar)
            }
            _ => None,
        };
        let now = Instant::now();
        Meter {
            step,
            total,
            done,
            this_run: 0,
            started: now,
            last_line: now,
            every: match self {
                Progress::Lines { every } => Some(*every),
                _ => None,
            },
            bar,
        }
    }
}

/// The progress of one step.
pub struct Meter {
    step: &'static str,
    total: Option<u64>,
    done: u64,
    this_run: u64,
    started: Instant,
    last_line: Instant,
    every: Option<Duration>,
    bar: Option<ProgressBar>,
}

impl Meter {
    /// `rows` more are done.
    pub fn advance(&mut self, rows: u64) {
        self.done += rows;
        self.this_run += rows;
        if let Some(bar) = &self.bar {
            bar.inc(rows);
        }
        self.tick();
    }

    /// Writes a line if one is due.
    pub fn tick(&mut self) {
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if now.duration_since(self.last_line) >= every {
            self.last_line = now;
            eprintln!("{}", self.line(now));
        }
    }

    /// The step is over.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.every.is_some() && self.this_run > 0 {
            eprintln!("{}", self.line(Instant::now()));
        }
    }

    /// `verify: 12000 of 50000 rows (24%), 812 rows/s, about 47 s left`.
    fn line(&self, now: Instant) -> String {
        let secs = now.duration_since(self.started).as_secs_f64().max(0.001);
        let rate = self.this_run as f64 / secs;
        let mut line = format!("{}: {}", self.step, self.done);
        if let Some(total) = self.total {
            let percent = (self.done * 100).checked_div(total).unwrap_or(100);
            line.push_str(&format!(" of {total} rows ({percent}%)"));
        } else {
            line.push_str(" rows");
        }
        line.push_str(&format!(", {rate:.0} rows/s"));
        if let Some(total) = self.total
            && rate > 0.0
            && self.done < total
        {
            let left = (total - self.done) as f64 / rate;
            line.push_str(&format!(", about {left:.0} s left"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bars_templates_are_indicatifs() {
        for template in [BAR, SPINNER] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn a_plain_line_gives_the_rows_the_rate_and_the_time_left() {
        let mut meter = Progress::Lines {
            every: Duration::from_secs(3600),
        }
        .meter("verify", Some(1000), 200);
        meter.advance(300);
        let later = meter.started + Duration::from_secs(10);
        assert_eq!(
            meter.line(later),
            "verify: 500 of 1000 rows (50%), 30 rows/s, about 17 s left"
        );
        let mut meter = Progress::Lines {
            every: Duration::from_secs(3600),
        }
        .meter("load", None, 0);
        meter.advance(5000);
        assert_eq!(
            meter.line(meter.started + Duration::from_secs(2)),
            "load: 5000 rows, 2500 rows/s"
        );
    }
}
