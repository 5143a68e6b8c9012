//! The whole run against a registry held in a small table (a [`Verifier`] of the tests, not
//! the gateway): every reason on a hand-made file checked against the expected files exactly,
//! interruptions at any point resumed to the same bytes, overloaded answers ridden out.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::names::{NameMatch, compare};

use super::verify::{Check, Citizenship, Item, NameVerdict, Verdict, VerifyError};
use super::*;

/// One person of the test registry.
struct Person {
    name: &'static str,
    birth_date: &'static str,
    sex: &'static str,
    citizenship: Citizenship,
    deceased: bool,
}

fn person(name: &'static str, birth_date: &'static str, sex: &'static str) -> Person {
    Person {
        name,
        birth_date,
        sex,
        citizenship: Citizenship::Wni,
        deceased: false,
    }
}

/// The registry behind the hand-made file: who is registered, as the civil registry holds them.
fn registered() -> Arc<People> {
    Arc::new(HashMap::from([
        (
            "3201011407950001",
            person("Budi Santoso", "1995-07-14", "M"),
        ),
        ("3201015507950002", person("Siti Aminah", "1995-07-15", "F")),
        (
            "3201010101800003",
            Person {
                deceased: true,
                ..person("Agus Salim", "1980-01-01", "M")
            },
        ),
        (
            "3201010202850004",
            Person {
                citizenship: Citizenship::Wna,
                ..person("John Smith", "1985-02-02", "M")
            },
        ),
        (
            "3201010303900005",
            person("Dewi Lestari", "1990-03-03", "F"),
        ),
        ("3201010404920006", person("Joko Widodo", "1992-04-04", "M")),
        ("3201015402070007", person("Putri Ayu", "2007-02-14", "F")),
        (
            "3201011502070008",
            person("Rizky Pratama", "2007-02-15", "M"),
        ),
        (
            "3201014606880010",
            person("Siti Rahmawati", "1988-06-06", "F"),
        ),
        (
            "3201010707870011",
            person("Bambang Susilo", "1987-07-07", "M"),
        ),
    ]))
}

/// The registry's people by NIK.
type People = HashMap<&'static str, Person>;

/// A registry answering as `identity.verify`'s provider does, from a table; the failures in
/// `faults` are answered first, one per call, and after `stall_after` answers it answers
/// no more (the call never ends).
struct TableRegistry {
    people: Arc<People>,
    faults: Mutex<VecDeque<VerifyError>>,
    calls: AtomicUsize,
    answered: AtomicUsize,
    stall_after: Option<usize>,
    sent: Mutex<Vec<Item>>,
}

impl TableRegistry {
    fn new(people: Arc<People>) -> Self {
        TableRegistry {
            people,
            faults: Mutex::new(VecDeque::new()),
            calls: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            stall_after: None,
            sent: Mutex::new(Vec::new()),
        }
    }

    fn verdict(&self, item: &Item) -> Verdict {
        let nik_valid = contracts::nik::check(&item.nik).is_ok();
        let found = self.people.get(item.nik.as_str()).filter(|_| nik_valid);
        let check =
            |reported: &Option<String>, registered: Option<&str>| match (reported, registered) {
                (Some(r), Some(g)) if r == g => Check::Match,
                (Some(_), Some(_)) => Check::Mismatch,
                _ => Check::NotChecked,
            };
        let (name, name_similarity) = match (&item.full_name, found) {
            (Some(reported), Some(p)) => match compare(reported, p.name) {
                NameMatch::Match => (NameVerdict::Match, Some(1.0)),
                NameMatch::Close(s) => (NameVerdict::Close, Some((s * 1000.0).round() / 1000.0)),
                NameMatch::Mismatch(s) => {
                    (NameVerdict::Mismatch, Some((s * 1000.0).round() / 1000.0))
                }
            },
            _ => (NameVerdict::NotChecked, None),
        };
        Verdict {
            reference: item.reference.clone(),
            nik_valid,
            found: found.is_some(),
            name,
            name_similarity,
            birth_date: check(&item.birth_date, found.map(|p| p.birth_date)),
            sex: check(&item.sex, found.map(|p| p.sex)),
            citizenship: found.map_or(Citizenship::Unknown, |p| p.citizenship),
            deceased: found.is_some_and(|p| p.deceased),
        }
    }
}

