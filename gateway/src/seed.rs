//! Synthetic data for the demo federation (`simpul up`).
//!
//! Four ministries hold overlapping records about the same people, the way real registries
//! do: Dukcapil registers every resident (NIK, name, birth date), BP2MI records migrant-worker
//! placements abroad, BPJS Ketenagakerjaan records insurance membership, and Kemlu's Peduli WNI
//! holds self-reported stays abroad, which are messy (duplicates, name variants, mistyped NIKs).
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

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// `[data]` section of config.toml: how many synthetic people the demo federation holds and
/// how their records overlap across the four ministries.
///
/// Every share is a fraction between 0 and 1 and is applied to the pool it names; counts are
/// rounded, so a share gives an exact, predictable number of rows.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SeedConfig {
    /// Seed of the deterministic generator: the same seed gives the same people everywhere.
    pub seed: u64,
    /// Residents registered at Dukcapil (at least 20).
    pub people: u32,
    /// Share of residents with BP2MI placements (drawn from living working-age citizens).
    pub placed_share: f64,
    /// Share of placed people enrolled at BPJS Ketenagakerjaan.
    pub insured_placed_share: f64,
    /// Share of the other (adult, not placed) residents enrolled at BPJS Ketenagakerjaan.
    pub insured_other_share: f64,
    /// Share of placed people who self-reported abroad to Kemlu (Peduli WNI).
    pub reported_placed_share: f64,
    /// Share of the other (adult, living, citizen) residents who reported abroad: students,
    /// spouses, professionals.
    pub reported_other_share: f64,
    /// Share of reporters who reported two or three times (duplicates on different dates).
    pub duplicate_share: f64,
    /// Extra Kemlu rows with invalid NIKs (typos and the like), as a share of the valid rows.
    pub invalid_share: f64,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            seed: 20261123,
            people: 100_000,
            placed_share: 0.08,
            insured_placed_share: 0.8,
            insured_other_share: 0.2,
            reported_placed_share: 0.6,
            reported_other_share: 0.01,
            duplicate_share: 0.15,
            invalid_share: 0.03,
        }
    }
}

/// Upper bound on `people`: a guard against a typo (an extra zero or three) that would make
/// `simpul up` spend minutes and gigabytes seeding. Ten million is far beyond any demo.
const MAX_PEOPLE: u32 = 10_000_000;

impl SeedConfig {
    /// Checks the configuration; the error message names the offending field as it is
    /// written in config.toml (e.g. `data.placed_share must be between 0 and 1`).
    pub fn validate(&self) -> Result<(), String> {
        if !(20..=MAX_PEOPLE).contains(&self.people) {
            return Err(format!(
                "data.people must be between 20 and {MAX_PEOPLE} (got {})",
                self.people
            ));
        }
        let shares = [
            ("placed_share", self.placed_share),
            ("insured_placed_share", self.insured_placed_share),
            ("insured_other_share", self.insured_other_share),
            ("reported_placed_share", self.reported_placed_share),
            ("reported_other_share", self.reported_other_share),
            ("duplicate_share", self.duplicate_share),
            ("invalid_share", self.invalid_share),
        ];
        for (name, value) in shares {
            // `contains` is false for NaN, so NaN is rejected too.
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("data.{name} must be between 0 and 1 (got {value})"));
            }
        }
        Ok(())
    }
}

/// One of the four demo datasets, each held by one member of the federation.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// Dukcapil civil registry: table `residents`.
    Residents,
    /// BP2MI migrant-worker placements: table `placements`.
    Placements,
    /// BPJS Ketenagakerjaan insurance membership: table `participants`.
    Participants,
    /// Kemlu Peduli WNI self-reports of citizens abroad: table `reports`.
    Reports,
}

impl Dataset {
    /// All four datasets, in the order of the federation's members in the design.
    pub const ALL: [Dataset; 4] = [
        Dataset::Residents,
        Dataset::Placements,
        Dataset::Participants,
        Dataset::Reports,
    ];

