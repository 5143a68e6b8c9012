//! The NIK rule of the catalog (PROTOCOL.md §2.4) as code, with the reason a NIK breaks it:
//! what `simpul cleanse` tells an operator about a refused row, and what the provider of
//! `identity.verify` answers as `nik_valid` — the same rule the catalog's pattern states.

use std::fmt;

/// Why a string is not a well-formed NIK: the first rule it breaks, in the order of the
/// NIK's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NikFault {
    /// Not 16 characters (the count found).
    Length(usize),
    /// A character that is not an ASCII digit.
    NotDigits,
    /// `PP` is no province code.
    Province,
    /// `RR`, the regency or city, is `00`.
    Regency,
    /// `DD`, the district, is `00`.
    District,
    /// `DDMMYY` is no date (a day beyond its month, month 00 or 13, 29 February of a year
    /// not divisible by 4, a day of 32–40 or over 71).
    BirthDate,
    /// `SSSS`, the serial, is `0000`.
    Serial,
}

impl fmt::Display for NikFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NikFault::Length(n) => write!(f, "{n} characters, not 16 digits"),
            NikFault::NotDigits => f.write_str("not all digits"),
            NikFault::Province => f.write_str("unknown province code (the first two digits)"),
            NikFault::Regency => f.write_str("regency code 00 (digits 3-4)"),
            NikFault::District => f.write_str("district code 00 (digits 5-6)"),
            NikFault::BirthDate => {
                f.write_str("no real birth date in digits 7-12 (DDMMYY, women +40 on the day)")
            }
            NikFault::Serial => f.write_str("serial number 0000 (the last four digits)"),
        }
    }
}

/// What a well-formed NIK itself says about its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NikFacts {
    /// The province code `PP`.
    pub province: u8,
    /// Day of birth, 1–31 (40 taken off for women).
    pub day: u8,
    /// Month of birth, 1–12.
    pub month: u8,
    /// Year of birth within its century, 0–99 (the NIK does not say which century).
    pub yy: u8,
    /// The day carries the +40 of a woman.
    pub female: bool,
}

/// The province codes the rule accepts: 11–19, 21, 31–36, 51–53, 61–65, 71–76, 81, 82,
/// 91–96.
pub fn is_province(code: u8) -> bool {
    matches!(code, 11..=19 | 21 | 31..=36 | 51..=53 | 61..=65 | 71..=76 | 81 | 82 | 91..=96)
}

/// Checks `nik` against the rule: the facts it carries, or the first fault.
pub fn check(nik: &str) -> Result<NikFacts, NikFault> {
    let chars = nik.chars().count();
    if chars != 16 {
        return Err(NikFault::Length(chars));
    }
    let b = nik.as_bytes();
    if b.len() != 16 || !b.iter().all(u8::is_ascii_digit) {
        return Err(NikFault::NotDigits);
    }
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let province = two(0);
    if !is_province(province) {
        return Err(NikFault::Province);
    }
    if two(2) == 0 {
        return Err(NikFault::Regency);
    }
    if two(4) == 0 {
        return Err(NikFault::District);
    }
    let (day, female) = match two(6) {
        d @ 41..=71 => (d - 40, true),
        d => (d, false),
    };
    let (month, yy) = (two(8), two(10));
    let max_day = match month {
        2 if yy % 4 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return Err(NikFault::BirthDate),
    };
    if day == 0 || day > max_day {
        return Err(NikFault::BirthDate);
    }
    if &b[12..] == b"0000" {
        return Err(NikFault::Serial);
    }
    Ok(NikFacts {
        province,
        day,
        month,
        yy,
        female,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_examples_and_each_fault() {
        let facts = check("5111371406750199").unwrap();
        assert_eq!(
            (facts.day, facts.month, facts.yy, facts.female),
            (14, 6, 75, false)
        );
        assert!(check("3578017112990123").unwrap().female); // 31 December, a woman
        assert!(check("9601012902000001").is_ok()); // 29 February 2000
        for (nik, fault) in [
            ("320101450795000", NikFault::Length(15)),
            ("32010145079500011", NikFault::Length(17)),
            ("32010145079500a1", NikFault::NotDigits),
            ("３２01014507950001", NikFault::NotDigits),
            ("3701014507950001", NikFault::Province),
            ("3200014507950001", NikFault::Regency),
            ("3201004507950001", NikFault::District),
            ("5111373102750199", NikFault::BirthDate), // 31 February
            ("3201012902010001", NikFault::BirthDate), // 29 February 2001
            ("3201010513950001", NikFault::BirthDate), // month 13
            ("3201014007950001", NikFault::BirthDate), // day 40
            ("3201017202950001", NikFault::BirthDate), // day 72
            ("3201014507950000", NikFault::Serial),
        ] {
            assert_eq!(check(nik), Err(fault), "{nik}");
        }
    }

    /// The rule as code and the rule as the catalog's pattern agree, on every date of a
    /// four-year cycle, every two-digit province, and the edges of the other parts.
    #[test]
    fn the_code_and_the_catalogs_pattern_agree() {
        let catalog = crate::embedded_catalog().unwrap();
        let contract = catalog
            .iter()
            .find(|c| c.doc().id == "citizenship.status")
            .unwrap();
        let pattern = contract.doc().request["properties"]["nik"]["pattern"]
            .as_str()
            .unwrap();
        let schema = serde_json::json!({"type": "string", "pattern": pattern});
        let validator = jsonschema::draft202012::options().build(&schema).unwrap();
        let mut tried = 0;
        let mut agree = |nik: String| {
            tried += 1;
            assert_eq!(
                check(&nik).is_ok(),
                validator.is_valid(&serde_json::Value::String(nik.clone())),
                "{nik}"
            );
        };
        for pp in 0..100 {
            agree(format!("{pp:02}0101010195 0001").replace(' ', ""));
        }
        for dd in 0..100 {
            for mm in 0..14 {
                for yy in [0, 1, 2, 3, 4, 99] {
                    agree(format!("320101{dd:02}{mm:02}{yy:02}0001"));
                }
            }
        }
        for (rr, d, s) in [
            (0, 1, 1),
            (1, 0, 1),
            (1, 1, 0),
            (99, 99, 9999),
            (10, 10, 10),
        ] {
            agree(format!("32{rr:02}{d:02}010195{s:04}"));
        }
        assert!(tried > 8_000);
    }
}
