//! Indonesian and foreign names by region and sex, and the misspellings self-reports carry.

use super::*;

pub(super) const GIVEN_MALE: &[&str] = &[
    "Budi", "Agus", "Slamet", "Joko", "Bambang", "Eko", "Dedi", "Hendra", "Rudi", "Wahyu", "Andi",
    "Asep", "Ujang", "Dadang", "Yusuf", "Ahmad", "Muhammad", "Rizki", "Fajar", "Arif", "Iwan",
    "Sugeng", "Heru", "Teguh", "Bayu", "Dimas", "Gilang", "Rahmat", "Hasan", "Imam", "Ilham",
    "Irfan", "Yoga", "Aditya", "Anton", "Dwi", "Tri", "Sigit", "Wawan", "Dani", "Bagus", "Fikri",
    "Hadi", "Lukman", "Reza", "Taufik", "Yudi", "Zainal", "Dodi", "Rian",
];

pub(super) const GIVEN_FEMALE: &[&str] = &[
    "Siti", "Sri", "Nur", "Dewi", "Ani", "Wati", "Rina", "Yanti", "Indah", "Putri", "Ayu", "Fitri",
    "Nurul", "Ratna", "Yuli", "Eka", "Dwi", "Tri", "Endang", "Rini", "Ika", "Maya", "Novi", "Dian",
    "Wulan", "Intan", "Nining", "Euis", "Neneng", "Aisyah", "Fatimah", "Nia", "Lilis", "Tuti",
    "Murni", "Kurnia", "Rosa", "Yuni", "Nadia", "Anisa", "Desi", "Erna", "Heni", "Ida", "Lina",
    "Mega", "Okta", "Puji", "Sari", "Tika",
];

/// Old-style single names, common among Javanese born before the 1980s.
pub(super) const SINGLE_MALE: &[&str] = &[
    "Sutrisno", "Suparman", "Sukirman", "Paijo", "Tukiman", "Sumarno", "Karyono", "Wagiman",
    "Kasiman", "Suyanto", "Sugiyono", "Parno", "Darmo", "Sarijo", "Mujiono",
];

pub(super) const SINGLE_FEMALE: &[&str] = &[
    "Sumiati", "Suwarni", "Sulastri", "Tumini", "Painem", "Sukini", "Wartini", "Sarinah",
    "Juminah", "Parmi", "Kartini", "Suminah", "Waginem", "Rukmini", "Sutini",
];

pub(super) const SECOND_MALE: &[&str] = &[
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

pub(super) const SECOND_FEMALE: &[&str] = &[
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

pub(super) const CHRISTIAN_MALE: &[&str] = &[
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

pub(super) const CHRISTIAN_FEMALE: &[&str] = &[
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

pub(super) const BATAK_CLANS: &[&str] = &[
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

pub(super) const MINAHASA_CLANS: &[&str] = &[
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

pub(super) const NTT_CLANS: &[&str] = &[
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

pub(super) const MALUKU_CLANS: &[&str] = &[
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
pub(super) const BALI_ORDER_MALE: &[&str] = &[
    "I Wayan", "I Made", "I Nyoman", "I Ketut", "I Putu", "I Gede", "I Komang", "I Kadek",
];
pub(super) const BALI_ORDER_FEMALE: &[&str] = &[
    "Ni Wayan",
    "Ni Made",
    "Ni Nyoman",
    "Ni Ketut",
    "Ni Putu",
    "Ni Luh",
    "Ni Komang",
    "Ni Kadek",
];
pub(super) const BALI_MALE: &[&str] = &[
    "Sudarma", "Suardana", "Artawan", "Budiasa", "Wirawan", "Adnyana", "Sukarta", "Mertha",
    "Widiana", "Astawa",
];
pub(super) const BALI_FEMALE: &[&str] = &[
    "Artini", "Suryani", "Ariani", "Sukerti", "Widiasih", "Astiti", "Sekarini", "Wardani",
    "Sumerti", "Darmini",
];

pub(super) const CHINESE_INDONESIAN_MALE: &[&str] = &[
    "Andy", "Kevin", "Felix", "William", "Vincent", "Hendrik", "Steven", "Johan", "Rudy", "Edwin",
];
pub(super) const CHINESE_INDONESIAN_FEMALE: &[&str] = &[
    "Jessica", "Cindy", "Michelle", "Stella", "Linda", "Lily", "Melinda", "Yenny", "Susan",
    "Vivian",
];
pub(super) const CHINESE_INDONESIAN_FAMILY: &[&str] = &[
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
pub(super) const FOREIGN: &[(&[&str], &[&str], &[&str])] = &[
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

pub(super) fn pick_sexed<'a>(
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
pub(super) fn clan_name(rng: &mut SplitMix64, female: bool, clans: &[&str]) -> String {
    let given = if rng.chance(0.7) {
        pick_sexed(rng, female, CHRISTIAN_MALE, CHRISTIAN_FEMALE)
    } else {
        pick_sexed(rng, female, GIVEN_MALE, GIVEN_FEMALE)
    };
    format!("{given} {}", rng.pick(clans))
}

/// A plausible Indonesian name. Many Indonesians have a single name, many two or three; some
/// regions carry clan names (Batak, Minahasa, NTT, Maluku) or birth-order names (Bali).
pub(super) fn indonesian_name(rng: &mut SplitMix64, female: bool, province: u8) -> String {
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

pub(super) enum Region {
    Bali,
    Clan(&'static [&'static str]),
}

pub(super) fn foreign_name(rng: &mut SplitMix64, female: bool) -> String {
    let (male, fem, family) = rng.pick(FOREIGN);
    let given = pick_sexed(rng, female, male, fem);
    format!("{given} {}", rng.pick(family))
}

/// Self-reported names are typed by the person, on a phone, in a hurry: capitals, lower
/// case, or only the first part of the name.
pub(super) fn messy_name(rng: &mut SplitMix64, name: &str) -> String {
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

pub(super) fn messy_city(rng: &mut SplitMix64, city: &str) -> String {
    match rng.below(100) {
        0..85 => city.to_string(),
        85..95 => city.to_lowercase(),
        _ => city.to_uppercase(),
    }
}
