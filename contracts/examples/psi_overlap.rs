//! One whole overlap count (`contracts::psi`) in one process: A asks with N identifiers, B
//! answers with N, a share of them on both lists; every list goes through frames. Prints each
//! side's wall and CPU time, step by step, and the bytes each way.
//!
//! ```sh
//! cargo run --release -p simpul-contracts --example psi_overlap -- [N] [overlap %] [groups]
//! ```
//!
//! Defaults: 1,000,000 identifiers each, 30 % overlap, one group. The sides run one after the
//! other, each with all the machine's cores, so a side's time is what it would take on a
//! machine of its own (B may blind its set while A blinds its groups; that is not overlapped
//! here). CPU time is the process's (Linux's `/proc/self/stat`).

use std::time::{Duration, Instant};

use contracts::psi::{
    BlindingKey, DEFAULT_FRAME_BYTES, DIGEST_LEN, Digest, Limits, ListKind, ListReader, PsiError,
    Query, Reblinder, blind, frames,
};

/// One side's clock.
struct Side {
    name: &'static str,
    steps: Vec<(String, Duration, Option<Duration>)>,
}

impl Side {
    fn new(name: &'static str) -> Self {
        Side {
            name,
            steps: Vec::new(),
        }
    }

    /// Runs one step of the side's work, timing it.
    fn step<T>(&mut self, what: impl Into<String>, work: impl FnOnce() -> T) -> T {
        let (cpu, wall) = (cpu_time(), Instant::now());
        let out = work();
        let wall = wall.elapsed();
        let cpu = cpu
            .zip(cpu_time())
            .map(|(before, after)| after.saturating_sub(before));
        self.steps.push((what.into(), wall, cpu));
        out
    }

    fn print(&self) {
        let wall: Duration = self.steps.iter().map(|s| s.1).sum();
        let cpu: Option<Duration> = self.steps.iter().map(|s| s.2).sum();
        println!(
            "{}: wall {:.2} s, CPU {}",
            self.name,
            wall.as_secs_f64(),
            seconds(cpu)
        );
        for (what, wall, cpu) in &self.steps {
            println!(
                "  {what:<44} wall {:>6.2} s  CPU {}",
                wall.as_secs_f64(),
                seconds(*cpu)
            );
        }
    }
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// The process's user and system CPU time so far: fields 14 and 15 of `/proc/self/stat`, in
/// clock ticks of 1/100 s (USER_HZ, 100 on Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command's name, in parentheses, come the fields from the third on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn nik(n: u64) -> String {
    format!("{:016}", 3_171_000_000_000_000 + n)
}

/// Reads one list's frames: the records, checked, in order.
fn receive(
    kind: ListKind,
    list: u32,
    sent: &[Vec<u8>],
    limits: &Limits,
    mut each: impl FnMut(&[u8]) -> Result<(), PsiError>,
) -> Result<(), PsiError> {
    let mut reader = ListReader::new(kind, list, limits);
    for frame in sent {
        each(reader.read(frame)?)?;
    }
    reader.finish().map(|_| ())
}

fn cut(kind: ListKind, list: u32, records: &[u8]) -> Result<Vec<Vec<u8>>, PsiError> {
    Ok(frames(kind, list, records, DEFAULT_FRAME_BYTES)?.collect())
}

