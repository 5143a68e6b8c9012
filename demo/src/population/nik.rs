//! The NIK: building well-formed ones (province, regency, district, birth date, serial) and checking them.

use super::*;

/// Province codes (Kemendagri), names and weights proportional to the 2020 census population
/// (in units of 100 000), so that Java dominates as it does in reality.
pub(super) const PROVINCES: &[(u8, &str, u32)] = &[
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
pub(super) const WNA_PROVINCES: &[(u8, u32)] =
    &[(31, 40), (51, 20), (21, 10), (36, 10), (32, 10), (35, 10)];

/// Two-digit codes that are no province, for invalid NIKs.
pub(super) const UNKNOWN_PROVINCES: &[u8] = &[
    0, 10, 20, 22, 30, 37, 40, 50, 54, 60, 66, 70, 77, 80, 90, 99,
];

pub(super) fn province_name(code: u8) -> &'static str {
    PROVINCES
        .iter()
        .find(|p| p.0 == code)
        .map(|p| p.1)
        .expect("residents only get known province codes")
}

/// Whether `nik` is well-formed by the catalog's NIK rule ([`contracts::nik::check`]): a
/// structurally valid NIK need not belong to anyone.
pub fn nik_is_valid(nik: &str) -> bool {
    contracts::nik::check(nik).is_ok()
}

pub(super) fn make_nik(
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
