//! Self-reports of citizens abroad at the seed's scale (issue #15): a CSV of any size drawn
//! from a seeded civil registry, as messy as Portal Peduli WNI's — re-reports, mistyped and
//! broken NIKs, NIKs nobody holds, other people's names, wrong birth dates, foreigners and
//! the deceased — for `simpul cleanse` to work through.
//!
//! The registry is read, never loaded whole: row `k`'s person is the resident at a
//! pseudo-random permutation of the registry's rowids ([`Permutation`]), fetched in chunks,
//! so a re-report of an earlier person needs no memory of who came before, and memory stays
//! flat at any size. Deterministic from the seed and the registry: the same two give
//! byte-identical files.

use std::io::Write;
use std::path::{Path, PathBuf};

use sqlx::{ConnectOptions, Row, SqliteConnection};

use super::people::corrupt_nik;
use super::*;

/// The rows the seed's portal held: 2,406,163 self-reports.
pub const SEED_ROWS: u64 = 2_406_163;

/// What each row of the file is, in shares of the rows (the rest report a new person
/// truthfully, give or take how they typed their name). With the registry's own foreigners
/// (about 1 %) and deceased (0.7 %) among the truthful, about three quarters of the rows
/// survive cleansing, as 1,806,714 of 2,406,163 did.
const MIX: [(Kind, u32); 7] = [
    (Kind::Truthful, 7_750),
    (Kind::Again, 1_000),
    (Kind::Typo, 350),
    (Kind::Broken, 300),
    (Kind::Nobody, 250),
    (Kind::OtherName, 200),
    (Kind::WrongBirth, 150),
];

/// How a row came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A new person, as the registry has them (the name typed as people type it).
    Truthful,
    /// An earlier person reporting again, later, with the same NIK.
    Again,
    /// An earlier person reporting again with one digit of the NIK mistyped.
    Typo,
    /// A new person whose NIK breaks the NIK rule.
    Broken,
    /// A well-formed NIK that nobody holds.
    Nobody,
    /// A new person's NIK with someone else's name.
    OtherName,
    /// A new person with a birth date a few days to years off.
    WrongBirth,
}

/// The header of the file.
pub const HEADER: &str = "nik,full_name,birth_date,sex,reported_on,country,city";

/// Why the file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelfReportError {
    /// The registry could not be read.
    #[error("cannot read the civil registry {}: {source}", path.display())]
    Registry {
        /// The registry's SQLite file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The registry holds too few people for the rows asked.
    #[error("the civil registry {} holds {held} residents; {rows} self-reports need at least {needed}: seed a larger one ([data] people in config.toml)", path.display())]
    TooSmall {
        /// The registry's SQLite file.
        path: PathBuf,
        /// Residents held.
        held: u64,
        /// Rows asked for.
        rows: u64,
        /// Residents those rows draw on.
        needed: u64,
    },
    /// The file could not be written.
    #[error("cannot write the self-reports: {0}")]
    Write(#[from] std::io::Error),
}

/// How many rows of each kind were written: what cleansing should find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelfReportMix {
    /// Rows written.
    pub rows: u64,
    /// Distinct registry people drawn.
    pub people: u64,
    /// Re-reports with the same NIK.
    pub again: u64,
    /// Re-reports with a mistyped NIK.
    pub typo: u64,
    /// NIKs that break the rule.
    pub broken: u64,
    /// Well-formed NIKs nobody holds.
    pub nobody: u64,
    /// Someone else's name.
    pub other_name: u64,
    /// A birth date off.
    pub wrong_birth: u64,
}

/// A bijection of `0..n` (an affine map modulo `n` with a multiplier prime to it): row `k`'s
/// person, without remembering the rows before.
struct Permutation {
    n: u64,
    a: u64,
    c: u64,
}

impl Permutation {
    fn new(n: u64, rng: &mut SplitMix64) -> Self {
        let gcd = |mut x: u64, mut y: u64| {
            while y != 0 {
                (x, y) = (y, x % y);
            }
            x
        };
        let mut a = (rng.next_u64() % n.max(2)) | 1;
        while gcd(a, n) != 1 {
            a = (a + 2) % n.max(2);
        }
        Permutation {
            n,
            a,
            c: rng.below(n.max(1)),
        }
    }

