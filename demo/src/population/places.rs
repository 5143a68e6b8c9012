//! Destinations, cities, agencies and occupations of placements abroad.

use super::*;

/// Destination weights of Indonesian migrant workers (BP2MI placement statistics, roughly),
/// separately for women (domestic and care work dominate) and men.
pub(super) const PLACEMENT_COUNTRIES_FEMALE: &[(&str, u32)] = &[
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

pub(super) const PLACEMENT_COUNTRIES_MALE: &[(&str, u32)] = &[
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
pub(super) const OTHER_COUNTRIES: &[(&str, u32)] = &[
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
pub(super) const CITIES: &[(&str, &[&str])] = &[
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

pub(super) fn cities(country: &str) -> &'static [&'static str] {
    CITIES
        .iter()
        .find(|c| c.0 == country)
        .map(|c| c.1)
        .expect("every destination has cities (checked by a test)")
}

/// Occupations per destination with weights for (women, men): what the placement schemes
/// actually recruit for, e.g. caregivers for Taiwan, factory and fishery work for Korea.
/// Occupations with their weights for women and for men.
pub(super) type Jobs = &'static [(&'static str, u32, u32)];

#[rustfmt::skip] // a table reads best as one row per country
pub(super) const OCCUPATIONS: &[(&str, Jobs)] = &[
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

pub(super) fn occupation(rng: &mut SplitMix64, country: &str, female: bool) -> &'static str {
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
pub(super) const AGENCIES: &[&str] = &[
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

pub(super) fn agency(rng: &mut SplitMix64) -> &'static str {
    let weights: Vec<(&'static str, u32)> = AGENCIES
        .iter()
        .enumerate()
        .map(|(i, &a)| (a, 120 / (i as u32 + 1)))
        .collect();
    rng.weighted(&weights)
}

/// Provinces that send most migrant workers (Jawa Timur, Jawa Tengah, Jawa Barat, NTB, NTT,
/// Lampung, Sumatera Utara, Banten): their residents are favoured when choosing who is placed.
pub(super) fn sending_weight(province: u8, female: bool) -> f64 {
    let base = if matches!(province, 35 | 33 | 32 | 52 | 53 | 18 | 12 | 36) {
        0.8
    } else {
        0.35
    };
    // About two thirds of placed workers are women.
    if female { base } else { base * 0.5 }
}