impl Verifier for TableRegistry {
    async fn verify(&self, items: &[Item]) -> Result<Vec<Verdict>, VerifyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = self.faults.lock().unwrap().pop_front();
        if let Some(fault) = fault {
            return Err(fault);
        }
        if let Some(limit) = self.stall_after
            && self.answered.fetch_add(1, Ordering::SeqCst) >= limit
        {
            std::future::pending::<()>().await;
        }
        // A little time in flight, so batches overlap as they do over the network.
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.sent.lock().unwrap().extend(items.iter().cloned());
        Ok(items.iter().map(|i| self.verdict(i)).collect())
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/cleanse")
        .join(name)
}

fn quick() -> Pacing {
    Pacing {
        start: 2,
        max: 4,
        max_attempts: 8,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    }
}

/// A plan reading `input`, writing `out.csv`, `rejects.csv` and `summary.json` in `dir`.
fn plan(dir: &Path, input: &Path, batch_size: usize) -> Plan {
    Plan {
        input: input.to_owned(),
        outputs: Outputs {
            cleansed: dir.join("out.csv"),
            rejects: dir.join("rejects.csv"),
            summary: dir.join("summary.json"),
        },
        work_dir: dir.join("out.csv.work"),
        resume: false,
        keep_work: false,
        columns: ColumnNames {
            nik: None,
            name: None,
            birth_date: None,
            sex: None,
            reported_on: None,
        },
        batch_size,
        age: Some(AgeAt {
            age: 17,
            on: Date::parse("2024-02-14").unwrap(),
        }),
        pacing: quick(),
        load_chunk: 50,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The three files of a finished run.
fn files(plan: &Plan) -> [String; 3] {
    let o = &plan.outputs;
    [read(&o.cleansed), read(&o.rejects), read(&o.summary)]
}

/// A whole run against the in-test registry of [`registered`], quietly.
async fn cleanse_against_the_table(plan: &Plan) -> Result<Summary, CleanseError> {
    cleanse(
        plan,
        Arc::new(TableRegistry::new(registered())),
        &Progress::Quiet,
    )
    .await
}

#[tokio::test]
async fn the_hand_made_file_gives_every_reason_and_exactly_the_expected_files() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), &fixture("reports.csv"), 4);
    let registry = Arc::new(TableRegistry::new(registered()));
    let summary = cleanse(&plan, registry.clone(), &Progress::Quiet)
        .await
        .unwrap();
    let [cleansed, rejects, json] = files(&plan);
    assert_eq!(cleansed, read(&fixture("expected-cleansed.csv")));
    assert_eq!(rejects, read(&fixture("expected-rejects.csv")));
    assert_eq!(json, read(&fixture("expected-summary.json")));
    assert_eq!(summary.table(&plan.outputs), {
        let table = read(&fixture("expected-table.txt"));
        table.replace("{dir}", &dir.path().display().to_string())
    });
    // Every reason is there.
    for reason in classify::Reason::ALL {
        assert!(summary.reasons.get(reason) > 0, "{}", reason.as_str());
    }
    // The work directory is gone after a completed run.
    assert!(!plan.work_dir.exists());
}