    fn at(&self, k: u64) -> u64 {
        ((u128::from(self.a) * u128::from(k % self.n) + u128::from(self.c)) % u128::from(self.n))
            as u64
    }
}

/// One row planned before its people are read.
struct Planned {
    kind: Kind,
    /// Index (into the registry order) of the person whose NIK, sex and birth date it uses.
    person: u64,
    /// For [`Kind::OtherName`], the person whose name it gives.
    other: u64,
}

/// A resident as the registry has them.
struct Resident {
    nik: String,
    full_name: String,
    birth_date: String,
    sex: String,
}

/// Writes `rows` self-reports drawn from the residents of the SQLite civil registry at
/// `registry` (the demo's `residents` table), deterministic from `seed`, to `out` with a
/// header line; `progress` hears the rows written so far, every chunk.
pub async fn write_self_reports(
    registry: &Path,
    seed: u64,
    rows: u64,
    out: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> Result<SelfReportMix, SelfReportError> {
    let failed = |source| SelfReportError::Registry {
        path: registry.to_owned(),
        source,
    };
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(registry)
        .read_only(true)
        .connect()
        .await
        .map_err(failed)?;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM residents")
        .fetch_one(&mut db)
        .await
        .map_err(failed)?;
    let held = u64::try_from(held).unwrap_or(0);
    // New people are the truthful and the four kinds of new rows: about 90 % of the rows.
    let new_share: u32 = MIX
        .iter()
        .filter(|(k, _)| !matches!(k, Kind::Again | Kind::Typo))
        .map(|(_, w)| w)
        .sum();
    let needed = rows * u64::from(new_share) / 10_000 + 1_000;
    if held < needed {
        return Err(SelfReportError::TooSmall {
            path: registry.to_owned(),
            held,
            rows,
            needed,
        });
    }
    let mut rng = SplitMix64::stream(seed, stream::SELF_REPORTS);
    let order = Permutation::new(held, &mut rng);
    let mut mix = SelfReportMix::default();
    writeln!(out, "{HEADER}")?;
    let mut written = 0;
    while written < rows {
        let chunk = (rows - written).min(450);
        let mut planned = Vec::with_capacity(chunk as usize);
        for _ in 0..chunk {
            let kind = rng.weighted(&MIX);
            let earlier = mix.people > 0 && matches!(kind, Kind::Again | Kind::Typo);
            let (kind, person) = if earlier {
                (kind, rng.below(mix.people))
            } else {
                // Nobody reported yet to report again: a new person instead.
                let kind = if matches!(kind, Kind::Again | Kind::Typo) {
                    Kind::Truthful
                } else {
                    kind
                };
                mix.people += 1;
                (kind, mix.people - 1)
            };
            let other = rng.below(held);
            planned.push(Planned {
                kind,
                person: order.at(person),
                other,
            });
        }
        let residents = read_residents(&mut db, &planned).await.map_err(failed)?;
        for p in &planned {
            let Some(who) = residents.get(&p.person) else {
                continue;
            };
            let mut nik = who.nik.clone();
            let mut name = typed_name(&mut rng, &who.full_name, who.sex == "F");
            let mut birth = who.birth_date.clone();
            match p.kind {
                Kind::Truthful => {}
                Kind::Again => mix.again += 1,
                Kind::Typo => {
                    nik = mistype(&mut rng, &nik);
                    mix.typo += 1;
                }
                Kind::Broken => {
                    nik = corrupt_nik(&mut rng, &nik, &std::collections::HashSet::new());
                    // The one-digit typo of `corrupt_nik` may be well-formed: break it for good.
                    if nik_is_valid(&nik) {
                        nik.push('0');
                    }
                    mix.broken += 1;
                }
                Kind::Nobody => {
                    // Regencies 31–70 are never given by the demo's registry (regencies
                    // are numbered 01–30, cities 71–79): well-formed, and nobody's.
                    nik = format!("{}{}{}", &nik[..2], 31 + rng.below(40), &nik[4..]);
                    mix.nobody += 1;
                }
                Kind::OtherName => {
                    if let Some(other) = residents.get(&p.other) {
                        name = other.full_name.clone();
                    }
                    mix.other_name += 1;
                }
                Kind::WrongBirth => {
                    birth = shifted(&mut rng, &birth);
                    mix.wrong_birth += 1;
                }
            }
            let reported = as_of().plus(-(rng.below(3 * 365) as i32));
            let country = rng.weighted(OTHER_COUNTRIES);
            let known = cities(country);
            let city = if known.is_empty() {
                String::new()
            } else {
                let c = rng.pick(known);
                messy_city(&mut rng, c)
            };
            let birth = written_as_people_do(&mut rng, &birth);
            writeln!(
                out,
                "{},{},{},{},{},{},{}",
                field(&nik),
                field(&name),
                field(&birth),
                field(&who.sex),
                reported,
                country,
                field(&city)
            )?;
            written += 1;
            mix.rows += 1;
        }
        progress(written);
    }
    out.flush()?;
    Ok(mix)
}

/// The residents at the given registry positions (rowid − 1), in one statement per chunk.
async fn read_residents(
    db: &mut SqliteConnection,
    planned: &[Planned],
) -> Result<std::collections::HashMap<u64, Resident>, sqlx::Error> {
    let mut wanted: Vec<u64> = planned.iter().flat_map(|p| [p.person, p.other]).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let marks = vec!["?"; wanted.len()].join(",");
    let sql = format!(
        "SELECT rowid, nik, full_name, birth_date, sex FROM residents WHERE rowid IN ({marks})"
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for w in &wanted {
        q = q.bind(i64::try_from(*w + 1).unwrap_or(i64::MAX));
    }
    let rows = q.fetch_all(&mut *db).await?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let rowid: i64 = row.try_get(0)?;
        out.insert(
            u64::try_from(rowid - 1).unwrap_or(u64::MAX),
            Resident {
                nik: row.try_get(1)?,
                full_name: row.try_get(2)?,
                birth_date: row.try_get(3)?,
                sex: row.try_get(4)?,
            },
        );
    }
    Ok(out)
}

/// A name as people type it on a form: mostly as registered, in capitals or lower case, now
/// and then with a title (`H.`, `Hj.`, `, S.Kom.`), in the old spelling (`dj`, `tj`, `oe`),
/// or only its first part — the variants the name rule of PROTOCOL.md §2.5 sets aside, and
/// a few it does not.
fn typed_name(rng: &mut SplitMix64, name: &str, female: bool) -> String {
    match rng.below(100) {
        0..55 => name.to_owned(),
        55..75 => name.to_uppercase(),
        75..85 => name.to_lowercase(),
        85..91 => match rng.below(3) {
            0 if female => format!("Hj. {name}"),
            0 => format!("H. {name}"),
            1 => format!("Drs. {name}"),
            _ => format!("{name}, S.Kom."),
        },
        91..97 => {
            let old = name.replacen('J', "Dj", 1).replacen('C', "Tj", 1);
            if old == name {
                name.replacen('u', "oe", 1)
            } else {
                old
            }
        }
        _ => match name.split_once(' ') {
            Some((first, _)) => first.to_owned(),
            None => name.to_owned(),
        },
    }
}

/// One digit of a well-formed NIK typed wrong, in the serial so the result is still
/// well-formed (the typo a form cannot catch).
fn mistype(rng: &mut SplitMix64, nik: &str) -> String {
    let mut digits: Vec<u8> = nik.bytes().collect();
    let at = 12 + rng.index(4);
    digits[at] = b'0' + ((digits[at] - b'0' + 1 + rng.below(9) as u8) % 10);
    if &digits[12..] == b"0000" {
        digits[15] = b'1';
    }
    String::from_utf8(digits).unwrap_or_else(|_| nik.to_owned())
}

/// A birth date a few days, months or years off.
fn shifted(rng: &mut SplitMix64, birth: &str) -> String {
    let Some(day) = parse_day(birth) else {
        return birth.to_owned();
    };
    let off = match rng.below(3) {
        0 => day.plus(1 + rng.below(20) as i32),
        1 => day.plus_months(1 + rng.below(11) as i32),
        _ => day.plus_years(-1 - rng.below(5) as i32),
    };
    off.to_string()
}

/// Most write ISO dates; some the day first, with dashes or slashes.
fn written_as_people_do(rng: &mut SplitMix64, birth: &str) -> String {
    let Some(day) = parse_day(birth) else {
        return birth.to_owned();
    };
    let (y, m, d) = day.ymd();
    match rng.below(10) {
        0 => format!("{d:02}-{m:02}-{y:04}"),
        1 => format!("{d:02}/{m:02}/{y:04}"),
        _ => day.to_string(),
    }
}

fn parse_day(text: &str) -> Option<Day> {
    let mut parts = text.splitn(3, '-');
    let y = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let d = parts.next()?.parse().ok()?;
    Some(Day::from_ymd(y, m, d))
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registry(dir: &Path, people: u32) -> PathBuf {
        let pop = generate(&SeedConfig {
            people,
            ..SeedConfig::default()
        });
        let path = dir.join("dukcapil.db");
        write_dataset(&pop, Dataset::Residents, &path)
            .await
            .unwrap();
        path
    }

    async fn residents(path: &Path) -> std::collections::HashSet<String> {
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar::<_, String>("SELECT nik FROM residents")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn the_same_seed_and_registry_give_the_same_bytes_and_the_stated_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = registry(dir.path(), 6_000).await;
        let mut a = Vec::new();
        let mix = write_self_reports(&path, 7, 4_000, &mut a, |_| {})
            .await
            .unwrap();
        let mut b = Vec::new();
        write_self_reports(&path, 7, 4_000, &mut b, |_| {})
            .await
            .unwrap();
        assert_eq!(a, b, "deterministic from the seed and the registry");
        let mut c = Vec::new();
        write_self_reports(&path, 8, 4_000, &mut c, |_| {})
            .await
            .unwrap();
        assert_ne!(a, c, "another seed, other rows");

        let text = String::from_utf8(a).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(HEADER));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 4_000);
        assert_eq!(mix.rows, 4_000);
        // Each kind near its share of 10,000 (within a third, at 4,000 rows).
        for (count, weight) in [
            (mix.again, 1_000),
            (mix.typo, 350),
            (mix.broken, 300),
            (mix.nobody, 250),
            (mix.other_name, 200),
            (mix.wrong_birth, 150),
        ] {
            let expected = 4_000 * weight / 10_000;
            assert!(
                count * 3 > expected * 2 && count * 3 < expected * 4,
                "{count} rows where about {expected} were due: {mix:?}"
            );
        }
        // The NIKs are what their kinds say: broken ones break the rule, and every
        // well-formed NIK outside the registry is one of the kinds that make them.
        let known = residents(&path).await;
        let niks: Vec<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
        let broken = niks.iter().filter(|n| !nik_is_valid(n)).count() as u64;
        assert_eq!(broken, mix.broken);
        let unknown = niks
            .iter()
            .filter(|n| nik_is_valid(n) && !known.contains(**n))
            .count() as u64;
        assert!(
            unknown >= mix.nobody && unknown <= mix.nobody + mix.typo,
            "{unknown} unknown NIKs: {mix:?}"
        );
    }

    #[tokio::test]
    async fn a_registry_too_small_for_the_rows_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = registry(dir.path(), 500).await;
        let err = write_self_reports(&path, 7, 10_000, &mut Vec::new(), |_| {})
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, SelfReportError::TooSmall { held: 500, .. })
                && text.contains("[data] people"),
            "{text}"
        );
    }

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(field("Budi Santoso, S.Kom."), "\"Budi Santoso, S.Kom.\"");
        assert_eq!(field("Nur \"Ani\""), "\"Nur \"\"Ani\"\"\"");
        assert_eq!(field("Siti"), "Siti");
    }

    #[test]
    fn the_permutation_visits_every_position_once() {
        for n in [1, 2, 10, 97, 1_000] {
            let mut rng = SplitMix64::stream(3, 9);
            let p = Permutation::new(n, &mut rng);
            let mut seen: Vec<u64> = (0..n).map(|k| p.at(k)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }
}