    /// The SQLite table the dataset is written to.
    pub fn table(self) -> &'static str {
        match self {
            Dataset::Residents => "residents",
            Dataset::Placements => "placements",
            Dataset::Participants => "participants",
            Dataset::Reports => "reports",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically fine for synthetic data.
///
/// Written here instead of using the `rand` crate on purpose: `rand`'s generators and
/// distributions may change between versions, and the demo data must be identical for a seed
/// on every machine and every future version. Only integer arithmetic and exact IEEE
/// operations (multiplying by a power of two, comparing) are used, never `powf`, `ln` and
/// the like whose last bits vary between platforms' maths libraries.
#[derive(Clone, Debug)]
struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a strong 64-bit mixer).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent streams, one per generation stage, so that changing how one dataset is drawn
/// does not reshuffle the others.
mod stream {
    pub const PICK: u64 = 1;
    pub const RESIDENTS: u64 = 2;
    pub const PLACEMENTS: u64 = 3;
    pub const INSURANCE: u64 = 4;
    pub const REPORTS: u64 = 5;
}

impl SplitMix64 {
    /// A stream derived from the seed. Both go through the mixer: SplitMix64 states only ever
    /// advance by the golden gamma, so seeding streams with `seed + k` would give shifted
    /// copies of one sequence.
    fn stream(seed: u64, stream: u64) -> Self {
        Self {
            state: mix64(seed ^ mix64(stream.wrapping_mul(GOLDEN_GAMMA))),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n > 0`) by multiply-shift; the bias is below 2^-40 for our `n`.
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in [0, 1) with 53 bits: exact on every IEEE platform.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Picks by integer weights (zero weights are never picked; the total must be positive).
    fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut roll = self.below(total);
        for &(item, weight) in items {
            if roll < u64::from(weight) {
                return item;
            }
            roll -= u64::from(weight);
        }
        unreachable!("roll is below the total weight")
    }

    fn day_between(&mut self, lo: Day, hi: Day) -> Day {
        Day(self.between(i64::from(lo.0), i64::from(hi.0)) as i32)
    }
}

/// The rounded count a share gives of a pool (shares are validated to be in 0..=1).
fn share_of(share: f64, pool: usize) -> usize {
    ((share * pool as f64).round() as usize).min(pool)
}

// ---------------------------------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------------------------------

/// A civil date as days since 1970-01-01. Integer arithmetic only (Howard Hinnant's
/// algorithms), so leap years are right and no date crate is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Day(i32);

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Day {
    fn from_ymd(year: i32, month: u32, day: u32) -> Day {
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day((era * 146_097 + doe - 719_468) as i32)
    }

    fn ymd(self) -> (i32, u32, u32) {
        let z = i64::from(self.0) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        (year, month, day)
    }

    fn plus(self, days: i32) -> Day {
        Day(self.0 + days)
    }

    /// The same day `months` later (or earlier), clamped to the month's length.
    fn plus_months(self, months: i32) -> Day {
        let (y, m, d) = self.ymd();
        let index = y * 12 + (m as i32 - 1) + months;
        let (year, month) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
        Day::from_ymd(year, month, d.min(days_in_month(year, month)))
    }

    /// The same date `years` later, 29 February becoming 28 February in common years.
    fn plus_years(self, years: i32) -> Day {
        self.plus_months(years * 12)
    }

    /// The last day of this date's month: contributions are paid by the month.
    fn month_end(self) -> Day {
        let (y, m, _) = self.ymd();
        Day::from_ymd(y, m, days_in_month(y, m))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// The date the synthetic world is "as of": placements active on it, payments up to it.
/// Fixed rather than today's date, so the data does not depend on when it was generated.
fn as_of() -> Day {
    Day::from_ymd(2026, 11, 1)
}

// ---------------------------------------------------------------------------------------------
// NIK
// ---------------------------------------------------------------------------------------------

/// Province codes (Kemendagri), names and weights proportional to the 2020 census population
/// (in units of 100 000), so that Java dominates as it does in reality.
const PROVINCES: &[(u8, &str, u32)] = &[
    (11, "Aceh", 53),
    (12, "Sumatera Utara", 148),
    (13, "Sumatera Barat", 55),
    (14, "Riau", 64),
    (15, "Jambi", 36),
    (16, "Sumatera Selatan", 85),
    (17, "Bengkulu", 20),
    (18, "Lampung", 90),
    (19, "Kepulauan Bangka Belitung", 15),
    (21, "Kepulauan Riau", 21),
    (31, "DKI Jakarta", 106),
    (32, "Jawa Barat", 483),
    (33, "Jawa Tengah", 365),
    (34, "DI Yogyakarta", 37),
    (35, "Jawa Timur", 410),
    (36, "Banten", 119),
    (51, "Bali", 43),
    (52, "Nusa Tenggara Barat", 53),
    (53, "Nusa Tenggara Timur", 53),
    (61, "Kalimantan Barat", 54),
    (62, "Kalimantan Tengah", 27),
    (63, "Kalimantan Selatan", 41),
    (64, "Kalimantan Timur", 38),
    (65, "Kalimantan Utara", 7),
    (71, "Sulawesi Utara", 26),
    (72, "Sulawesi Tengah", 30),
    (73, "Sulawesi Selatan", 91),
    (74, "Sulawesi Tenggara", 26),
    (75, "Gorontalo", 12),
    (76, "Sulawesi Barat", 14),
    (81, "Maluku", 18),
    (82, "Maluku Utara", 13),
    (91, "Papua", 10),
    (92, "Papua Barat", 6),
    (93, "Papua Selatan", 5),
    (94, "Papua Tengah", 14),
    (95, "Papua Pegunungan", 14),
    (96, "Papua Barat Daya", 6),
];

/// Where foreign residents with a KITAP (and so a NIK) mostly live.
const WNA_PROVINCES: &[(u8, u32)] = &[(31, 40), (51, 20), (21, 10), (36, 10), (32, 10), (35, 10)];

/// Two-digit codes that are no province, for invalid NIKs.
const UNKNOWN_PROVINCES: &[u8] = &[
    0, 10, 20, 22, 30, 37, 40, 50, 54, 60, 66, 70, 77, 80, 90, 99,
];

fn province_name(code: u8) -> &'static str {
    PROVINCES
        .iter()
        .find(|p| p.0 == code)
        .map(|p| p.1)
        .expect("residents only get known province codes")
}

/// Checks a NIK (Nomor Induk Kependudukan) against its structural rules: 16 digits
/// `PP RR DD DDMMYY SSSS` with a known province code `PP`, regency `RR` and district `DD`
/// other than 00, a real calendar date of birth `DDMMYY` (40 added to the day for women) and a
/// serial `SSSS` other than 0000.
///
/// The century of the birth year is not in the NIK, so 29 February is accepted whenever
/// `YY` is divisible by 4 (for `00` that is 2000, a leap year). A structurally valid NIK need
/// not belong to anyone: this is the check a gateway can make before asking Dukcapil.
pub fn nik_is_valid(nik: &str) -> bool {
    let b = nik.as_bytes();
    if b.len() != 16 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let two = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    let province = two(0);
    if !PROVINCES.iter().any(|p| u32::from(p.0) == province) {
        return false;
    }
    if two(2) == 0 || two(4) == 0 {
        return false;
    }
    let day = match two(6) {
        d @ 41..=71 => d - 40,
        d => d,
    };
    let month = two(8);
    let yy = two(10);
    if !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let max_day = match month {
        2 if yy % 4 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= max_day && &nik[12..] != "0000"
}

fn make_nik(
    province: u8,
    regency: u8,
    district: u8,
    birth: Day,
    female: bool,
    serial: u16,
) -> String {
    let (y, m, d) = birth.ymd();
    let day = if female { d + 40 } else { d };
    format!(
        "{province:02}{regency:02}{district:02}{day:02}{m:02}{:02}{serial:04}",
        y.rem_euclid(100)
    )
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

const GIVEN_MALE: &[&str] = &[
    "Budi", "Agus", "Slamet", "Joko", "Bambang", "Eko", "Dedi", "Hendra", "Rudi", "Wahyu", "Andi",
    "Asep", "Ujang", "Dadang", "Yusuf", "Ahmad", "Muhammad", "Rizki", "Fajar", "Arif", "Iwan",
    "Sugeng", "Heru", "Teguh", "Bayu", "Dimas", "Gilang", "Rahmat", "Hasan", "Imam", "Ilham",
    "Irfan", "Yoga", "Aditya", "Anton", "Dwi", "Tri", "Sigit", "Wawan", "Dani", "Bagus", "Fikri",
    "Hadi", "Lukman", "Reza", "Taufik", "Yudi", "Zainal", "Dodi", "Rian",
];

const GIVEN_FEMALE: &[&str] = &[
    "Siti", "Sri", "Nur", "Dewi", "Ani", "Wati", "Rina", "Yanti", "Indah", "Putri", "Ayu", "Fitri",
    "Nurul", "Ratna", "Yuli", "Eka", "Dwi", "Tri", "Endang", "Rini", "Ika", "Maya", "Novi", "Dian",
    "Wulan", "Intan", "Nining", "Euis", "Neneng", "Aisyah", "Fatimah", "Nia", "Lilis", "Tuti",
    "Murni", "Kurnia", "Rosa", "Yuni", "Nadia", "Anisa", "Desi", "Erna", "Heni", "Ida", "Lina",
    "Mega", "Okta", "Puji", "Sari", "Tika",
];

/// Old-style single names, common among Javanese born before the 1980s.
const SINGLE_MALE: &[&str] = &[
    "Sutrisno", "Suparman", "Sukirman", "Paijo", "Tukiman", "Sumarno", "Karyono", "Wagiman",
    "Kasiman", "Suyanto", "Sugiyono", "Parno", "Darmo", "Sarijo", "Mujiono",
];

const SINGLE_FEMALE: &[&str] = &[
    "Sumiati", "Suwarni", "Sulastri", "Tumini", "Painem", "Sukini", "Wartini", "Sarinah",
    "Juminah", "Parmi", "Kartini", "Suminah", "Waginem", "Rukmini", "Sutini",
];

const SECOND_MALE: &[&str] = &[
    "Santoso",
    "Wibowo",
    "Susanto",
    "Prasetyo",
    "Saputra",
    "Hidayat",
    "Kurniawan",
    "Setiawan",
    "Nugroho",
    "Purnomo",
    "Gunawan",
    "Hermawan",
    "Firmansyah",
    "Ramadhan",
    "Pratama",
    "Wijaya",
    "Sulistyo",
    "Suryadi",
    "Hakim",
    "Maulana",
    "Syahputra",
    "Hidayatullah",
    "Permana",
    "Sanjaya",
];

const SECOND_FEMALE: &[&str] = &[
    "Rahayu",
    "Lestari",
    "Wulandari",
    "Handayani",
    "Susanti",
    "Saputri",
    "Kurniasih",
    "Puspitasari",
    "Anggraini",
    "Permatasari",
    "Safitri",
    "Ningsih",
    "Wahyuni",
    "Hidayati",
    "Rahmawati",
    "Fitriani",
    "Yulianti",
    "Marlina",
    "Hartati",
    "Kusumawati",
    "Pertiwi",
    "Maharani",
    "Oktaviani",
    "Purwanti",
];

const CHRISTIAN_MALE: &[&str] = &[
    "Yohanes",
    "Michael",
    "Frangky",
    "Jefry",
    "Stevanus",
    "Gabriel",
    "Marthen",
    "Alfons",
    "Daniel",
    "Samuel",
    "Jonatan",
    "Petrus",
    "Yosef",
    "Fransiskus",
    "Agustinus",
    "Benny",
];

const CHRISTIAN_FEMALE: &[&str] = &[
    "Grace",
    "Meiske",
    "Vivi",
    "Natalia",
    "Stefany",
    "Angelina",
    "Novita",
    "Maria",
    "Ruth",
    "Debora",
    "Yohana",
    "Theresia",
    "Agnes",
    "Elisabeth",
    "Veronika",
    "Kristina",
];

const BATAK_CLANS: &[&str] = &[
    "Siregar",
    "Nasution",
    "Simanjuntak",
    "Hutapea",
    "Sitompul",
    "Harahap",
    "Lubis",
    "Simatupang",
    "Sihombing",
    "Panjaitan",
    "Pardede",
    "Sinaga",
    "Manurung",
    "Situmorang",
    "Tambunan",
    "Hutagalung",
];

const MINAHASA_CLANS: &[&str] = &[
    "Wenas",
    "Lumenta",
    "Pangemanan",
    "Rondonuwu",
    "Sumampouw",
    "Mandagi",
    "Tumbelaka",
    "Lumintang",
    "Kaunang",
    "Rumengan",
    "Mamahit",
    "Tangkilisan",
];

const NTT_CLANS: &[&str] = &[
    "Manafe",
    "Ndun",
    "Bria",
    "Nahak",
    "Seran",
    "Tefa",
    "Fanggidae",
    "Pandie",
    "Lado",
    "Bait",
    "Nenobais",
    "Tallo",
];

const MALUKU_CLANS: &[&str] = &[
    "Latuconsina",
    "Matulessy",
    "Sahetapy",
    "Tuhumury",
    "Pattinasarany",
    "Leiwakabessy",
    "Wattimena",
    "Sopacua",
    "Tahapary",
    "Latupeirissa",
];

/// Balinese birth-order names (prefix included) and given names.
const BALI_ORDER_MALE: &[&str] = &[
    "I Wayan", "I Made", "I Nyoman", "I Ketut", "I Putu", "I Gede", "I Komang", "I Kadek",
];
const BALI_ORDER_FEMALE: &[&str] = &[
    "Ni Wayan",
    "Ni Made",
    "Ni Nyoman",
    "Ni Ketut",
    "Ni Putu",
    "Ni Luh",
    "Ni Komang",
    "Ni Kadek",
];
const BALI_MALE: &[&str] = &[
    "Sudarma", "Suardana", "Artawan", "Budiasa", "Wirawan", "Adnyana", "Sukarta", "Mertha",
    "Widiana", "Astawa",
];
const BALI_FEMALE: &[&str] = &[
    "Artini", "Suryani", "Ariani", "Sukerti", "Widiasih", "Astiti", "Sekarini", "Wardani",
    "Sumerti", "Darmini",
];

const CHINESE_INDONESIAN_MALE: &[&str] = &[
    "Andy", "Kevin", "Felix", "William", "Vincent", "Hendrik", "Steven", "Johan", "Rudy", "Edwin",
];
const CHINESE_INDONESIAN_FEMALE: &[&str] = &[
    "Jessica", "Cindy", "Michelle", "Stella", "Linda", "Lily", "Melinda", "Yenny", "Susan",
    "Vivian",
];
const CHINESE_INDONESIAN_FAMILY: &[&str] = &[
    "Wijaya",
    "Halim",
    "Tanoto",
    "Gunawan",
    "Salim",
    "Hartono",
    "Tanuwijaya",
    "Kusuma",
    "Setiadi",
    "Lim",
    "Sutanto",
    "Widjaja",
];

/// Foreign residents: (male given names, female given names, family names) per culture, so
/// that a name does not mix cultures.
const FOREIGN: &[(&[&str], &[&str], &[&str])] = &[
    (
        &["John", "Michael", "David", "James", "Thomas"],
        &["Emily", "Sarah", "Olivia", "Jessica", "Anna"],
        &["Smith", "Brown", "Wilson", "Taylor", "Johnson"],
    ),
    (
        &["Hiroshi", "Takashi", "Kenji", "Yuto"],
        &["Yuki", "Aiko", "Haruka", "Sakura"],
        &["Tanaka", "Suzuki", "Sato", "Watanabe"],
    ),
    (
        &["Min-jun", "Ji-hoon", "Seo-jun"],
        &["Ji-woo", "Seo-yeon", "Min-seo"],
        &["Kim", "Lee", "Park", "Choi"],
    ),
    (
        &["Wei", "Jun", "Hao", "Lei"],
        &["Mei", "Li Na", "Xiu", "Ying"],
        &["Li", "Wang", "Zhang", "Chen", "Liu"],
    ),
    (
        &["Rajesh", "Amit", "Vikram", "Arjun"],
        &["Priya", "Anjali", "Sunita", "Kavya"],
        &["Sharma", "Patel", "Singh", "Gupta"],
    ),
    (
        &["Pieter", "Jan", "Willem", "Thomas"],
        &["Anouk", "Sanne", "Eva", "Lotte"],
        &["de Vries", "Jansen", "Bakker", "Visser"],
    ),
];

fn pick_sexed<'a>(
    rng: &mut SplitMix64,
    female: bool,
    male: &[&'a str],
    fem: &[&'a str],
) -> &'a str {
    if female {
        rng.pick(fem)
    } else {
        rng.pick(male)
    }
}

/// "Given Clan" with a regional given name most of the time.
fn clan_name(rng: &mut SplitMix64, female: bool, clans: &[&str]) -> String {
    let given = if rng.chance(0.7) {
        pick_sexed(rng, female, CHRISTIAN_MALE, CHRISTIAN_FEMALE)
    } else {
        pick_sexed(rng, female, GIVEN_MALE, GIVEN_FEMALE)
    };
    format!("{given} {}", rng.pick(clans))
}

/// A plausible Indonesian name. Many Indonesians have a single name, many two or three; some
/// regions carry clan names (Batak, Minahasa, NTT, Maluku) or birth-order names (Bali).
fn indonesian_name(rng: &mut SplitMix64, female: bool, province: u8) -> String {
    let regional = match province {
        51 => rng.chance(0.85).then_some(Region::Bali),
        12 => rng.chance(0.45).then_some(Region::Clan(BATAK_CLANS)),
        71 => rng.chance(0.6).then_some(Region::Clan(MINAHASA_CLANS)),
        53 => rng.chance(0.55).then_some(Region::Clan(NTT_CLANS)),
        81 => rng.chance(0.4).then_some(Region::Clan(MALUKU_CLANS)),
        _ => None,
    };
    match regional {
        Some(Region::Bali) => {
            let order = pick_sexed(rng, female, BALI_ORDER_MALE, BALI_ORDER_FEMALE);
            let given = pick_sexed(rng, female, BALI_MALE, BALI_FEMALE);
            return format!("{order} {given}");
        }
        Some(Region::Clan(clans)) => return clan_name(rng, female, clans),
        None => {}
    }
    let chinese_share = if matches!(province, 31 | 61 | 12 | 21) {
        0.08
    } else {
        0.02
    };
    if rng.chance(chinese_share) {
        let given = pick_sexed(
            rng,
            female,
            CHINESE_INDONESIAN_MALE,
            CHINESE_INDONESIAN_FEMALE,
        );
        return format!("{given} {}", rng.pick(CHINESE_INDONESIAN_FAMILY));
    }
    let roll = rng.below(100);
    if roll < 30 {
        // Single name: an old-style one or just a given name.
        if rng.chance(0.5) {
            pick_sexed(rng, female, SINGLE_MALE, SINGLE_FEMALE).to_string()
        } else {
            pick_sexed(rng, female, GIVEN_MALE, GIVEN_FEMALE).to_string()
        }
    } else if roll < 78 {
        let given = pick_sexed(rng, female, GIVEN_MALE, GIVEN_FEMALE);
        format!(
            "{given} {}",
            pick_sexed(rng, female, SECOND_MALE, SECOND_FEMALE)
        )
    } else {
        let first = pick_sexed(rng, female, GIVEN_MALE, GIVEN_FEMALE);
        let mut middle = pick_sexed(rng, female, GIVEN_MALE, GIVEN_FEMALE);
        if middle == first {
            // "Dwi Dwi" is not a name; one redraw from the other end of the list suffices.
            let list = if female { GIVEN_FEMALE } else { GIVEN_MALE };
            middle = list[(list.iter().position(|n| *n == first).unwrap_or(0) + 1) % list.len()];
        }
        let last = pick_sexed(rng, female, SECOND_MALE, SECOND_FEMALE);
        format!("{first} {middle} {last}")
    }
}

enum Region {
    Bali,
    Clan(&'static [&'static str]),
}

fn foreign_name(rng: &mut SplitMix64, female: bool) -> String {
    let (male, fem, family) = rng.pick(FOREIGN);
    let given = pick_sexed(rng, female, male, fem);
    format!("{given} {}", rng.pick(family))
}

/// Self-reported names are typed by the person, on a phone, in a hurry: capitals, lower
/// case, or only the first part of the name.
fn messy_name(rng: &mut SplitMix64, name: &str) -> String {
    match rng.below(100) {
        0..55 => name.to_string(),
        55..75 => name.to_uppercase(),
        75..85 => name.to_lowercase(),
        _ => match name.rsplit_once(' ') {
            Some((head, _)) => head.to_string(),
            None => name.to_uppercase(),
        },
    }
}

fn messy_city(rng: &mut SplitMix64, city: &str) -> String {
    match rng.below(100) {
        0..85 => city.to_string(),
        85..95 => city.to_lowercase(),
        _ => city.to_uppercase(),
    }
}

// ---------------------------------------------------------------------------------------------
// Destinations, agencies, occupations
// ---------------------------------------------------------------------------------------------

/// Destination weights of Indonesian migrant workers (BP2MI placement statistics, roughly),
/// separately for women (domestic and care work dominate) and men.
const PLACEMENT_COUNTRIES_FEMALE: &[(&str, u32)] = &[
    ("HK", 30),
    ("TW", 25),
    ("MY", 15),
    ("SG", 8),
    ("SA", 6),
    ("JP", 4),
    ("AE", 3),
    ("BN", 2),
    ("KW", 2),
    ("KR", 1),
    ("QA", 1),
    ("PL", 1),
    ("TR", 1),
];

const PLACEMENT_COUNTRIES_MALE: &[(&str, u32)] = &[
    ("MY", 35),
    ("KR", 20),
    ("TW", 20),
    ("JP", 10),
    ("BN", 3),
    ("SA", 3),
    ("AE", 2),
    ("QA", 2),
    ("PL", 2),
    ("HK", 1),
    ("SG", 1),
    ("TR", 1),
];

/// Where the other citizens abroad are: students, spouses, professionals, pilgrims' staff.
const OTHER_COUNTRIES: &[(&str, u32)] = &[
    ("MY", 10),
    ("AU", 10),
    ("SG", 8),
    ("JP", 8),
    ("US", 8),
    ("SA", 8),
    ("NL", 6),
    ("DE", 6),
    ("GB", 6),
    ("EG", 5),
    ("CN", 5),
    ("KR", 5),
    ("TW", 5),
    ("AE", 4),
    ("TR", 4),
    ("HK", 3),
    ("QA", 2),
];

/// Cities per country (ISO 3166-1 alpha-2), for the free-text city of a self-report.
#[rustfmt::skip] // a table reads best as one row per country
const CITIES: &[(&str, &[&str])] = &[
    ("MY", &["Kuala Lumpur", "Johor Bahru", "Penang", "Kota Kinabalu", "Kuching", "Shah Alam"]),
    ("TW", &["Taipei", "Taichung", "Kaohsiung", "Tainan", "Taoyuan", "Hsinchu"]),
    ("HK", &["Hong Kong", "Kowloon", "Sha Tin", "Tsuen Wan", "Tuen Mun", "Causeway Bay"]),
    ("SA", &["Riyadh", "Jeddah", "Makkah", "Madinah", "Dammam"]),
    ("SG", &["Singapore"]),
    ("KR", &["Seoul", "Busan", "Incheon", "Ansan", "Gimhae", "Changwon"]),
    ("JP", &["Tokyo", "Osaka", "Nagoya", "Fukuoka", "Hiroshima", "Sapporo"]),
    ("AE", &["Dubai", "Abu Dhabi", "Sharjah"]),
    ("QA", &["Doha"]),
    ("BN", &["Bandar Seri Begawan", "Kuala Belait"]),
    ("KW", &["Kuwait City"]),
    ("PL", &["Warsaw", "Wroclaw", "Gdansk"]),
    ("TR", &["Istanbul", "Ankara", "Antalya"]),
    ("AU", &["Sydney", "Melbourne", "Perth", "Brisbane"]),
    ("US", &["New York", "Los Angeles", "Boston", "Houston"]),
    ("NL", &["Amsterdam", "Leiden", "Delft", "Rotterdam"]),
    ("DE", &["Berlin", "Munich", "Aachen", "Hamburg"]),
    ("GB", &["London", "Manchester", "Leeds", "Edinburgh"]),
    ("EG", &["Cairo", "Alexandria"]),
    ("CN", &["Beijing", "Shanghai", "Wuhan", "Guangzhou"]),
];

fn cities(country: &str) -> &'static [&'static str] {
    CITIES
        .iter()
        .find(|c| c.0 == country)
        .map(|c| c.1)
        .expect("every destination has cities (checked by a test)")
}

/// Occupations per destination with weights for (women, men): what the placement schemes
/// actually recruit for, e.g. caregivers for Taiwan, factory and fishery work for Korea.
/// Occupations with their weights for women and for men.
type Jobs = &'static [(&'static str, u32, u32)];

#[rustfmt::skip] // a table reads best as one row per country
const OCCUPATIONS: &[(&str, Jobs)] = &[
    ("HK", &[("domestic worker", 85, 0), ("caregiver", 15, 0), ("driver", 0, 60),
             ("construction worker", 0, 40)]),
    ("TW", &[("caregiver", 55, 0), ("domestic worker", 15, 0), ("factory worker", 30, 55),
             ("fisherman", 0, 35), ("construction worker", 0, 10)]),
    ("MY", &[("domestic worker", 45, 0), ("factory worker", 35, 30), ("plantation worker", 10, 45),
             ("construction worker", 0, 25), ("hospitality worker", 10, 0)]),
    ("SG", &[("domestic worker", 85, 0), ("caregiver", 10, 0), ("construction worker", 0, 60),
             ("factory worker", 5, 40)]),
    ("SA", &[("domestic worker", 80, 0), ("caregiver", 10, 0), ("driver", 0, 60),
             ("hospitality worker", 10, 40)]),
    ("KR", &[("factory worker", 80, 70), ("hospitality worker", 20, 0), ("fisherman", 0, 25),
             ("construction worker", 0, 5)]),
    ("JP", &[("caregiver", 40, 15), ("factory worker", 40, 50), ("hospitality worker", 20, 5),
             ("construction worker", 0, 20), ("fisherman", 0, 10)]),
    ("BN", &[("domestic worker", 70, 0), ("hospitality worker", 30, 20), ("plantation worker", 0, 40),
             ("construction worker", 0, 40)]),
    ("AE", &[("domestic worker", 60, 0), ("hospitality worker", 30, 40), ("nurse", 10, 0),
             ("construction worker", 0, 40), ("driver", 0, 20)]),
    ("QA", &[("domestic worker", 60, 0), ("hospitality worker", 30, 40), ("nurse", 10, 0),
             ("construction worker", 0, 40), ("driver", 0, 20)]),
    ("KW", &[("domestic worker", 70, 0), ("hospitality worker", 20, 40), ("nurse", 10, 0),
             ("driver", 0, 60)]),
    ("PL", &[("factory worker", 60, 30), ("hospitality worker", 40, 20), ("welder", 0, 50)]),
    ("TR", &[("hospitality worker", 50, 50), ("factory worker", 50, 50)]),
];

fn occupation(rng: &mut SplitMix64, country: &str, female: bool) -> &'static str {
    let table = OCCUPATIONS
        .iter()
        .find(|o| o.0 == country)
        .map(|o| o.1)
        .expect("every destination has occupations (checked by a test)");
    let weights: Vec<(&'static str, u32)> = table
        .iter()
        .map(|&(name, f, m)| (name, if female { f } else { m }))
        .collect();
    rng.weighted(&weights)
}

/// Placement agencies (P3MI). Weighted by position: a few large agencies place most workers.
const AGENCIES: &[&str] = &[
    "PT Bina Karya Mandiri",
    "PT Sumber Rejeki Abadi",
    "PT Mitra Sejahtera Utama",
    "PT Duta Putra Perkasa",
    "PT Arni Family",
    "PT Cahaya Mitra Sentosa",
    "PT Graha Tenaga Jaya",
    "PT Nusantara Karya Sejahtera",
    "PT Insan Prima Mandiri",
    "PT Bumi Mas Makmur",
    "PT Surya Jaya Abadi",
    "PT Anugerah Bintang Timur",
    "PT Citra Karya Sejati",
    "PT Fajar Harapan Bangsa",
    "PT Sinar Berkah Mulia",
    "PT Mega Sukses Bersama",
    "PT Lintas Benua Sejahtera",
    "PT Putra Sindo Utama",
    "PT Karya Insani Wisesa",
    "PT Tritama Bina Karya",
];

fn agency(rng: &mut SplitMix64) -> &'static str {
    let weights: Vec<(&'static str, u32)> = AGENCIES
        .iter()
        .enumerate()
        .map(|(i, &a)| (a, 120 / (i as u32 + 1)))
        .collect();
    rng.weighted(&weights)
}

/// Provinces that send most migrant workers (Jawa Timur, Jawa Tengah, Jawa Barat, NTB, NTT,
/// Lampung, Sumatera Utara, Banten): their residents are favoured when choosing who is placed.
fn sending_weight(province: u8, female: bool) -> f64 {
    let base = if matches!(province, 35 | 33 | 32 | 52 | 53 | 18 | 12 | 36) {
        0.8
    } else {
        0.35
    };
    // About two thirds of placed workers are women.
    if female { base } else { base * 0.5 }
}

// ---------------------------------------------------------------------------------------------
// The population
// ---------------------------------------------------------------------------------------------

/// About 1% of residents with a NIK are foreigners (KITAP holders).
const WNA_SHARE: f64 = 0.01;
/// Deceased residents still on the register (death not yet reported, or kept for history).
const DECEASED_SHARE: f64 = 0.007;

#[derive(Clone, Debug, PartialEq)]
struct Resident {
    nik: String,
    full_name: String,
    female: bool,
    birth: Day,
    province: u8,
    wna: bool,
    deceased: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Placement {
    id: i64,
    /// Index into `Population::residents`.
    person: usize,
    country: &'static str,
    agency: &'static str,
    occupation: &'static str,
    active: bool,
    start: Day,
    end: Option<Day>,
}

#[derive(Clone, Debug, PartialEq)]
struct Participant {
    /// Index into `Population::residents`.
    person: usize,
    active: bool,
    programs: &'static str,
    paid_until: Day,
}

#[derive(Clone, Debug, PartialEq)]
struct Report {
    id: i64,
    nik: String,
    full_name: String,
    country: &'static str,
    city: String,
    reported_on: Day,
    /// True for the rows added with a broken or mistyped NIK that matches nobody.
    invalid: bool,
}

/// The latest placement of a placed person: the report and insurance stages follow it.
#[derive(Clone, Copy, Debug)]
struct Stint {
    country: &'static str,
    start: Day,
    end: Option<Day>,
}

/// Everything [`generate`] produced for the four ministries, held in memory until
/// [`write_dataset`] writes each dataset to its member's database.
///
/// Two people are reserved so a demo always has something to show: one who is in all four
/// datasets and one who is only at Dukcapil (see [`Population::sample_in_all_four`]). They
/// exist even when a share in the configuration is 0.
#[derive(Clone)]
pub struct Population {
    residents: Vec<Resident>,
    placements: Vec<Placement>,
    participants: Vec<Participant>,
    reports: Vec<Report>,
    all_four: usize,
    dukcapil_only: usize,
}

impl fmt::Debug for Population {
    // Counts, not 100 000 rows: a Debug print of the population should fit on a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Population")
            .field("residents", &self.residents.len())
            .field("placements", &self.placements.len())
            .field("participants", &self.participants.len())
            .field("reports", &self.reports.len())
            .field(
                "invalid_reports",
                &self.reports.iter().filter(|r| r.invalid).count(),
            )
            .field("sample_in_all_four", &self.sample_in_all_four())
            .field("sample_dukcapil_only", &self.sample_dukcapil_only())
            .finish()
    }
}

impl Population {
    /// A valid NIK registered at Dukcapil (a living citizen) with an active BP2MI placement,
    /// an active BPJS Ketenagakerjaan membership and at least one Kemlu report: the person to
    /// try the federated lookup with.
    pub fn sample_in_all_four(&self) -> &str {
        &self.residents[self.all_four].nik
    }

    /// A valid NIK of a living citizen registered at Dukcapil and in no other dataset (not even
    /// mistyped at Kemlu): the person for whom the federation has nothing to add.
    pub fn sample_dukcapil_only(&self) -> &str {
        &self.residents[self.dukcapil_only].nik
    }

    /// The number of rows `dataset` has (what [`write_dataset`] will write).
    pub fn rows(&self, dataset: Dataset) -> usize {
        match dataset {
            Dataset::Residents => self.residents.len(),
            Dataset::Placements => self.placements.len(),
            Dataset::Participants => self.participants.len(),
            Dataset::Reports => self.reports.len(),
        }
    }
}

/// Generates the synthetic population. Pure and deterministic: the same configuration gives
/// the same rows on every machine. The configuration is expected to have passed
/// [`SeedConfig::validate`]; out-of-range shares are clamped rather than trusted.
pub fn generate(cfg: &SeedConfig) -> Population {
    let n = cfg.people.max(2) as usize;
    let mut pick = SplitMix64::stream(cfg.seed, stream::PICK);
    let all_four = pick.index(n);
    let dukcapil_only = {
        let i = pick.index(n - 1);
        if i >= all_four { i + 1 } else { i }
    };
    let clamp = |share: f64| {
        if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        }
    };

    let residents = generate_residents(cfg.seed, n, all_four, dukcapil_only);

    // Placements: living citizens of working age, favouring the sending provinces and women.
    let (work_lo, work_hi) = working_age_births();
    let mut rng = SplitMix64::stream(cfg.seed, stream::PLACEMENTS);
    let mut keyed: Vec<(bool, u64, usize)> = Vec::new();
    for (i, r) in residents.iter().enumerate() {
        if i == all_four || i == dukcapil_only || r.wna || r.deceased {
            continue;
        }
        if r.birth < work_lo || r.birth > work_hi {
            continue;
        }
        let favoured = rng.chance(sending_weight(r.province, r.female));
        keyed.push((!favoured, rng.next_u64(), i));
    }
    // Favoured first, then in random order; the index makes the order total.
    keyed.sort_unstable();
    let target = share_of(clamp(cfg.placed_share), n).clamp(1, keyed.len() + 1);
    let mut placed: Vec<usize> = std::iter::once(all_four)
        .chain(keyed.iter().take(target - 1).map(|k| k.2))
        .collect();
    placed.sort_unstable();

    let mut stints: Vec<Option<Stint>> = vec![None; n];
    let mut placements = Vec::with_capacity(placed.len() * 5 / 4);
    for &person in &placed {
        let stint = place(
            &mut rng,
            &residents[person],
            person,
            person == all_four,
            &mut placements,
        );
        stints[person] = Some(stint);
    }
    // Ids in order of start date, as a registry assigns them.
    placements.sort_by_key(|p| p.start);
    for (i, p) in placements.iter_mut().enumerate() {
        p.id = i as i64 + 1;
    }

    // The others: everyone not placed, except the reserved Dukcapil-only person.
    let others: Vec<usize> = (0..n)
        .filter(|&i| stints[i].is_none() && i != dukcapil_only)
        .collect();

    let participants = insure(cfg, &residents, &placed, &others, &stints, all_four, clamp);
    let reports = report(
        cfg,
        &residents,
        &placed,
        &others,
        &stints,
        all_four,
        dukcapil_only,
        clamp,
    );

    Population {
        residents,
        placements,
        participants,
        reports,
        all_four,
        dukcapil_only,
    }
}

/// Birth dates of people who can have been placed: 22 to 60 years old on the as-of date.
fn working_age_births() -> (Day, Day) {
    (Day::from_ymd(1966, 1, 1), Day::from_ymd(2004, 12, 31))
}

fn generate_residents(seed: u64, n: usize, all_four: usize, dukcapil_only: usize) -> Vec<Resident> {
    let mut rng = SplitMix64::stream(seed, stream::RESIDENTS);
    let (born_lo, born_hi) = (Day::from_ymd(1950, 1, 1), Day::from_ymd(2008, 12, 31));
    let (work_lo, work_hi) = working_age_births();
    let province_weights: Vec<(u8, u32)> = PROVINCES.iter().map(|p| (p.0, p.2)).collect();
    let mut taken: HashSet<u64> = HashSet::with_capacity(n);
    let mut residents = Vec::with_capacity(n);
    for i in 0..n {
        // The reserved people are living citizens; the all-four one also of working age.
        let reserved = i == all_four || i == dukcapil_only;
        let female = rng.chance(0.5);
        let birth = if i == all_four {
            rng.day_between(work_lo, work_hi)
        } else {
            rng.day_between(born_lo, born_hi)
        };
        let wna = !reserved && rng.chance(WNA_SHARE);
        let deceased = !reserved && rng.chance(DECEASED_SHARE);
        let province = if wna {
            rng.weighted(WNA_PROVINCES)
        } else {
            rng.weighted(&province_weights)
        };
        // Regencies (kabupaten) are numbered from 01, cities (kota) from 71.
        let regency = (if rng.chance(0.2) {
            71 + rng.below(9)
        } else {
            1 + rng.below(30)
        }) as u8;
        let district = 1 + rng.below(40) as u8;
        let nik = loop {
            // Serials count up per district and birth date, so they are mostly small.
            let max = if rng.chance(0.9) { 300 } else { 9999 };
            let serial = 1 + rng.below(max) as u16;
            let nik = make_nik(province, regency, district, birth, female, serial);
            if taken.insert(nik.parse().expect("a NIK is 16 digits")) {
                break nik;
            }
        };
        let full_name = if wna {
            foreign_name(&mut rng, female)
        } else {
            indonesian_name(&mut rng, female, province)
        };
        residents.push(Resident {
            nik,
            full_name,
            female,
            birth,
            province,
            wna,
            deceased,
        });
    }
    residents
}

/// Adds one placement, sometimes two, for `person` and returns the latest one.
fn place(
    rng: &mut SplitMix64,
    resident: &Resident,
    person: usize,
    force_active: bool,
    placements: &mut Vec<Placement>,
) -> Stint {
    let today = as_of();
    // Nobody is placed before 18 (the law says 18; agencies fake it sometimes, we do not).
    let adult = resident.birth.plus_years(18);
    let country = if resident.female {
        rng.weighted(PLACEMENT_COUNTRIES_FEMALE)
    } else {
        rng.weighted(PLACEMENT_COUNTRIES_MALE)
    };
    let active = force_active || rng.chance(0.65);
    let (start, end) = if active {
        let mut start = today.plus(-(30 + rng.between(0, 2 * 365 - 60) as i32));
        if start < adult {
            start = adult.plus(rng.between(0, 365) as i32);
        }
        (start, None)
    } else {
        let mut start = today.plus(-(2 * 365 + 30 + rng.between(0, 5 * 365) as i32));
        if start < adult {
            start = adult.plus(rng.between(0, 365) as i32);
        }
        // Most contracts run two years; some end early (illness, employer, going home).
        let length = if rng.chance(0.1) {
            rng.between(90, 700)
        } else {
            rng.between(700, 790)
        };
        let end = start.plus(length as i32).min(today.plus(-1));
        (start, Some(end))
    };
    let agency = agency(rng);
    let job = occupation(rng, country, resident.female);
    if rng.chance(0.25) {
        // An earlier, completed contract: often the same country and agency (returning workers).
        let old_end = start.plus(-(30 + rng.between(0, 300) as i32));
        let old_start = old_end.plus(-(700 + rng.between(0, 90) as i32));
        let old_country = if rng.chance(0.5) {
            country
        } else if resident.female {
            rng.weighted(PLACEMENT_COUNTRIES_FEMALE)
        } else {
            rng.weighted(PLACEMENT_COUNTRIES_MALE)
        };
        let old_agency = if rng.chance(0.6) {
            agency
        } else {
            self::agency(rng)
        };
        let old_job = if old_country == country {
            job
        } else {
            occupation(rng, old_country, resident.female)
        };
        if old_start >= adult {
            placements.push(Placement {
                id: 0,
                person,
                country: old_country,
                agency: old_agency,
                occupation: old_job,
                active: false,
                start: old_start,
                end: Some(old_end),
            });
        }
    }
    placements.push(Placement {
        id: 0,
        person,
        country,
        agency,
        occupation: job,
        active,
        start,
        end,
    });
    Stint {
        country,
        start,
        end,
    }
}

/// Chooses `count` of `pool` at random (deterministically), keeping `always` if given.
fn choose(rng: &mut SplitMix64, pool: &[usize], count: usize, always: Option<usize>) -> Vec<usize> {
    let mut rest: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|&i| Some(i) != always)
        .collect();
    let take = count
        .saturating_sub(usize::from(always.is_some()))
        .min(rest.len());
    // A partial Fisher-Yates: only the first `take` positions need to be random.
    for i in 0..take {
        let j = i + rng.index(rest.len() - i);
        rest.swap(i, j);
    }
    rest.truncate(take);
    rest.extend(always);
    rest.sort_unstable();
    rest
}

fn insure(
    cfg: &SeedConfig,
    residents: &[Resident],
    placed: &[usize],
    others: &[usize],
    stints: &[Option<Stint>],
    all_four: usize,
    clamp: impl Fn(f64) -> f64,
) -> Vec<Participant> {
    let mut rng = SplitMix64::stream(cfg.seed, stream::INSURANCE);
    let today = as_of();
    let insured_placed = choose(
        &mut rng,
        placed,
        share_of(clamp(cfg.insured_placed_share), placed.len()).max(1),
        Some(all_four),
    );
    // Membership needs a job, so the others' pool is the adults.
    let adults: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&i| residents[i].birth.plus_years(18) <= today)
        .collect();
    let insured_others = choose(
        &mut rng,
        &adults,
        share_of(clamp(cfg.insured_other_share), adults.len()),
        None,
    );

    let mut participants = Vec::with_capacity(insured_placed.len() + insured_others.len());
    for &person in &insured_placed {
        let stint = stints[person].expect("placed people have a stint");
        // Migrant workers always have JKK and JKM; JHT is voluntary for them.
        let programs = if rng.chance(0.6) {
            "JKK,JKM,JHT"
        } else {
            "JKK,JKM"
        };
        let (active, paid_until) = match stint.end {
            // Contributions for a placement are paid up front for the contract period.
            None if person == all_four || rng.chance(0.95) => {
                (true, stint.start.plus_months(24).month_end())
            }
            None => {
                let lapsed = today.plus_months(-(1 + rng.between(0, 5) as i32));
                (false, lapsed.max(stint.start).month_end())
            }
            Some(end) => (false, end.month_end()),
        };
        participants.push(Participant {
            person,
            active,
            programs,
            paid_until,
        });
    }
    for &person in &insured_others {
        let r = &residents[person];
        let programs = match rng.below(100) {
            0..15 => "JKK,JKM",
            15..50 => "JKK,JKM,JHT",
            50..95 => "JKK,JKM,JHT,JP",
            _ => "JKK,JKM,JP",
        };
        let retired = r.birth.plus_years(58) <= today && rng.chance(0.8);
        let active = !r.deceased && !retired && rng.chance(0.8);
        let paid_until = if active {
            // Paid for this month, or a month behind.
            today.plus_months(-(rng.between(0, 1) as i32)).month_end()
        } else {
            let adult = r.birth.plus_years(18);
            let adult_months = ((today.0 - adult.0) / 30).max(1);
            let back = 1 + rng.between(0, i64::from(adult_months.min(120)) - 1) as i32;
            today.plus_months(-back).max(adult).month_end()
        };
        participants.push(Participant {
            person,
            active,
            programs,
            paid_until,
        });
    }
    participants.sort_by_key(|p| p.person);
    participants
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
fn report(
    cfg: &SeedConfig,
    residents: &[Resident],
    placed: &[usize],
    others: &[usize],
    stints: &[Option<Stint>],
    all_four: usize,
    dukcapil_only: usize,
    clamp: impl Fn(f64) -> f64,
) -> Vec<Report> {
    let mut rng = SplitMix64::stream(cfg.seed, stream::REPORTS);
    let today = as_of();
    let placed_reporters = choose(
        &mut rng,
        placed,
        share_of(clamp(cfg.reported_placed_share), placed.len()).max(1),
        Some(all_four),
    );
    // Peduli WNI is for citizens; the dead and children do not report themselves.
    let pool: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&i| {
            let r = &residents[i];
            !r.wna && !r.deceased && r.birth.plus_years(17) <= today
        })
        .collect();
    let other_reporters = choose(
        &mut rng,
        &pool,
        share_of(clamp(cfg.reported_other_share), pool.len()),
        None,
    );
    let mut reporters: Vec<usize> = placed_reporters;
    reporters.extend(other_reporters);
    reporters.sort_unstable();

    // How many times each reporter reported: duplicates report two or three times.
    let mut times = vec![1u8; reporters.len()];
    let positions: Vec<usize> = (0..reporters.len()).collect();
    for pos in choose(
        &mut rng,
        &positions,
        share_of(clamp(cfg.duplicate_share), reporters.len()),
        None,
    ) {
        times[pos] = if rng.chance(0.5) { 2 } else { 3 };
    }

    let mut reports = Vec::new();
    for (&person, &count) in reporters.iter().zip(&times) {
        let r = &residents[person];
        let (country, lo, hi) = match stints[person] {
            Some(stint) => (
                stint.country,
                stint.start.plus(7),
                stint.end.unwrap_or(today),
            ),
            None => {
                let adult = r.birth.plus_years(17);
                (
                    rng.weighted(OTHER_COUNTRIES),
                    adult.max(today.plus_years(-6)),
                    today,
                )
            }
        };
        // A few days at least, so that duplicates can fall on different dates.
        let lo = lo.min(hi.plus(-7));
        let mut dates: Vec<Day> = Vec::with_capacity(usize::from(count));
        while dates.len() < usize::from(count) {
            let day = rng.day_between(lo, hi);
            if !dates.contains(&day) {
                dates.push(day);
            }
        }
        let city = rng.pick(cities(country));
        for (k, &day) in dates.iter().enumerate() {
            // A later report may come from another city in the same country.
            let city = if k > 0 && rng.chance(0.5) {
                rng.pick(cities(country))
            } else {
                city
            };
            reports.push(Report {
                id: 0,
                nik: r.nik.clone(),
                full_name: messy_name(&mut rng, &r.full_name),
                country,
                city: messy_city(&mut rng, city),
                reported_on: day,
                invalid: false,
            });
        }
    }

    // Invalid rows: people (mis)typing their NIK. Based on real residents' NIKs and names,
    // so they look right at a glance, but they match nobody.
    let invalid = share_of(clamp(cfg.invalid_share), reports.len());
    let bases: Vec<usize> = (0..residents.len())
        .filter(|&i| i != all_four && i != dukcapil_only && !residents[i].wna)
        .collect();
    if invalid > 0 && !bases.is_empty() {
        let known: HashSet<&str> = residents.iter().map(|r| r.nik.as_str()).collect();
        for _ in 0..invalid {
            let r = &residents[rng.pick(&bases)];
            let country = if r.female {
                rng.weighted(PLACEMENT_COUNTRIES_FEMALE)
            } else {
                rng.weighted(PLACEMENT_COUNTRIES_MALE)
            };
            let city = rng.pick(cities(country));
            reports.push(Report {
                id: 0,
                nik: corrupt_nik(&mut rng, &r.nik, &known),
                full_name: messy_name(&mut rng, &r.full_name),
                country,
                city: messy_city(&mut rng, city),
                reported_on: rng.day_between(today.plus_years(-5), today),
                invalid: true,
            });
        }
    }

    // Ids in order of reporting date, as the portal assigns them.
    reports.sort_by_key(|r| r.reported_on);
    for (i, r) in reports.iter_mut().enumerate() {
        r.id = i as i64 + 1;
    }
    reports
}

/// Breaks a valid NIK in one of the ways people and forms do. Every result fails
/// [`nik_is_valid`], except the one-digit typo, which is instead guaranteed to match no
/// resident (`known`).
fn corrupt_nik(rng: &mut SplitMix64, nik: &str, known: &HashSet<&str>) -> String {
    let mut digits: Vec<u8> = nik.bytes().collect();
    let digit = |rng: &mut SplitMix64| b'0' + rng.below(10) as u8;
    match rng.below(6) {
        // A digit dropped: 15 digits.
        0 => {
            digits.remove(rng.index(digits.len()));
        }
        // A digit doubled or slipped in: 17 digits.
        1 => {
            let at = rng.index(digits.len() + 1);
            let d = digit(rng);
            digits.insert(at, d);
        }
        // An unknown province code.
        2 => {
            let code = rng.pick(UNKNOWN_PROVINCES);
            digits[0] = b'0' + code / 10;
            digits[1] = b'0' + code % 10;
        }
        // An impossible date of birth.
        3 => {
            let female = digits[6] >= b'4';
            let offset = if female { 40 } else { 0 };
            let (day, month): (u32, u32) = match rng.below(4) {
                0 => (1 + rng.below(28) as u32 + offset, 13 + rng.below(87) as u32),
                1 => (1 + rng.below(28) as u32 + offset, 0),
                2 => (30 + rng.below(2) as u32 + offset, 2),
                // A day of 32 to 40 is neither a man's nor a woman's day.
                _ => (32 + rng.below(9) as u32, 1 + rng.below(12) as u32),
            };
            let text = format!("{day:02}{month:02}");
            digits[6..10].copy_from_slice(text.as_bytes());
        }
        // Serial 0000.
        4 => digits[12..16].copy_from_slice(b"0000"),
        // One digit mistyped, into a NIK that happens to belong to nobody.
        _ => loop {
            let mut typo = digits.clone();
            let at = rng.index(typo.len());
            let d = b'0' + ((typo[at] - b'0' + 1 + rng.below(9) as u8) % 10);
            typo[at] = d;
            let text = String::from_utf8(typo).expect("digits are ASCII");
            if !known.contains(text.as_str()) {
                return text;
            }
        },
    }
    String::from_utf8(digits).expect("digits are ASCII")
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Why a dataset could not be written; every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The database already exists: seeding never overwrites data.
    #[error("refusing to seed {}: the file already exists", path.display())]
    Exists {
        /// The database file.
        path: PathBuf,
    },
    /// A file-system operation (creating the directory, renaming the file) failed.
    #[error("cannot seed {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database server failed while writing the dataset (the table is named, never the
    /// URL, which may hold a password).
    #[error("cannot seed {table}: {source}")]
    Server {
        /// `schema.table`.
        table: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// SQLite failed while writing the dataset.
    #[error("cannot seed {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
}

const RESIDENTS_SCHEMA: &str = "CREATE TABLE residents (nik TEXT PRIMARY KEY, full_name TEXT NOT NULL, sex TEXT NOT NULL CHECK (sex IN ('M','F')), birth_date TEXT NOT NULL, province TEXT NOT NULL, citizenship TEXT NOT NULL CHECK (citizenship IN ('WNI','WNA')), deceased INTEGER NOT NULL CHECK (deceased IN (0,1)))";
const PLACEMENTS_SCHEMA: &str = "CREATE TABLE placements (id INTEGER PRIMARY KEY, nik TEXT NOT NULL, country TEXT NOT NULL, agency TEXT NOT NULL, occupation TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('active','completed')), start_date TEXT NOT NULL, end_date TEXT)";
const PLACEMENTS_INDEX: &str = "CREATE INDEX placements_nik ON placements(nik)";
const PARTICIPANTS_SCHEMA: &str = "CREATE TABLE participants (nik TEXT PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('active','inactive')), programs TEXT NOT NULL, paid_until TEXT NOT NULL)";
const REPORTS_SCHEMA: &str = "CREATE TABLE reports (id INTEGER PRIMARY KEY, nik TEXT NOT NULL, full_name TEXT NOT NULL, country TEXT NOT NULL, city TEXT NOT NULL, reported_on TEXT NOT NULL)";
const REPORTS_INDEX: &str = "CREATE INDEX reports_nik ON reports(nik)";

/// Bound parameters per statement: 999 was SQLite's limit before 3.32 and is still the limit
/// of some system builds, so staying under it works with any SQLite.
const MAX_PARAMS: usize = 999;

/// Writes one dataset into a new SQLite database file at `path` (parent directories are
/// created) and returns the number of rows written.
///
/// The rows go to `<path>.tmp` first (WAL journal, one transaction, multi-row INSERTs with
/// bound parameters) and the file is renamed to `path` only once complete and closed, so an
/// interrupted seed never leaves a half-filled database that looks complete; a leftover
/// `.tmp` from an interrupted run is replaced. Refuses with [`SeedError::Exists`] if `path`
/// exists, because seeding must never overwrite a member's data.
pub async fn write_dataset(
    pop: &Population,
    dataset: Dataset,
    path: &Path,
) -> Result<usize, SeedError> {
    let io = |source| SeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let exists = || SeedError::Exists {
        path: path.to_path_buf(),
    };
    if tokio::fs::try_exists(path).await.map_err(io)? {
        return Err(exists());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let tmp = with_suffix(path, ".tmp");
    remove_database(&tmp).await.map_err(io)?;

    let written = match fill_file(pop, dataset, &tmp).await {
        Ok(rows) => rows,
        Err(source) => {
            // Best effort: the error being reported matters more than the cleanup's.
            let _ = remove_database(&tmp).await;
            return Err(SeedError::Sqlite {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // Someone may have seeded the same path meanwhile; rename would silently replace it.
    if tokio::fs::try_exists(path).await.map_err(io)? {
        let _ = remove_database(&tmp).await;
        return Err(exists());
    }
    tokio::fs::rename(&tmp, path).await.map_err(io)?;
    tracing::debug!(dataset = dataset.table(), rows = written, path = %path.display(), "seeded");
    Ok(written)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a database file and its WAL companions, if present.
async fn remove_database(path: &Path) -> std::io::Result<()> {
    for file in [
        path.to_path_buf(),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
    ] {
        match tokio::fs::remove_file(&file).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Creates the database at `path`, fills it and closes it. Closing the last connection
/// checkpoints the WAL into the file and deletes it, so the file alone is the database when
/// it is renamed (and it stays in WAL mode: that is recorded in the file).
async fn fill_file(pop: &Population, dataset: Dataset, path: &Path) -> Result<usize, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let mut conn = options.connect().await?;
    let filled = fill(&mut conn, pop, dataset).await;
    let closed = conn.close().await;
    let rows = filled?;
    closed?;
    Ok(rows)
}

async fn fill(
    conn: &mut SqliteConnection,
    pop: &Population,
    dataset: Dataset,
) -> Result<usize, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let rows = match dataset {
        Dataset::Residents => {
            sqlx::query(RESIDENTS_SCHEMA).execute(&mut *tx).await?;
            insert(
                &mut tx,
                "INSERT INTO residents (nik, full_name, sex, birth_date, province, citizenship, deceased)",
                7,
                pop.residents.len(),
                |args, i| {
                    let r = &pop.residents[i];
                    args.add(r.nik.as_str())?;
                    args.add(r.full_name.as_str())?;
                    args.add(if r.female { "F" } else { "M" })?;
                    args.add(r.birth.to_string())?;
                    args.add(province_name(r.province))?;
                    args.add(if r.wna { "WNA" } else { "WNI" })?;
                    args.add(i64::from(r.deceased))
                },
            )
            .await?
        }
        Dataset::Placements => {
            sqlx::query(PLACEMENTS_SCHEMA).execute(&mut *tx).await?;
            let rows = insert(
                &mut tx,
                "INSERT INTO placements (id, nik, country, agency, occupation, status, start_date, end_date)",
                8,
                pop.placements.len(),
                |args, i| {
                    let p = &pop.placements[i];
                    args.add(p.id)?;
                    args.add(pop.residents[p.person].nik.as_str())?;
                    args.add(p.country)?;
                    args.add(p.agency)?;
                    args.add(p.occupation)?;
                    args.add(if p.active { "active" } else { "completed" })?;
                    args.add(p.start.to_string())?;
                    args.add(p.end.map(|d| d.to_string()))
                },
            )
            .await?;
            // Indexing after the inserts is faster than maintaining the index row by row.
            sqlx::query(PLACEMENTS_INDEX).execute(&mut *tx).await?;
            rows
        }
        Dataset::Participants => {
            sqlx::query(PARTICIPANTS_SCHEMA).execute(&mut *tx).await?;
            insert(
                &mut tx,
                "INSERT INTO participants (nik, status, programs, paid_until)",
                4,
                pop.participants.len(),
                |args, i| {
                    let p = &pop.participants[i];
                    args.add(pop.residents[p.person].nik.as_str())?;
                    args.add(if p.active { "active" } else { "inactive" })?;
                    args.add(p.programs)?;
                    args.add(p.paid_until.to_string())
                },
            )
            .await?
        }
        Dataset::Reports => {
            sqlx::query(REPORTS_SCHEMA).execute(&mut *tx).await?;
            let rows = insert(
                &mut tx,
                "INSERT INTO reports (id, nik, full_name, country, city, reported_on)",
                6,
                pop.reports.len(),
                |args, i| {
                    let r = &pop.reports[i];
                    args.add(r.id)?;
                    args.add(r.nik.as_str())?;
                    args.add(r.full_name.as_str())?;
                    args.add(r.country)?;
                    args.add(r.city.as_str())?;
                    args.add(r.reported_on.to_string())
                },
            )
            .await?;
            sqlx::query(REPORTS_INDEX).execute(&mut *tx).await?;
            rows
        }
    };
    tx.commit().await?;
    Ok(rows)
}

/// Inserts `rows` rows with multi-row INSERTs of as many rows as fit under [`MAX_PARAMS`].
/// `bind(args, i)` adds row `i`'s `columns` values. The statement text holds only `?`
/// placeholders (never values), and the full-batch text is built once so SQLite prepares it
/// once.
async fn insert<F>(
    conn: &mut SqliteConnection,
    prefix: &str,
    columns: usize,
    rows: usize,
    mut bind: F,
) -> Result<usize, sqlx::Error>
where
    F: FnMut(&mut SqliteArguments, usize) -> Result<(), sqlx::error::BoxDynError>,
{
    let per_batch = MAX_PARAMS / columns;
    let full: Arc<str> = insert_sql(prefix, columns, per_batch).into();
    let mut start = 0;
    while start < rows {
        let count = per_batch.min(rows - start);
        let sql: Arc<str> = if count == per_batch {
            Arc::clone(&full)
        } else {
            insert_sql(prefix, columns, count).into()
        };
        let mut args = SqliteArguments::default();
        for i in start..start + count {
            bind(&mut args, i).map_err(sqlx::Error::Encode)?;
        }
        // Safe to assert: the text is our constant prefix and `?` placeholders only.
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await?;
        start += count;
    }
    Ok(rows)
}

fn insert_sql(prefix: &str, columns: usize, rows: usize) -> String {
    let tuple = format!("({})", vec!["?"; columns].join(","));
    let mut sql = String::with_capacity(prefix.len() + 8 + rows * (tuple.len() + 1));
    sql.push_str(prefix);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&tuple);
    }
    sql
}

// ---------------------------------------------------------------------------------------------
// Writing to a database server (PostgreSQL, MySQL/MariaDB)
// ---------------------------------------------------------------------------------------------

/// A database server to seed a dataset into (`simpul up --backend postgres`): the dataset's
/// table goes into `schema`, a PostgreSQL schema or a MySQL/MariaDB database, so each member
/// keeps its own namespace on one shared demo server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTarget {
    /// `postgres://…` or `mysql://…`/`mariadb://…`. For PostgreSQL the database in the URL
    /// is created if it is missing.
    pub url: String,
    /// The schema (PostgreSQL) or database (MySQL/MariaDB): a plain identifier.
    pub schema: String,
}

/// The SQL that differs between the two servers; everything else is one code path.
#[derive(Clone, Copy)]
struct ServerDialect {
    create_schema: &'static str,
    /// `{s}` is the schema, `{t}` the table.
    rename: &'static str,
}

const POSTGRES: ServerDialect = ServerDialect {
    create_schema: "CREATE SCHEMA IF NOT EXISTS {s}",
    rename: "ALTER TABLE {s}.{t}_seeding RENAME TO {t}",
};

const MYSQL: ServerDialect = ServerDialect {
    create_schema: "CREATE DATABASE IF NOT EXISTS {s} CHARACTER SET utf8mb4",
    rename: "RENAME TABLE {s}.{t}_seeding TO {s}.{t}",
};

/// Column types both servers accept. Dates stay `YYYY-MM-DD` text as in SQLite, so the
/// demo's statements (which select them as text) run unchanged on every backend; `deceased`
/// is a real BOOLEAN (a `TINYINT(1)` on MySQL), which the adapters read as the same JSON.
fn server_schema(
    dataset: Dataset,
) -> (&'static str, &'static [&'static str], Option<&'static str>) {
    match dataset {
        Dataset::Residents => (
            "nik VARCHAR(32) PRIMARY KEY, full_name VARCHAR(200) NOT NULL, sex CHAR(1) NOT NULL CHECK (sex IN ('M','F')), birth_date VARCHAR(10) NOT NULL, province VARCHAR(64) NOT NULL, citizenship VARCHAR(3) NOT NULL CHECK (citizenship IN ('WNI','WNA')), deceased BOOLEAN NOT NULL",
            &[
                "nik",
                "full_name",
                "sex",
                "birth_date",
                "province",
                "citizenship",
                "deceased",
            ],
            None,
        ),
        Dataset::Placements => (
            "id BIGINT PRIMARY KEY, nik VARCHAR(32) NOT NULL, country VARCHAR(2) NOT NULL, agency VARCHAR(200) NOT NULL, occupation VARCHAR(100) NOT NULL, status VARCHAR(16) NOT NULL CHECK (status IN ('active','completed')), start_date VARCHAR(10) NOT NULL, end_date VARCHAR(10)",
            &[
                "id",
                "nik",
                "country",
                "agency",
                "occupation",
                "status",
                "start_date",
                "end_date",
            ],
            Some("nik"),
        ),
        Dataset::Participants => (
            "nik VARCHAR(32) PRIMARY KEY, status VARCHAR(16) NOT NULL CHECK (status IN ('active','inactive')), programs VARCHAR(64) NOT NULL, paid_until VARCHAR(10) NOT NULL",
            &["nik", "status", "programs", "paid_until"],
            None,
        ),
        Dataset::Reports => (
            "id BIGINT PRIMARY KEY, nik VARCHAR(32) NOT NULL, full_name VARCHAR(200) NOT NULL, country VARCHAR(2) NOT NULL, city VARCHAR(100) NOT NULL, reported_on VARCHAR(10) NOT NULL",
            &["id", "nik", "full_name", "country", "city", "reported_on"],
            Some("nik"),
        ),
    }
}

/// One value of a seeded row.
enum Cell {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
}

/// Row `i` of `dataset`, in the column order of [`server_schema`].
fn server_row(pop: &Population, dataset: Dataset, i: usize) -> Vec<Cell> {
    use Cell::{Bool, Int, OptText, Text};
    match dataset {
        Dataset::Residents => {
            let r = &pop.residents[i];
            vec![
                Text(r.nik.clone()),
                Text(r.full_name.clone()),
                Text(if r.female { "F" } else { "M" }.into()),
                Text(r.birth.to_string()),
                Text(province_name(r.province).into()),
                Text(if r.wna { "WNA" } else { "WNI" }.into()),
                Bool(r.deceased),
            ]
        }
        Dataset::Placements => {
            let p = &pop.placements[i];
            vec![
                Int(p.id),
                Text(pop.residents[p.person].nik.clone()),
                Text(p.country.into()),
                Text(p.agency.into()),
                Text(p.occupation.into()),
                Text(if p.active { "active" } else { "completed" }.into()),
                Text(p.start.to_string()),
                OptText(p.end.map(|d| d.to_string())),
            ]
        }
        Dataset::Participants => {
            let p = &pop.participants[i];
            vec![
                Text(pop.residents[p.person].nik.clone()),
                Text(if p.active { "active" } else { "inactive" }.into()),
                Text(p.programs.into()),
                Text(p.paid_until.to_string()),
            ]
        }
        Dataset::Reports => {
            let r = &pop.reports[i];
            vec![
                Int(r.id),
                Text(r.nik.clone()),
                Text(r.full_name.clone()),
                Text(r.country.into()),
                Text(r.city.clone()),
                Text(r.reported_on.to_string()),
            ]
        }
    }
}

/// Bound parameters per INSERT: both servers allow 65,535 per statement.
const MAX_SERVER_PARAMS: usize = 60_000;

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// Writes one dataset into `target`'s schema and returns the rows written, or `None` when
/// the table is already there (seeding never overwrites a member's data).
///
/// The rows go to `<table>_seeding` first, in one transaction, and the table is renamed
/// only when complete, so an interrupted seed never leaves a half-filled table that looks
/// complete; a leftover `_seeding` table from an interrupted run is replaced.
pub async fn write_dataset_server(
    pop: &Population,
    dataset: Dataset,
    target: &ServerTarget,
) -> Result<Option<usize>, SeedError> {
    let at = format!("{}.{}", target.schema, dataset.table());
    let err = |source| SeedError::Server {
        table: at.clone(),
        source,
    };
    if !is_identifier(&target.schema) {
        return Err(err(sqlx::Error::Configuration(
            "the schema must be a plain identifier".into(),
        )));
    }
    let scheme = target.url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("postgres" | "postgresql") => {
            ensure_postgres_database(&target.url).await.map_err(err)?;
            // `DROP TABLE IF EXISTS` of a missing table is a NOTICE: not worth a log line.
            let options =
                <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&target.url)
                    .map_err(err)?
                    .options([("client_min_messages", "warning")]);
            let mut conn = options.connect().await.map_err(err)?;
            let written =
                fill_server::<sqlx::Postgres>(&mut conn, pop, dataset, &target.schema, POSTGRES)
                    .await;
            let _ = conn.close().await;
            written.map_err(err)
        }
        Some("mysql" | "mariadb") => {
            let mut conn = sqlx::MySqlConnection::connect(&target.url)
                .await
                .map_err(err)?;
            let written =
                fill_server::<sqlx::MySql>(&mut conn, pop, dataset, &target.schema, MYSQL).await;
            let _ = conn.close().await;
            written.map_err(err)
        }
        _ => Err(err(sqlx::Error::Configuration(
            "not a postgres:// or mysql:// URL".into(),
        ))),
    }
}

/// True when `target` already holds the dataset's table (so `simpul up` leaves it alone and
/// need not generate the population). For PostgreSQL the URL's database is created first if
/// it is missing.
pub async fn server_has_dataset(
    target: &ServerTarget,
    dataset: Dataset,
) -> Result<bool, SeedError> {
    let table = dataset.table();
    let err = |source| SeedError::Server {
        table: format!("{}.{table}", target.schema),
        source,
    };
    if !is_identifier(&target.schema) {
        return Err(err(sqlx::Error::Configuration(
            "the schema must be a plain identifier".into(),
        )));
    }
    // Safe to assert: the checked schema identifier and a constant table name.
    let count = AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = '{table}'",
        target.schema
    ));
    let n: i64 = match target.url.split_once("://").map(|(s, _)| s) {
        Some("postgres" | "postgresql") => {
            ensure_postgres_database(&target.url).await.map_err(err)?;
            let mut conn = sqlx::PgConnection::connect(&target.url)
                .await
                .map_err(err)?;
            let n = sqlx::query_scalar(count).fetch_one(&mut conn).await;
            let _ = conn.close().await;
            n.map_err(err)?
        }
        Some("mysql" | "mariadb") => {
            let mut conn = sqlx::MySqlConnection::connect(&target.url)
                .await
                .map_err(err)?;
            let n = sqlx::query_scalar(count).fetch_one(&mut conn).await;
            let _ = conn.close().await;
            n.map_err(err)?
        }
        _ => {
            return Err(err(sqlx::Error::Configuration(
                "not a postgres:// or mysql:// URL".into(),
            )));
        }
    };
    Ok(n > 0)
}