#[tokio::test]
async fn only_the_kept_rows_with_a_well_formed_nik_are_sent_with_their_line_as_ref() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), &fixture("reports.csv"), 4);
    let registry = Arc::new(TableRegistry::new(registered()));
    cleanse(&plan, registry.clone(), &Progress::Quiet)
        .await
        .unwrap();
    let mut sent = registry.sent.lock().unwrap().clone();
    sent.sort_by_key(|i| i.reference.parse::<u64>().unwrap());
    let refs: Vec<&str> = sent.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(
        refs,
        [
            "3", "4", "5", "7", "8", "9", "10", "11", "12", "13", "16", "18"
        ]
    );
    // Row 3 as read: the name as written, the date and the sex in the contract's forms.
    assert_eq!(
        sent[0],
        Item {
            reference: "3".into(),
            nik: "3201011407950001".into(),
            full_name: Some("Budi Santoso, S.Kom.".into()),
            birth_date: Some("1995-07-14".into()),
            sex: Some("M".into()),
        }
    );
    // Row 18: no birth date was written, so none is sent.
    assert_eq!(
        sent[11],
        Item {
            reference: "18".into(),
            nik: "3201010707870011".into(),
            full_name: Some("Bambang  Susilo".into()),
            birth_date: None,
            sex: Some("M".into()),
        }
    );
    // Three batches of at most four rows.
    assert_eq!(registry.calls.load(Ordering::SeqCst), 3);
}

/// A file of `rows` self-reports built from the registry and a deterministic stream of
/// mistakes: duplicates, mistyped NIKs, other names, missing values.
fn generated(dir: &Path, rows: usize) -> (PathBuf, Arc<People>) {
    const NAMES: &[&str] = &[
        "Budi Santoso",
        "Siti Aminah",
        "Agus Salim",
        "Dewi Lestari",
        "Joko Susilo",
        "Putri Ayu",
        "Rizky Pratama",
        "Wahyu Hidayat",
    ];
    let mut people = HashMap::new();
    let mut text = String::from("No,NIK,Name,Birth_Date,Sex,Reported_On\n");
    let mut rng = Lcg(7);
    let niks: Vec<&'static str> = (0..rows / 3)
        .map(|i| {
            let nik: &'static str = Box::leak(
                format!(
                    "32010{}{:02}0{}9{}{:04}",
                    1 + i % 9,
                    1 + i % 28,
                    1 + i % 9,
                    i % 10,
                    1 + i
                )
                .into_boxed_str(),
            );
            nik
        })
        .collect();
    for (i, nik) in niks.iter().enumerate() {
        let name = NAMES[i % NAMES.len()];
        let birth = format!("19{}-0{}-{:02}", 90 + i % 10, 1 + i % 9, 1 + i % 28);
        let birth: &'static str = Box::leak(birth.into_boxed_str());
        if i % 11 != 0 {
            people.insert(
                *nik,
                Person {
                    deceased: i % 13 == 0,
                    citizenship: if i % 17 == 0 {
                        Citizenship::Wna
                    } else {
                        Citizenship::Wni
                    },
                    ..person(name, birth, if i % 2 == 0 { "M" } else { "F" })
                },
            );
        }
    }
    for line in 0..rows {
        let i = rng.below(niks.len());
        let nik = niks[i];
        let p = people.get(nik);
        let mut nik = nik.to_owned();
        match rng.below(10) {
            0 => nik.truncate(15),
            1 => nik.replace_range(15..16, "7"),
            _ => {}
        }
        let name = match rng.below(8) {
            0 => "Orang Lain".to_owned(),
            1 => String::new(),
            _ => p.map_or(NAMES[i % NAMES.len()], |p| p.name).to_owned(),
        };
        let birth = match rng.below(9) {
            0 => String::new(),
            1 => "31/02/1990".to_owned(),
            _ => p.map_or("1990-01-01", |p| p.birth_date).to_owned(),
        };
        let sex = ["M", "F", "L", "P", "", "x"][rng.below(6)];
        let reported = match rng.below(5) {
            0 => String::new(),
            d => format!("2024-0{d}-1{}", rng.below(10)),
        };
        text.push_str(&format!(
            "{line},{nik},\"{name}\",{birth},{sex},{reported}\n"
        ));
    }
    let path = dir.join("generated.csv");
    std::fs::write(&path, text).unwrap();
    (path, Arc::new(people))
}

