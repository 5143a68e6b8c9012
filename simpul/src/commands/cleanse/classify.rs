//! One reason for every row, the first that applies in a fixed order: `invalid-nik`,
//! `duplicate`, `not-registered`, `deceased`, `foreign-national`, `name-mismatch`,
//! `birth-date-mismatch`, else `kept`.

use super::verify::{Check, Citizenship, NameVerdict};
use super::work::StoredRow;

/// Why a row is kept or rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Kept: a well-formed, registered NIK of a living citizen, the name not another's and
    /// the birth date not another's.
    Kept,
    /// Another row of the same person was kept.
    Duplicate,
    /// The NIK breaks the NIK rule.
    InvalidNik,
    /// The NIK is not in the population register.
    NotRegistered,
    /// A death is recorded for the NIK.
    Deceased,
    /// The NIK's holder is a foreign national.
    ForeignNational,
    /// The registry holds another name for the NIK.
    NameMismatch,
    /// The registry holds another birth date for the NIK.
    BirthDateMismatch,
}

impl Reason {
    /// Every reason, kept first, then in the order of precedence.
    pub const ALL: [Reason; 8] = [
        Reason::Kept,
        Reason::InvalidNik,
        Reason::Duplicate,
        Reason::NotRegistered,
        Reason::Deceased,
        Reason::ForeignNational,
        Reason::NameMismatch,
        Reason::BirthDateMismatch,
    ];

    /// The word written in the rejects file and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Kept => "kept",
            Reason::Duplicate => "duplicate",
            Reason::InvalidNik => "invalid-nik",
            Reason::NotRegistered => "not-registered",
            Reason::Deceased => "deceased",
            Reason::ForeignNational => "foreign-national",
            Reason::NameMismatch => "name-mismatch",
            Reason::BirthDateMismatch => "birth-date-mismatch",
        }
    }
}

/// A row's reason, with the detail the rejects file gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The reason.
    pub reason: Reason,
    /// What exactly, for a person (empty for a kept row).
    pub detail: String,
}

/// A kept row with no verdict: the run has not verified it.
#[derive(Debug, PartialEq, Eq)]
pub struct Unverified(pub u64);

