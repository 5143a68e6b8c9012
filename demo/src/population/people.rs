//! The population: residents, placements, insurance and self-reports, generated from one seed.

use super::*;

/// About 1% of residents with a NIK are foreigners (KITAP holders).
pub(super) const WNA_SHARE: f64 = 0.01;
/// Deceased residents still on the register (death not yet reported, or kept for history).
pub(super) const DECEASED_SHARE: f64 = 0.007;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Resident {
    pub(super) nik: String,
    pub(super) full_name: String,
    pub(super) female: bool,
    pub(super) birth: Day,
    pub(super) province: u8,
    pub(super) wna: bool,
    pub(super) deceased: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Placement {
    pub(super) id: i64,
    /// Index into `Population::residents`.
    pub(super) person: usize,
    pub(super) country: &'static str,
    pub(super) agency: &'static str,
    pub(super) occupation: &'static str,
    pub(super) active: bool,
    pub(super) start: Day,
    pub(super) end: Option<Day>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Participant {
    /// Index into `Population::residents`.
    pub(super) person: usize,
    pub(super) active: bool,
    pub(super) programs: &'static str,
    pub(super) paid_until: Day,
    /// The destination of the placement the membership covers: the country of a placed
    /// worker's latest stint; `None` for a member who was never placed.
    pub(super) country: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Report {
    pub(super) id: i64,
    pub(super) nik: String,
    pub(super) full_name: String,
    pub(super) country: &'static str,
    pub(super) city: String,
    pub(super) reported_on: Day,
    /// True for the rows added with a broken or mistyped NIK that matches nobody.
    pub(super) invalid: bool,
}

/// The latest placement of a placed person: the report and insurance stages follow it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stint {
    pub(super) country: &'static str,
    pub(super) start: Day,
    pub(super) end: Option<Day>,
}

/// Everything [`generate`] produced for the four ministries, held in memory until
/// [`write_dataset`] writes each dataset to its member's database.
///
/// Two people are reserved so a demo always has something to show: one who is in all four
/// datasets and one who is only at Dukcapil (see [`Population::sample_in_all_four`]). They
/// exist even when a share in the configuration is 0.
#[derive(Clone)]
pub struct Population {
    pub(super) residents: Vec<Resident>,
    pub(super) placements: Vec<Placement>,
    pub(super) participants: Vec<Participant>,
    pub(super) reports: Vec<Report>,
    pub(super) all_four: usize,
    pub(super) dukcapil_only: usize,
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
pub(super) fn working_age_births() -> (Day, Day) {
    (Day::from_ymd(1966, 1, 1), Day::from_ymd(2004, 12, 31))
}

pub(super) fn generate_residents(
    seed: u64,
    n: usize,
    all_four: usize,
    dukcapil_only: usize,
) -> Vec<Resident> {
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
pub(super) fn place(
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
pub(super) fn choose(
    rng: &mut SplitMix64,
    pool: &[usize],
    count: usize,
    always: Option<usize>,
) -> Vec<usize> {
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

pub(super) fn insure(
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
            country: Some(stint.country),
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
            country: None,
        });
    }
    participants.sort_by_key(|p| p.person);
    participants
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
pub(super) fn report(
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
pub(super) fn corrupt_nik(rng: &mut SplitMix64, nik: &str, known: &HashSet<&str>) -> String {
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