/// A small deterministic random stream.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[tokio::test]
async fn a_run_interrupted_anywhere_any_number_of_times_and_resumed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (input, people) = generated(dir.path(), 600);
    let straight_dir = dir.path().join("straight");
    std::fs::create_dir(&straight_dir).unwrap();
    let straight = plan(&straight_dir, &input, 7);
    cleanse(
        &straight,
        Arc::new(TableRegistry::new(people.clone())),
        &Progress::Quiet,
    )
    .await
    .unwrap();
    let expected = files(&straight);

    let mut rng = Lcg(42);
    for round in 0..3 {
        let resumed_dir = dir.path().join(format!("resumed-{round}"));
        std::fs::create_dir(&resumed_dir).unwrap();
        let mut resumed = plan(&resumed_dir, &input, 7);
        resumed.resume = true;
        let mut interruptions = 0;
        loop {
            let mut registry = TableRegistry::new(people.clone());
            // Stopped after a few batches (with others in flight), or at a moment anywhere
            // in the run: while loading, grouping, verifying or writing.
            if rng.below(2) == 0 {
                registry.stall_after = Some(1 + rng.below(4));
            }
            let moment = Duration::from_millis(1 + rng.below(40 + 30 * interruptions) as u64);
            let run = cleanse(&resumed, Arc::new(registry), &Progress::Quiet);
            match tokio::time::timeout(moment, run).await {
                Ok(done) => {
                    done.unwrap();
                    break;
                }
                Err(_) => interruptions += 1,
            }
            assert!(interruptions < 200, "the run never finished");
        }
        assert!(interruptions > 0, "round {round} was never interrupted");
        assert_eq!(
            files(&resumed),
            expected,
            "round {round}: {interruptions} interruptions"
        );
        assert!(!resumed.work_dir.exists());
    }
}

#[tokio::test]
async fn overloaded_answers_part_way_are_retried_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let straight = plan(dir.path(), &fixture("reports.csv"), 2);
    cleanse(
        &straight,
        Arc::new(TableRegistry::new(registered())),
        &Progress::Quiet,
    )
    .await
    .unwrap();
    let expected = files(&straight);

    let other = dir.path().join("overloaded");
    std::fs::create_dir(&other).unwrap();
    let plan = plan(&other, &fixture("reports.csv"), 2);
    let registry = TableRegistry::new(registered());
    let throttled = || VerifyError::Throttled {
        retry_after: Some(Duration::from_millis(5)),
        detail: "429 subsystem-rate-limited".into(),
    };
    let unavailable = || VerifyError::Unavailable {
        retry_after: None,
        detail: "503 provider-unavailable".into(),
    };
    registry.faults.lock().unwrap().extend([
        throttled(),
        unavailable(),
        throttled(),
        unavailable(),
        unavailable(),
    ]);
    let registry = Arc::new(registry);
    cleanse(&plan, registry.clone(), &Progress::Quiet)
        .await
        .unwrap();
    assert_eq!(files(&plan), expected);
    // Six batches answered, after five refusals.
    assert_eq!(registry.calls.load(Ordering::SeqCst), 6 + 5);
}

#[tokio::test]
async fn a_batch_never_answered_fails_the_run_and_a_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path(), &fixture("reports.csv"), 4);
    let registry = TableRegistry::new(registered());
    registry.faults.lock().unwrap().extend(
        std::iter::repeat_with(|| VerifyError::Unavailable {
            retry_after: None,
            detail: "503 provider-unavailable: Provider unavailable: down".into(),
        })
        .take(100),
    );
    let err = cleanse(&plan, Arc::new(registry), &Progress::Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no answer after 8 attempts")
            && err.contains("provider-unavailable")
            && err.contains("--resume"),
        "{err}"
    );
    assert!(!plan.outputs.cleansed.exists());
    plan.resume = true;
    cleanse_against_the_table(&plan).await.unwrap();
    assert_eq!(files(&plan)[0], read(&fixture("expected-cleansed.csv")));
}