/// The reason of `row`: the first that applies of `invalid-nik` (the NIK's fault), then
/// `duplicate` (of the kept row), then, from the registry's verdict, `invalid-nik` (the
/// registry finds it malformed), `not-registered`, `deceased`, `foreign-national`,
/// `name-mismatch`, `birth-date-mismatch`; else `kept`. A `close` name is no mismatch, and a
/// value the registry did not check (`not_checked`) is no objection; the sex's verdict rejects
/// nothing.
pub fn classify(row: &StoredRow) -> Result<Classified, Unverified> {
    let reject = |reason, detail: String| Ok(Classified { reason, detail });
    if let Some(fault) = &row.nik_fault {
        return reject(Reason::InvalidNik, fault.clone());
    }
    match row.kept_line {
        Some(kept) if kept != row.line => {
            let how = if row.same_nik_as_kept {
                "same NIK"
            } else {
                "same name and birth date, another NIK"
            };
            return reject(
                Reason::Duplicate,
                format!("duplicate of row {kept} ({how})"),
            );
        }
        _ => {}
    }
    let Some(v) = &row.verdict else {
        return Err(Unverified(row.line));
    };
    if !v.nik_valid {
        return reject(
            Reason::InvalidNik,
            "the registry finds the NIK malformed".into(),
        );
    }
    if !v.found {
        return reject(
            Reason::NotRegistered,
            "the NIK is not in the population register".into(),
        );
    }
    if v.deceased {
        return reject(Reason::Deceased, "a death is recorded for this NIK".into());
    }
    if v.citizenship == Citizenship::Wna {
        return reject(
            Reason::ForeignNational,
            "the NIK's holder is a foreign national (WNA)".into(),
        );
    }
    if v.name == NameVerdict::Mismatch {
        let detail = match v.name_similarity {
            Some(s) => format!("the registry holds another name (similarity {s:.3})"),
            None => "the registry holds another name".to_owned(),
        };
        return reject(Reason::NameMismatch, detail);
    }
    if v.birth_date == Check::Mismatch {
        return reject(
            Reason::BirthDateMismatch,
            "the registry holds another birth date".into(),
        );
    }
    Ok(Classified {
        reason: Reason::Kept,
        detail: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cleanse::verify::Verdict;
    use crate::commands::cleanse::work::Unreadable;

    fn clean() -> Verdict {
        Verdict {
            reference: "2".into(),
            nik_valid: true,
            found: true,
            name: NameVerdict::Match,
            name_similarity: Some(1.0),
            birth_date: Check::Match,
            sex: Check::Match,
            citizenship: Citizenship::Wni,
            deceased: false,
        }
    }

    fn row(verdict: Option<Verdict>) -> StoredRow {
        StoredRow {
            line: 2,
            fields: vec![],
            nik_fault: None,
            kept_line: Some(2),
            same_nik_as_kept: true,
            sex: None,
            birth_date: None,
            verdict,
            unreadable: Unreadable::default(),
        }
    }

    fn reason(row: &StoredRow) -> Reason {
        classify(row).unwrap().reason
    }

    /// Everything wrong with a verdict at once.
    fn all_wrong() -> Verdict {
        Verdict {
            nik_valid: true,
            found: true,
            deceased: true,
            citizenship: Citizenship::Wna,
            name: NameVerdict::Mismatch,
            name_similarity: Some(0.5),
            birth_date: Check::Mismatch,
            sex: Check::Mismatch,
            ..clean()
        }
    }

    #[test]
    fn each_reason_gives_way_to_the_one_before_it() {
        let mut r = row(Some(all_wrong()));
        r.nik_fault = Some("not all digits".into());
        r.kept_line = Some(9);
        assert_eq!(
            classify(&r).unwrap(),
            Classified {
                reason: Reason::InvalidNik,
                detail: "not all digits".into()
            }
        );
        r.nik_fault = None;
        assert_eq!(
            classify(&r).unwrap(),
            Classified {
                reason: Reason::Duplicate,
                detail: "duplicate of row 9 (same NIK)".into()
            }
        );
        r.same_nik_as_kept = false;
        assert_eq!(
            classify(&r).unwrap().detail,
            "duplicate of row 9 (same name and birth date, another NIK)"
        );
        r.kept_line = Some(2);
        assert_eq!(reason(&r), Reason::Deceased);
        let mut v = all_wrong();
        v.deceased = false;
        r.verdict = Some(v.clone());
        assert_eq!(reason(&r), Reason::ForeignNational);
        v.citizenship = Citizenship::Wni;
        r.verdict = Some(v.clone());
        assert_eq!(
            classify(&r).unwrap(),
            Classified {
                reason: Reason::NameMismatch,
                detail: "the registry holds another name (similarity 0.500)".into()
            }
        );
        v.name = NameVerdict::Close;
        r.verdict = Some(v.clone());
        assert_eq!(reason(&r), Reason::BirthDateMismatch);
        v.birth_date = Check::Match;
        r.verdict = Some(v.clone());
        // A sex the registry does not hold rejects nothing.
        assert_eq!(reason(&r), Reason::Kept);
    }

    #[test]
    fn an_unregistered_or_malformed_nik_comes_before_what_the_registry_says_of_it() {
        let v = Verdict {
            found: false,
            citizenship: Citizenship::Unknown,
            ..all_wrong()
        };
        assert_eq!(reason(&row(Some(v.clone()))), Reason::NotRegistered);
        let v = Verdict {
            nik_valid: false,
            ..v
        };
        assert_eq!(
            classify(&row(Some(v))).unwrap(),
            Classified {
                reason: Reason::InvalidNik,
                detail: "the registry finds the NIK malformed".into()
            }
        );
    }

    #[test]
    fn values_the_registry_did_not_check_are_no_objection() {
        let v = Verdict {
            name: NameVerdict::NotChecked,
            name_similarity: None,
            birth_date: Check::NotChecked,
            sex: Check::NotChecked,
            ..clean()
        };
        assert_eq!(reason(&row(Some(v))), Reason::Kept);
    }

    #[test]
    fn a_kept_row_without_a_verdict_is_unverified() {
        assert_eq!(classify(&row(None)), Err(Unverified(2)));
    }
}