fn bytes(lists: &[Vec<Vec<u8>>]) -> (usize, usize) {
    let frames = lists.iter().map(Vec::len).sum();
    let bytes = lists.iter().flatten().map(Vec::len).sum();
    (bytes, frames)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let percent: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let groups: u64 = args.next().map_or(Ok(1), |a| a.parse())?;
    if percent > 100 || groups == 0 {
        return Err("usage: psi_overlap [N] [overlap % 0-100] [groups >= 1]".into());
    }
    let both = n * percent / 100;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    println!(
        "{n} x {n} identifiers, {both} on both lists ({percent} %), {groups} group(s), \
         {threads} threads, frames of at most {DEFAULT_FRAME_BYTES} bytes"
    );

    // The lists: A's numbers 0..n, B's from where the overlap begins; A labels by n % groups.
    let labels: Vec<String> = (0..groups).map(|g| format!("G{g}")).collect();
    let a_rows: Vec<(&str, String)> = (0..n)
        .map(|i| (labels[(i % groups) as usize].as_str(), nik(i)))
        .collect();
    let b_ids: Vec<String> = (n - both..2 * n - both).map(nik).collect();
    let limits = Limits::default();
    let context = b"example run: psi_overlap";
    let (mut a, mut b) = (Side::new("A (asks)"), Side::new("B (answers)"));

    // A: blinds its groups and sends them.
    let alpha = BlindingKey::generate()?;
    let query = a.step(
        format!("blind {n} identifiers in {groups} group(s)"),
        || Query::blind(&alpha, context, a_rows, &limits),
    )?;
    let to_b = a.step("frame the groups", || {
        (0u32..)
            .zip(query.lists())
            .map(|(list, points)| cut(ListKind::Points, list, points.as_flattened()))
            .collect::<Result<Vec<_>, _>>()
    })?;

    // B: re-blinds each group into sorted digests, blinds its own set.
    let beta = BlindingKey::generate()?;
    limits.check_groups(to_b.len())?;
    let answers = b.step("re-blind A's groups (read, check, digest, sort)", || {
        (0u32..)
            .zip(&to_b)
            .map(|(list, sent)| {
                let mut reblinder = Reblinder::new(&beta, list, &limits);
                receive(ListKind::Points, list, sent, &limits, |records| {
                    reblinder.push(records)
                })?;
                reblinder.finish()
            })
            .collect::<Result<Vec<_>, PsiError>>()
    })?;
    let mut to_a = b.step("frame the answers", || {
        (0u32..)
            .zip(&answers)
            .map(|(list, digests)| cut(ListKind::Digests, list, digests.as_flattened()))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let theirs = b.step(format!("blind its {n} identifiers"), || {
        blind(&beta, context, &b_ids)
    });
    let set = b.step("frame its set", || {
        cut(ListKind::Points, 0, theirs.as_flattened())
    })?;
    drop((answers, theirs, beta));

    // A: re-blinds B's set and counts each group's answer against it.
    let theirs = a.step("re-blind B's set (read, check, digest, sort)", || {
        let mut reblinder = Reblinder::new(&alpha, 0, &limits);
        receive(ListKind::Points, 0, &set, &limits, |records| {
            reblinder.push(records)
        })?;
        reblinder.finish()
    })?;
    let overlap = a.step("read the answers and count", || {
        let answers = (0u32..)
            .zip(&to_a)
            .map(|(list, sent)| {
                let mut digests: Vec<Digest> = Vec::new();
                receive(ListKind::Digests, list, sent, &limits, |records| {
                    let (records, rest) = records.as_chunks::<DIGEST_LEN>();
                    debug_assert!(rest.is_empty(), "the reader gives whole records");
                    digests.extend_from_slice(records);
                    Ok(())
                })?;
                Ok(digests)
            })
            .collect::<Result<Vec<_>, PsiError>>()?;
        query.overlap(&answers, &theirs)
    })?;

    a.print();
    b.print();
    let (a_bytes, a_frames) = bytes(&to_b);
    to_a.push(set);
    let (b_bytes, b_frames) = bytes(&to_a);
    println!("A -> B: {a_bytes} bytes in {a_frames} frames");
    println!("B -> A: {b_bytes} bytes in {b_frames} frames");
    println!("on the wire: {:.1} MB", (a_bytes + b_bytes) as f64 / 1e6);
    for g in &overlap.groups {
        println!(
            "  group {:<6} {:>9} identifiers, overlap {}",
            g.label, g.size, g.overlap
        );
    }
    println!(
        "overlap counted: {} (true: {both}); B's set: {}",
        overlap.total(),
        overlap.theirs
    );
    if overlap.total() as u64 != both {
        return Err("the count is wrong".into());
    }
    Ok(())
}
