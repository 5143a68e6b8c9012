//! Days as numbers: birth dates, placement dates and report dates without a date crate.

use super::*;

/// A civil date as days since 1970-01-01. Integer arithmetic only (Howard Hinnant's
/// algorithms), so leap years are right and no date crate is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Day(pub(super) i32);

pub(super) fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(super) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Day {
    pub(super) fn from_ymd(year: i32, month: u32, day: u32) -> Day {
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Day((era * 146_097 + doe - 719_468) as i32)
    }

    pub(super) fn ymd(self) -> (i32, u32, u32) {
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

    pub(super) fn plus(self, days: i32) -> Day {
        Day(self.0 + days)
    }

    /// The same day `months` later (or earlier), clamped to the month's length.
    pub(super) fn plus_months(self, months: i32) -> Day {
        let (y, m, d) = self.ymd();
        let index = y * 12 + (m as i32 - 1) + months;
        let (year, month) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
        Day::from_ymd(year, month, d.min(days_in_month(year, month)))
    }

    /// The same date `years` later, 29 February becoming 28 February in common years.
    pub(super) fn plus_years(self, years: i32) -> Day {
        self.plus_months(years * 12)
    }

    /// The last day of this date's month: contributions are paid by the month.
    pub(super) fn month_end(self) -> Day {
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
pub(super) fn as_of() -> Day {
    Day::from_ymd(2026, 11, 1)
}
