//! Calendar dates as self-reports write them (`YYYY-MM-DD`, `DD-MM-YYYY`, `DD/MM/YYYY`), and
//! a person's age on a day.

use std::fmt;

/// A day of the Gregorian calendar, years 1000 to 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The date `year-month-day`, if that day exists.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let real = (1000..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in(year, month);
        real.then_some(Date { year, month, day })
    }

    /// Reads `text` (surrounding spaces ignored) written `YYYY-MM-DD`, `DD-MM-YYYY` or
    /// `DD/MM/YYYY` (day and month of one or two digits in the last two); `None` when it is
    /// none of these or names no real day.
    pub fn parse(text: &str) -> Option<Date> {
        let text = text.trim();
        let (sep, parts) = if text.contains('/') {
            ('/', text.split('/').collect::<Vec<_>>())
        } else {
            ('-', text.split('-').collect::<Vec<_>>())
        };
        let [a, b, c] = parts.as_slice() else {
            return None;
        };
        let digits = |s: &str, min: usize, max: usize| {
            (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if sep == '-' && digits(a, 4, 4) && digits(b, 2, 2) && digits(c, 2, 2) {
            return Date::new(a.parse().ok()?, b.parse().ok()?, c.parse().ok()?);
        }
        if digits(a, 1, 2) && digits(b, 1, 2) && digits(c, 4, 4) {
            return Date::new(c.parse().ok()?, b.parse().ok()?, a.parse().ok()?);
        }
        None
    }

    /// Reads a report's date: a date as [`Date::parse`] takes it, optionally followed by a
    /// time of day after a space or a `T` (`2024-02-14 08:30`, `2024-02-14T08:30:00Z`),
    /// which is set aside.
    pub fn parse_with_time(text: &str) -> Option<Date> {
        let text = text.trim();
        let date = text.split([' ', 'T']).next().unwrap_or_default();
        Date::parse(date)
    }

    /// Full years a person born on `self` has lived on `on`: their birthday counts from the
    /// day itself, and a birthday of 29 February counts from 1 March in other years.
    pub fn age_on(self, on: Date) -> i32 {
        let years = i32::from(on.year) - i32::from(self.year);
        if (on.month, on.day) < (self.month, self.day) {
            years - 1
        } else {
            years
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The days of `month` in `year`.
fn days_in(year: u16, month: u8) -> u8 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    #[test]
    fn the_three_written_forms_read_as_one_date() {
        for text in [
            "1990-07-05",
            "05-07-1990",
            "05/07/1990",
            "5/7/1990",
            " 5-7-1990 ",
        ] {
            assert_eq!(
                Date::parse(text).map(|d| d.to_string()).as_deref(),
                Some("1990-07-05"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_day_that_does_not_exist_or_another_form_is_not_read() {
        for text in [
            "1990-02-30",
            "2023-02-29",
            "1900-02-29",
            "31/04/1990",
            "1990/07/05",
            "07-05-90",
            "1990-7-5",
            "19900705",
            "",
            "kemarin",
            "0999-01-01",
        ] {
            assert_eq!(Date::parse(text), None, "{text}");
        }
        assert_eq!(date("29/02/2000").to_string(), "2000-02-29");
    }

    #[test]
    fn a_time_after_the_date_of_a_report_is_set_aside() {
        for text in [
            "2024-02-14 08:30",
            "2024-02-14T08:30:00Z",
            "14/02/2024 23:59",
            "2024-02-14",
        ] {
            assert_eq!(
                Date::parse_with_time(text),
                Some(date("2024-02-14")),
                "{text}"
            );
        }
        assert_eq!(Date::parse_with_time("2024-02-30 08:30"), None);
    }

    #[test]
    fn a_person_born_2007_02_14_is_17_on_2024_02_14_and_16_the_day_before() {
        let born = date("2007-02-14");
        assert_eq!(born.age_on(date("2024-02-14")), 17);
        assert_eq!(born.age_on(date("2024-02-13")), 16);
        assert_eq!(born.age_on(date("2025-01-01")), 17);
    }

    #[test]
    fn a_leap_day_birthday_counts_from_the_first_of_march_in_other_years() {
        let born = date("2008-02-29");
        assert_eq!(born.age_on(date("2025-02-28")), 16);
        assert_eq!(born.age_on(date("2025-03-01")), 17);
        assert_eq!(born.age_on(date("2024-02-29")), 16);
    }
}
