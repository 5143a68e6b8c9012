//! The `[data]` section: how many synthetic people there are and how their records overlap.

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
pub(super) const MAX_PEOPLE: u32 = 10_000_000;

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
    /// BPJS Ketenagakerjaan insurance membership: table `participants` (`nik`, `status`,
    /// `programs`, `paid_until`, and `country`, the destination of the placement a migrant
    /// worker's membership covers, NULL for everyone else).
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