/// Creates the database the PostgreSQL URL names, if it is missing, by way of the server's
/// `postgres` maintenance database.
async fn ensure_postgres_database(url: &str) -> Result<(), sqlx::Error> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if !is_identifier(&name) {
        return Err(sqlx::Error::Configuration(
            format!("database name `{name}`: use letters, digits and `_` only").into(),
        ));
    }
    let mut conn = options.database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Safe to assert: `name` is checked to be a plain identifier above.
        let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await;
        match created {
            // 42P04: created meanwhile by someone else, which is just as good.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            other => {
                other?;
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// The one code path for both servers: schema, staging table, batched multi-row INSERTs
/// with bound values (placeholders written by sqlx's `QueryBuilder` in the server's own
/// style), index, rename.
async fn fill_server<DB>(
    conn: &mut DB::Connection,
    pop: &Population,
    dataset: Dataset,
    schema: &str,
    dialect: ServerDialect,
) -> Result<Option<usize>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row;
    let table = dataset.table();
    // Safe to assert in this function: the texts are constants with the checked schema
    // identifier and a constant table name formatted in; values are always bound.
    let sql = |text: String| AssertSqlSafe(text);
    let fill = |template: &str| template.replace("{s}", schema).replace("{t}", table);
    let existing = sqlx::query(sql(format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '{table}'"
    )))
    .fetch_one(&mut *conn)
    .await?
    .try_get::<i64, _>(0usize)?;
    if existing > 0 {
        return Ok(None);
    }
    let (columns_ddl, columns, index) = server_schema(dataset);
    sqlx::query(sql(fill(dialect.create_schema)))
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql(format!(
        "DROP TABLE IF EXISTS {schema}.{table}_seeding"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(sql(format!(
        "CREATE TABLE {schema}.{table}_seeding ({columns_ddl})"
    )))
    .execute(&mut *conn)
    .await?;
    let rows = pop.rows(dataset);
    let per_batch = MAX_SERVER_PARAMS / columns.len();
    let prefix = format!(
        "INSERT INTO {schema}.{table}_seeding ({}) ",
        columns.join(", ")
    );
    sqlx::query(sql("BEGIN".into())).execute(&mut *conn).await?;
    let mut start = 0;
    while start < rows {
        let end = (start + per_batch).min(rows);
        let mut insert = sqlx::QueryBuilder::<DB>::new(prefix.as_str());
        insert.push_values(start..end, |mut b, i| {
            for cell in server_row(pop, dataset, i) {
                match cell {
                    Cell::Text(v) => b.push_bind(v),
                    Cell::OptText(v) => b.push_bind(v),
                    Cell::Int(v) => b.push_bind(v),
                    Cell::Bool(v) => b.push_bind(v),
                };
            }
        });
        insert.build().execute(&mut *conn).await?;
        start = end;
    }
    sqlx::query(sql("COMMIT".into()))
        .execute(&mut *conn)
        .await?;
    if let Some(column) = index {
        // Indexing after the inserts is faster than maintaining the index row by row.
        sqlx::query(sql(format!(
            "CREATE INDEX {table}_{column} ON {schema}.{table}_seeding ({column})"
        )))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(sql(fill(dialect.rename)))
        .execute(&mut *conn)
        .await?;
    tracing::debug!(dataset = table, rows, schema, "seeded on a database server");
    Ok(Some(rows))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;
    use std::collections::HashMap;

    fn config(people: u32) -> SeedConfig {
        SeedConfig {
            people,
            ..SeedConfig::default()
        }
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 0 (from the published C code): if these
        // change, every seed's data changes.
        let mut rng = SplitMix64 { state: 0 };
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn calendar_round_trips_and_knows_leap_years() {
        assert_eq!(Day::from_ymd(1970, 1, 1), Day(0));
        assert_eq!(
            Day::from_ymd(2000, 3, 1).0 - Day::from_ymd(2000, 2, 28).0,
            2
        );
        assert_eq!(
            Day::from_ymd(1900, 3, 1).0 - Day::from_ymd(1900, 2, 28).0,
            1
        );
        let mut day = Day::from_ymd(1949, 12, 31);
        while day <= Day::from_ymd(2030, 1, 1) {
            let (y, m, d) = day.ymd();
            assert!(d >= 1 && d <= days_in_month(y, m));
            assert_eq!(Day::from_ymd(y, m, d), day);
            day = day.plus(1);
        }
        assert_eq!(Day::from_ymd(2024, 2, 29).to_string(), "2024-02-29");
        assert_eq!(
            Day::from_ymd(2024, 2, 29).plus_years(1).to_string(),
            "2025-02-28"
        );
        assert_eq!(
            Day::from_ymd(2024, 1, 31).plus_months(1).to_string(),
            "2024-02-29"
        );
        assert_eq!(
            Day::from_ymd(2023, 2, 10).month_end().to_string(),
            "2023-02-28"
        );
    }

    #[test]
    fn nik_rules() {
        // Jawa Barat, regency 01, district 01, a woman born 5 July 1995, serial 0001.
        assert!(nik_is_valid("3201014507950001"));
        assert!(nik_is_valid("3201010507950001"));
        assert!(nik_is_valid("3578017112990123")); // 31 December, a woman
        assert!(nik_is_valid("9601012902000001")); // 29 February 2000
        assert!(!nik_is_valid("320101450795000")); // 15 digits
        assert!(!nik_is_valid("32010145079500011")); // 17 digits
        assert!(!nik_is_valid("32010145079500a1")); // not a digit
        assert!(!nik_is_valid("3701014507950001")); // province 37
        assert!(!nik_is_valid("1001014507950001")); // province 10
        assert!(!nik_is_valid("3200014507950001")); // regency 00
        assert!(!nik_is_valid("3201004507950001")); // district 00
        assert!(!nik_is_valid("3201013502950001")); // 35 is no day
        assert!(!nik_is_valid("3201017002950001")); // 30 February, a woman
        assert!(!nik_is_valid("3201012902010001")); // 29 February 2001
        assert!(!nik_is_valid("3201013104950001")); // 31 April
        assert!(!nik_is_valid("3201010513950001")); // month 13
        assert!(!nik_is_valid("3201010500950001")); // month 00
        assert!(!nik_is_valid("3201010007950001")); // day 00
        assert!(!nik_is_valid("3201014007950001")); // day 40
        assert!(!nik_is_valid("3201014507950000")); // serial 0000
    }

    #[test]
    fn generation_is_deterministic() {
        let cfg = config(5_000);
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.residents, b.residents);
        assert_eq!(a.placements, b.placements);
        assert_eq!(a.participants, b.participants);
        assert_eq!(a.reports, b.reports);
        assert_eq!(a.sample_in_all_four(), b.sample_in_all_four());
        assert_eq!(a.sample_dukcapil_only(), b.sample_dukcapil_only());

        let c = generate(&SeedConfig {
            seed: cfg.seed + 1,
            ..cfg.clone()
        });
        assert_ne!(a.residents, c.residents);
        assert_ne!(a.reports, c.reports);
        assert_ne!(a.sample_in_all_four(), c.sample_in_all_four());
    }

    /// FNV-1a over every row as it is written to the database, so the pin below covers all
    /// four datasets without storing them.
    fn fingerprint(pop: &Population) -> u64 {
        let mut hash = 0xCBF2_9CE4_8422_2325u64;
        let mut eat = |text: String| {
            for b in text.bytes().chain([b'\n']) {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
            }
        };
        for r in &pop.residents {
            eat(format!(
                "{}|{}|{}|{}|{}|{}|{}",
                r.nik, r.full_name, r.female, r.birth, r.province, r.wna, r.deceased
            ));
        }
        for p in &pop.placements {
            eat(format!(
                "{}|{}|{}|{}|{}|{}|{}|{:?}",
                p.id,
                pop.residents[p.person].nik,
                p.country,
                p.agency,
                p.occupation,
                p.active,
                p.start,
                p.end.map(|d| d.to_string())
            ));
        }
        for p in &pop.participants {
            eat(format!(
                "{}|{}|{}|{}",
                pop.residents[p.person].nik, p.active, p.programs, p.paid_until
            ));
        }
        for r in &pop.reports {
            eat(format!(
                "{}|{}|{}|{}|{}|{}|{}",
                r.id, r.nik, r.full_name, r.country, r.city, r.reported_on, r.invalid
            ));
        }
        hash
    }

    #[test]
    fn pinned_output_for_the_default_seed() {
        // Guards "identical on every machine and every future version". If this fails, the
        // demo data changed for everyone: update the pins only on purpose, and say so.
        let pop = generate(&config(2_000));
        let first = &pop.residents[0];
        assert_eq!(
            format!("{} {} {}", first.nik, first.full_name, first.birth),
            "5279134206860125 Rosa Permatasari 1986-06-02"
        );
        assert_eq!(
            (pop.sample_in_all_four(), pop.sample_dukcapil_only()),
            ("5111371406750199", "1474035308660093")
        );
        assert_eq!(format!("{:016x}", fingerprint(&pop)), "d8d770eafd3ac42a");
    }

    #[test]
    fn residents_are_valid_unique_and_consistent() {
        let pop = generate(&config(20_000));
        assert_eq!(pop.rows(Dataset::Residents), 20_000);
        let mut seen = HashSet::new();
        for r in &pop.residents {
            assert!(nik_is_valid(&r.nik), "invalid resident NIK {}", r.nik);
            assert!(seen.insert(r.nik.as_str()), "duplicate NIK {}", r.nik);
            let day: u32 = r.nik[6..8].parse().unwrap();
            assert_eq!(r.female, day > 40, "sex vs NIK day for {}", r.nik);
            let (y, m, d) = r.birth.ymd();
            assert!((1950..=2008).contains(&y));
            assert_eq!(
                &r.nik[6..12],
                format!(
                    "{:02}{m:02}{:02}",
                    d + if r.female { 40 } else { 0 },
                    y % 100
                )
            );
            assert_eq!(r.nik[0..2].parse::<u8>().unwrap(), r.province);
            assert!(!r.full_name.is_empty() && !r.full_name.contains("  "));
        }
        let wna = pop.residents.iter().filter(|r| r.wna).count() as f64 / 20_000.0;
        let dead = pop.residents.iter().filter(|r| r.deceased).count() as f64 / 20_000.0;
        assert!((0.006..0.014).contains(&wna), "WNA share {wna}");
        assert!((0.004..0.010).contains(&dead), "deceased share {dead}");
        let java = pop
            .residents
            .iter()
            .filter(|r| (31..=36).contains(&r.province))
            .count() as f64
            / 20_000.0;
        assert!((0.5..0.62).contains(&java), "Java share {java}");
    }

    #[test]
    fn every_destination_has_cities_and_occupations() {
        for &(country, _) in PLACEMENT_COUNTRIES_FEMALE
            .iter()
            .chain(PLACEMENT_COUNTRIES_MALE)
            .chain(OTHER_COUNTRIES)
        {
            assert!(!cities(country).is_empty(), "{country}");
        }
        for &(country, _) in PLACEMENT_COUNTRIES_FEMALE
            .iter()
            .chain(PLACEMENT_COUNTRIES_MALE)
        {
            let table = OCCUPATIONS
                .iter()
                .find(|o| o.0 == country)
                .expect(country)
                .1;
            assert!(
                table.iter().any(|o| o.1 > 0),
                "{country} has work for women"
            );
            assert!(table.iter().any(|o| o.2 > 0), "{country} has work for men");
        }
    }

    #[test]
    fn invalid_reports_match_nobody_and_valid_ones_do() {
        let pop = generate(&config(20_000));
        let residents: HashSet<&str> = pop.residents.iter().map(|r| r.nik.as_str()).collect();
        let (mut broken, mut typos) = (0, 0);
        for r in &pop.reports {
            if r.invalid {
                assert!(
                    !residents.contains(r.nik.as_str()),
                    "invalid row {} matches",
                    r.nik
                );
                if nik_is_valid(&r.nik) {
                    typos += 1;
                } else {
                    broken += 1;
                }
            } else {
                assert!(
                    residents.contains(r.nik.as_str()),
                    "valid row {} matches nobody",
                    r.nik
                );
            }
        }
        assert!(broken > 0 && typos > 0, "broken {broken}, typos {typos}");
        let lengths: HashSet<usize> = pop.reports.iter().map(|r| r.nik.len()).collect();
        assert!(lengths.contains(&15) && lengths.contains(&17));
    }

    #[test]
    fn datasets_overlap_as_configured() {
        let cfg = config(20_000);
        let pop = generate(&cfg);
        let nik_of: HashMap<&str, usize> = pop
            .residents
            .iter()
            .enumerate()
            .map(|(i, r)| (r.nik.as_str(), i))
            .collect();
        let today = as_of();

        // Placements ⊂ residents, well-formed.
        let mut placed: HashMap<usize, Vec<&Placement>> = HashMap::new();
        for (i, p) in pop.placements.iter().enumerate() {
            assert_eq!(p.id, i as i64 + 1);
            let r = &pop.residents[p.person];
            assert!(!r.wna && !r.deceased);
            assert!(p.start >= r.birth.plus_years(18));
            assert_eq!(p.active, p.end.is_none());
            if let Some(end) = p.end {
                assert!(p.start < end && end < today);
            } else {
                assert!(p.start < today);
            }
            placed.entry(p.person).or_default().push(p);
        }
        for list in placed.values() {
            assert!(list.len() <= 2);
            if let [old, new] = list.as_slice() {
                assert!(!old.active && old.end.unwrap() < new.start);
            }
        }
        let placed_people = placed.len() as f64;
        assert!(
            (placed_people - 0.08 * 20_000.0).abs() <= 1.0,
            "placed {placed_people}"
        );
        let women = placed.keys().filter(|&&i| pop.residents[i].female).count() as f64;
        assert!(women / placed_people > 0.55, "women among placed {women}");

        // Participants ⊂ residents.
        let mut insured_placed = 0;
        for p in &pop.participants {
            assert!(p.person < pop.residents.len());
            assert!(
                ["JKK,JKM", "JKK,JKM,JHT", "JKK,JKM,JP", "JKK,JKM,JHT,JP"].contains(&p.programs)
            );
            if placed.contains_key(&p.person) {
                insured_placed += 1;
            }
        }
        let insured_placed = f64::from(insured_placed);
        let insured_others = pop.participants.len() as f64 - insured_placed;
        let others = 20_000.0 - placed_people - 1.0;
        assert!((insured_placed - 0.8 * placed_people).abs() <= 1.0);
        assert!(
            (insured_others / others - 0.2).abs() < 0.01,
            "insured others {insured_others}"
        );

        // Reports: reporters, duplicates, invalid rows.
        let mut per_person: HashMap<usize, usize> = HashMap::new();
        for r in pop.reports.iter().filter(|r| !r.invalid) {
            *per_person.entry(nik_of[r.nik.as_str()]).or_default() += 1;
        }
        let reported_placed = per_person.keys().filter(|i| placed.contains_key(i)).count() as f64;
        let reported_others = per_person.len() as f64 - reported_placed;
        assert!((reported_placed - 0.6 * placed_people).abs() <= 1.0);
        assert!(
            (reported_others / others - 0.01).abs() < 0.003,
            "others {reported_others}"
        );
        let duplicated = per_person.values().filter(|&&n| n > 1).count() as f64;
        assert!((duplicated - 0.15 * per_person.len() as f64).abs() <= 1.0);
        assert!(per_person.values().all(|&n| (1..=3).contains(&n)));
        let valid_rows = pop.reports.iter().filter(|r| !r.invalid).count() as f64;
        let invalid_rows = pop.reports.len() as f64 - valid_rows;
        assert!((invalid_rows - 0.03 * valid_rows).abs() <= 1.0);
        // Duplicates are on different dates.
        let mut dates: HashSet<(&str, Day)> = HashSet::new();
        for r in pop.reports.iter().filter(|r| !r.invalid) {
            assert!(
                dates.insert((r.nik.as_str(), r.reported_on)),
                "same day twice: {}",
                r.nik
            );
        }
    }

    #[test]
    fn sample_people_have_the_stated_membership() {
        for seed in [1, 2, 3, 20261123] {
            let pop = generate(&SeedConfig {
                seed,
                people: 2_000,
                ..SeedConfig::default()
            });
            let all = pop.sample_in_all_four();
            let only = pop.sample_dukcapil_only();
            assert!(nik_is_valid(all) && nik_is_valid(only));
            assert_ne!(all, only);
            let person = |nik: &str| pop.residents.iter().position(|r| r.nik == nik).unwrap();
            let (a, o) = (person(all), person(only));
            for i in [a, o] {
                assert!(!pop.residents[i].wna && !pop.residents[i].deceased);
            }
            assert!(pop.placements.iter().any(|p| p.person == a && p.active));
            assert!(pop.participants.iter().any(|p| p.person == a && p.active));
            assert!(pop.reports.iter().any(|r| r.nik == all && !r.invalid));

            assert!(!pop.placements.iter().any(|p| p.person == o));
            assert!(!pop.participants.iter().any(|p| p.person == o));
            assert!(!pop.reports.iter().any(|r| r.nik == only));
        }
    }

    #[test]
    fn samples_exist_even_with_zero_shares() {
        let zero = SeedConfig {
            people: 20,
            placed_share: 0.0,
            insured_placed_share: 0.0,
            insured_other_share: 1.0,
            reported_placed_share: 0.0,
            reported_other_share: 1.0,
            duplicate_share: 1.0,
            invalid_share: 1.0,
            ..SeedConfig::default()
        };
        let pop = generate(&zero);
        assert!(pop.rows(Dataset::Placements) >= 1);
        assert!(
            pop.participants
                .iter()
                .all(|p| p.person != pop.dukcapil_only)
        );
        assert!(
            pop.reports
                .iter()
                .all(|r| r.nik != pop.sample_dukcapil_only())
        );
        assert!(
            pop.reports
                .iter()
                .any(|r| r.nik == pop.sample_in_all_four())
        );
    }

    #[test]
    fn config_validation_names_the_field() {
        assert_eq!(SeedConfig::default().validate(), Ok(()));
        let err = SeedConfig {
            placed_share: 1.5,
            ..SeedConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            err.starts_with("data.placed_share must be between 0 and 1"),
            "{err}"
        );
        let err = SeedConfig {
            invalid_share: f64::NAN,
            ..SeedConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.starts_with("data.invalid_share "), "{err}");
        let err = SeedConfig {
            duplicate_share: -0.1,
            ..SeedConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.starts_with("data.duplicate_share "), "{err}");
        let err = config(19).validate().unwrap_err();
        assert!(err.starts_with("data.people "), "{err}");
        assert_eq!(config(20).validate(), Ok(()));
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let cfg: SeedConfig = toml::from_str("seed = 7\npeople = 500\n").unwrap();
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.people, 500);
        assert_eq!(cfg.placed_share, 0.08);
        assert!(toml::from_str::<SeedConfig>("peopel = 500\n").is_err());
        let ds: Vec<Dataset> = serde_json::from_str(r#"["residents","reports"]"#).unwrap();
        assert_eq!(ds, [Dataset::Residents, Dataset::Reports]);
    }

    #[tokio::test]
    async fn writes_all_four_datasets_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let pop = generate(&config(2_000));
        for dataset in Dataset::ALL {
            let path = dir
                .path()
                .join("members")
                .join(format!("{}.db", dataset.table()));
            let written = write_dataset(&pop, dataset, &path).await.unwrap();
            assert_eq!(written, pop.rows(dataset));
            assert!(written > 0);
            assert!(!with_suffix(&path, ".tmp").exists());
            assert!(!with_suffix(&path, "-wal").exists());

            let mut conn = SqliteConnectOptions::new()
                .filename(&path)
                .connect()
                .await
                .unwrap();
            let count_sql = format!("SELECT COUNT(*) FROM {}", dataset.table());
            let count: i64 = sqlx::query_scalar(AssertSqlSafe(count_sql))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(count as usize, written);
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");

            let nik = pop.sample_in_all_four();
            match dataset {
                Dataset::Residents => {
                    let row = sqlx::query("SELECT full_name, sex, birth_date, citizenship, deceased FROM residents WHERE nik = ?")
                        .bind(nik)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                    let r = &pop.residents[pop.all_four];
                    assert_eq!(row.get::<String, _>(0), r.full_name);
                    assert_eq!(row.get::<String, _>(1), if r.female { "F" } else { "M" });
                    assert_eq!(row.get::<String, _>(2), r.birth.to_string());
                    assert_eq!(row.get::<String, _>(3), "WNI");
                    assert_eq!(row.get::<i64, _>(4), 0);
                }
                Dataset::Placements => {
                    let row = sqlx::query("SELECT status, end_date FROM placements WHERE nik = ? ORDER BY start_date DESC")
                        .bind(nik)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                    assert_eq!(row.get::<String, _>(0), "active");
                    assert_eq!(row.get::<Option<String>, _>(1), None);
                }
                Dataset::Participants => {
                    let row =
                        sqlx::query("SELECT status, programs FROM participants WHERE nik = ?")
                            .bind(nik)
                            .fetch_one(&mut conn)
                            .await
                            .unwrap();
                    assert_eq!(row.get::<String, _>(0), "active");
                    assert!(row.get::<String, _>(1).starts_with("JKK,JKM"));
                }
                Dataset::Reports => {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE nik = ?")
                        .bind(nik)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                    assert!(n >= 1);
                    let none: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE nik = ?")
                            .bind(pop.sample_dukcapil_only())
                            .fetch_one(&mut conn)
                            .await
                            .unwrap();
                    assert_eq!(none, 0);
                }
            }
            conn.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn refuses_an_existing_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dukcapil.db");
        std::fs::write(&path, b"precious").unwrap();
        let pop = generate(&config(20));
        let err = write_dataset(&pop, Dataset::Residents, &path)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SeedError::Exists { path: p } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains("dukcapil.db"));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        assert!(!with_suffix(&path, ".tmp").exists());
    }

    #[tokio::test]
    async fn replaces_a_stale_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kemlu.db");
        std::fs::write(with_suffix(&path, ".tmp"), b"half a database").unwrap();
        let pop = generate(&config(20));
        let rows = write_dataset(&pop, Dataset::Reports, &path).await.unwrap();
        assert_eq!(rows, pop.rows(Dataset::Reports));
        assert!(!with_suffix(&path, ".tmp").exists());
    }

    #[tokio::test]
    #[ignore = "timing; run with --ignored --nocapture (and --release for real numbers)"]
    async fn full_size_speed() {
        let start = std::time::Instant::now();
        let pop = generate(&SeedConfig::default());
        eprintln!("generated {pop:?} in {:?}", start.elapsed());
        let dir = tempfile::tempdir().unwrap();
        for dataset in Dataset::ALL {
            let start = std::time::Instant::now();
            let path = dir.path().join(format!("{}.db", dataset.table()));
            let rows = write_dataset(&pop, dataset, &path).await.unwrap();
            eprintln!("wrote {rows} {} in {:?}", dataset.table(), start.elapsed());
        }
    }

    /// Seeds every dataset into a fresh schema of the server `var` names (skipped when it is
    /// not set), checks the row counts and the demo's own statement, and that a second seed
    /// leaves the tables alone.
    async fn seeds_a_database_server(var: &str, drop: &str) {
        let Ok(url) = std::env::var(var) else {
            eprintln!("skipped: {var} is not set");
            return;
        };
        let pop = generate(&config(300));
        let schema = format!(
            "simpul_seed_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros()
                % 1_000_000_000
        );
        let target = ServerTarget {
            url: url.clone(),
            schema: schema.clone(),
        };
        for dataset in Dataset::ALL {
            assert!(!server_has_dataset(&target, dataset).await.unwrap());
            let rows = write_dataset_server(&pop, dataset, &target).await.unwrap();
            assert_eq!(rows, Some(pop.rows(dataset)), "{dataset:?}");
            assert!(server_has_dataset(&target, dataset).await.unwrap());
            assert_eq!(
                write_dataset_server(&pop, dataset, &target).await.unwrap(),
                None
            );
        }
        let nik = pop.sample_in_all_four();
        let drop_sql = AssertSqlSafe(drop.replace("{s}", &schema));
        if url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let sql =
                format!("SELECT citizenship, deceased FROM {schema}.residents WHERE nik = $1");
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(nik)
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(row.get::<String, _>(0), "WNI");
            assert!(!row.get::<bool, _>(1));
            sqlx::raw_sql(drop_sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            let sql = format!("SELECT citizenship, deceased FROM {schema}.residents WHERE nik = ?");
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(nik)
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(row.get::<String, _>(0), "WNI");
            assert!(!row.get::<bool, _>(1));
            sqlx::raw_sql(drop_sql).execute(&mut c).await.unwrap();
        }
    }

    #[tokio::test]
    async fn seeds_every_dataset_into_postgres_once() {
        seeds_a_database_server("SIMPUL_TEST_POSTGRES_URL", "DROP SCHEMA {s} CASCADE").await;
    }

    #[tokio::test]
    async fn seeds_every_dataset_into_mariadb_once() {
        seeds_a_database_server("SIMPUL_TEST_MYSQL_URL", "DROP DATABASE {s}").await;
    }
}