#[tokio::test]
async fn a_refused_batch_fails_the_run_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), &fixture("reports.csv"), 4);
    let registry = TableRegistry::new(registered());
    registry
        .faults
        .lock()
        .unwrap()
        .push_back(VerifyError::Refused {
            detail: "403 not-granted: Subsystem not granted: ID:GOV:KEMLU:PEDULI-WNI".into(),
        });
    let err = cleanse(&plan, Arc::new(registry), &Progress::Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("identity.verify, the batch of rows") && err.contains("403 not-granted"),
        "{err}"
    );
}

/// A person whose most recent report has a mistyped NIK is kept under the NIK the registry
/// confirms, not rejected with their good rows as duplicates of the bad one.
#[tokio::test]
async fn a_probable_duplicate_is_kept_under_the_nik_the_registry_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("typo.csv");
    std::fs::write(
        &input,
        "nik,full_name,birth_date,sex,reported_on\n\
         3201015507950002,Siti Aminah,1995-07-15,F,2023-01-01\n\
         3201015507950092,SITI AMINAH,1995-07-15,F,2024-06-01\n\
         3201015507950093,Siti Aminah,1995-07-15,F,2024-01-01\n",
    )
    .unwrap();
    let plan = plan(dir.path(), &input, 4);
    let summary = cleanse_against_the_table(&plan).await.unwrap();
    let [cleansed, rejects, _] = files(&plan);
    assert_eq!(
        cleansed,
        "nik,full_name,birth_date,sex,reported_on\n3201015507950002,Siti Aminah,1995-07-15,F,2023-01-01\n"
    );
    assert!(
        rejects.contains("3201015507950092,SITI AMINAH,1995-07-15,F,2024-06-01,duplicate,\"duplicate of row 2 (same name and birth date, another NIK)\""),
        "{rejects}"
    );
    assert_eq!(summary.reasons.get(classify::Reason::Duplicate), 2);
    // Every NIK of the person was asked about, once.
    assert_eq!(summary.verified, 3);
}

#[tokio::test]
async fn a_work_directory_is_refused_without_resume_and_for_another_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path(), &fixture("reports.csv"), 4);
    plan.keep_work = true;
    cleanse_against_the_table(&plan).await.unwrap();
    assert!(plan.work_dir.join("work.db").exists());
    let err = cleanse_against_the_table(&plan)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--resume") && err.contains("out.csv.work"),
        "{err}"
    );
    // Another input against the same work directory.
    let other = dir.path().join("other.csv");
    let mut text = read(&fixture("reports.csv"));
    text.push_str("3201011407950001,Budi,,,,\n");
    std::fs::write(&other, text).unwrap();
    plan.input = other;
    plan.resume = true;
    let err = cleanse_against_the_table(&plan)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another input") && err.contains("SHA-256"),
        "{err}"
    );
}

#[tokio::test]
async fn resume_without_a_work_directory_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path(), &fixture("reports.csv"), 4);
    plan.resume = true;
    cleanse_against_the_table(&plan).await.unwrap();
    assert_eq!(files(&plan)[0], read(&fixture("expected-cleansed.csv")));
}

#[tokio::test]
async fn a_work_directory_of_your_own_keeps_its_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path(), &fixture("reports.csv"), 4);
    plan.work_dir = dir.path().join("mine");
    std::fs::create_dir(&plan.work_dir).unwrap();
    std::fs::write(plan.work_dir.join("notes.txt"), "keep me").unwrap();
    plan.resume = true;
    cleanse_against_the_table(&plan).await.unwrap();
    let left: Vec<String> = std::fs::read_dir(&plan.work_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"]);
}

#[tokio::test]
async fn an_output_named_as_the_input_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("reports.csv");
    std::fs::copy(fixture("reports.csv"), &input).unwrap();
    let mut plan = plan(dir.path(), &input, 4);
    plan.outputs.rejects = input.clone();
    let err = cleanse_against_the_table(&plan)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("reports.csv") && err.contains("the input and as --rejects"),
        "{err}"
    );
    assert_eq!(read(&input), read(&fixture("reports.csv")));
    assert!(!plan.work_dir.exists());
}
