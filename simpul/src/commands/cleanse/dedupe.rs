//! Grouping the rows of one person and keeping one: exact duplicates share a NIK, probable
//! ones a canonical name and birth date under different NIKs; the batches the rows to verify
//! are sent in; and, once the verdicts are in, the row each person keeps — all in the work
//! database, each step in one transaction.

use super::CleanseError;
use super::work::{Phase, Work, advance_phase, begin, current_phase};

/// Statements run before the grouping: the indexes it reads through. Every well-formed row
/// was loaded as its own person (`person` = its line; `Work::load`).
const PREPARE: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS rows_nik ON rows (nik, person) WHERE nik_fault IS NULL",
    "CREATE INDEX IF NOT EXISTS rows_name_birth ON rows (name_key, birth_date, person)
        WHERE nik_fault IS NULL AND name_key IS NOT NULL AND birth_date IS NOT NULL",
];

/// Rows of one NIK take the smallest `person` among them.
const SAME_NIK: &str = "UPDATE rows SET person = g.p
      FROM (SELECT nik, MIN(person) AS p FROM rows WHERE nik_fault IS NULL GROUP BY nik) AS g
     WHERE rows.nik_fault IS NULL AND rows.nik = g.nik AND rows.person > g.p";

/// Rows of one canonical name and birth date take the smallest `person` among them.
const SAME_NAME_AND_BIRTH: &str = "UPDATE rows SET person = g.p
      FROM (SELECT name_key, birth_date, MIN(person) AS p FROM rows
             WHERE nik_fault IS NULL AND name_key IS NOT NULL AND birth_date IS NOT NULL
             GROUP BY name_key, birth_date) AS g
     WHERE rows.nik_fault IS NULL AND rows.name_key = g.name_key
       AND rows.birth_date = g.birth_date AND rows.person > g.p";

/// The keep rule, in the order of an `ORDER BY`: of one person's rows, the most recent
/// report (a row without a readable report date is the least recent), then the most complete
/// row (most of the five values read), then the earliest line.
macro_rules! keep_rule {
    () => {
        "reported_on IS NULL, reported_on DESC, complete DESC, line"
    };
}

/// The rows sent to the registry, in line order, cut into batches of `?` rows: of each
/// person's rows, one per NIK — the first by the keep rule among that NIK's rows — so that
/// a person reported under a mistyped NIK as well as their own is verified under both, and
/// [`choose`] can keep the row the registry confirms. The row kept so far is one of them.
const BATCHES: &[&str] = &[
    concat!(
        "UPDATE rows SET batch = (b.n - 1) / ?
       FROM (SELECT line, ROW_NUMBER() OVER (ORDER BY line) AS n FROM (
               SELECT line, ROW_NUMBER() OVER (
                        PARTITION BY person, nik ORDER BY ",
        keep_rule!(),
        "
                      ) AS rank
                 FROM rows WHERE nik_fault IS NULL)
              WHERE rank = 1) AS b
      WHERE rows.line = b.line"
    ),
    "INSERT INTO batches (id, rows)
       SELECT batch, COUNT(*) FROM rows WHERE batch IS NOT NULL GROUP BY batch",
    "CREATE INDEX IF NOT EXISTS rows_batch ON rows (batch) WHERE batch IS NOT NULL",
];

/// The row kept for each person once every verdict is in: the first by the keep rule among
/// the person's verified rows that the registry confirms (well-formed and registered, alive,
/// a citizen, no name or birth-date mismatch); a person with none keeps the first of all
/// their rows by the rule. It reads only what is stored, so running it again changes nothing.
const CHOOSE: &str = concat!(
    "UPDATE rows SET kept_line = c.line
      FROM (SELECT person, line FROM (
              SELECT person, line, ROW_NUMBER() OVER (
                       PARTITION BY person
                       ORDER BY IFNULL(batch IS NOT NULL AND nik_valid = 1 AND found = 1
                                       AND deceased = 0 AND citizenship = 'WNI'
                                       AND name_verdict != 'mismatch'
                                       AND birth_date_verdict != 'mismatch', 0) DESC, ",
    keep_rule!(),
    "
                     ) AS rank
                FROM rows WHERE nik_fault IS NULL)
             WHERE rank = 1) AS c
     WHERE rows.nik_fault IS NULL AND rows.person = c.person"
);

/// Moves the run from [`Phase::Verify`] to [`Phase::Output`], each person's kept row chosen
/// by the verdicts ([`CHOOSE`]), in one transaction.
pub async fn choose(work: &mut Work) -> Result<(), CleanseError> {
    let dir = work.dir().to_owned();
    let chosen = async {
        let mut tx = begin(work.conn()).await?;
        if current_phase(&mut tx).await? != Some(Phase::Verify) {
            return tx.commit().await;
        }
        sqlx::query(CHOOSE).execute(&mut *tx).await?;
        advance_phase(&mut tx, Phase::Output).await?;
        tx.commit().await
    };
    chosen.await.map_err(|e| CleanseError::work(&dir, e))
}

/// Groups the loaded rows by person, cuts the rows to verify into batches of `batch_size`
/// and moves the run to [`Phase::Verify`], in one transaction: a run stopped here does it
/// again from the start. The row kept for each person is chosen after the verdicts
/// ([`choose`]).
///
/// Two rows are one person when they share a NIK, or share a canonical name
/// (`contracts::names::canonical`, words joined by a space) and a birth date; and so, in
/// turn, is any row one of them is one person with. Rows with a malformed NIK take no part.
pub async fn dedupe(work: &mut Work, batch_size: usize) -> Result<(), CleanseError> {
    let dir = work.dir().to_owned();
    let size = i64::try_from(batch_size.max(1)).unwrap_or(i64::MAX);
    let grouped = async {
        let mut tx = begin(work.conn()).await?;
        if current_phase(&mut tx).await? != Some(Phase::Dedupe) {
            // Done already (by an earlier attempt whose commit came late).
            return tx.commit().await;
        }
        for statement in PREPARE {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        // The smallest line spreads through both kinds of link until nothing changes: each
        // round is two passes over the well-formed rows, and chains of more than a few links
        // are rare.
        loop {
            let by_nik = sqlx::query(SAME_NIK).execute(&mut *tx).await?;
            let by_name = sqlx::query(SAME_NAME_AND_BIRTH).execute(&mut *tx).await?;
            if by_nik.rows_affected() == 0 && by_name.rows_affected() == 0 {
                break;
            }
        }
        sqlx::query(BATCHES[0]).bind(size).execute(&mut *tx).await?;
        for statement in &BATCHES[1..] {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        advance_phase(&mut tx, Phase::Verify).await?;
        tx.commit().await
    };
    grouped.await.map_err(|e| CleanseError::work(&dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cleanse::input::{ColumnMap, Report};
    use crate::commands::cleanse::work::Meta;

    /// nik, name, birth_date, sex, reported_on.
    const MAP: ColumnMap = ColumnMap {
        nik: 0,
        name: Some(1),
        birth_date: Some(2),
        sex: Some(3),
        reported_on: Some(4),
    };

    /// The line kept for each row, in line order (`None` for a malformed NIK), and each
    /// kept row's batch, after loading `rows` (the first on line 2) and grouping them.
    async fn grouped(rows: &[[&str; 5]], batch_size: usize) -> Vec<(u64, Option<u64>)> {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            input_sha256: "00".into(),
            header: ["nik", "name", "birth_date", "sex", "reported_on"]
                .map(String::from)
                .to_vec(),
            columns: MAP,
            batch_size,
        };
        let mut work = Work::create(&dir.path().join("w"), &meta).await.unwrap();
        let reports: Vec<Report> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Report::from_fields(i as u64 + 2, r.map(String::from).to_vec(), &MAP))
            .collect();
        work.load(&reports, reports.len() as u64).await.unwrap();
        work.set_phase(Phase::Dedupe).await.unwrap();
        dedupe(&mut work, batch_size).await.unwrap();
        assert_eq!(work.phase().await.unwrap(), Phase::Verify);
        // No verdicts: each person keeps the first of their rows by the keep rule.
        choose(&mut work).await.unwrap();
        assert_eq!(work.phase().await.unwrap(), Phase::Output);
        let kept = work
            .rows_after(0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.line, r.kept_line))
            .collect();
        work.remove().await.unwrap();
        kept
    }

    fn kept_lines(grouped: &[(u64, Option<u64>)]) -> Vec<Option<u64>> {
        grouped.iter().map(|(_, k)| *k).collect()
    }

    const A: &str = "3201011407950001";
    const B: &str = "3201015507950002";
    const C: &str = "3201010303900005";

    #[tokio::test]
    async fn rows_of_one_nik_keep_the_most_recent_report() {
        let rows = [
            [A, "Budi", "1995-07-14", "M", "2024-01-10"],
            [A, "Budi", "1995-07-14", "M", "2024-03-01"],
            [A, "Budi", "1995-07-14", "M", ""],
            [B, "Siti", "1995-07-15", "F", "2023-01-01"],
        ];
        assert_eq!(
            kept_lines(&grouped(&rows, 1000).await),
            [Some(3), Some(3), Some(3), Some(5)]
        );
    }

    #[tokio::test]
    async fn without_a_more_recent_report_the_most_complete_row_is_kept_then_the_earliest() {
        let rows = [
            [A, "Budi", "", "", "2024-01-10"],
            [A, "Budi", "1995-07-14", "M", "10/01/2024"],
            [A, "Budi", "1995-07-14", "M", "2024-01-10 09:00"],
            [B, "", "", "", ""],
            [B, "Siti", "", "", ""],
            [C, "Dewi", "", "", ""],
            [C, "", "1990-03-03", "", ""],
        ];
        assert_eq!(
            kept_lines(&grouped(&rows, 1000).await),
            [
                Some(3),
                Some(3),
                Some(3),
                Some(6),
                Some(6),
                Some(7),
                Some(7)
            ]
        );
    }

    #[tokio::test]
    async fn the_same_name_and_birth_date_under_another_nik_is_a_probable_duplicate() {
        let rows = [
            // A mistyped digit: the same person.
            [A, "Budi Santoso", "1995-07-14", "M", "2024-01-01"],
            [
                "3201011407950007",
                "BUDI SANTOSO, S.Kom.",
                "14/07/1995",
                "L",
                "2024-02-01",
            ],
            // The same name born another day: someone else.
            [B, "Budi Santoso", "1995-07-15", "M", "2024-01-01"],
            // No birth date: nothing to link by.
            [C, "Budi Santoso", "", "M", "2024-03-01"],
        ];
        assert_eq!(
            kept_lines(&grouped(&rows, 1000).await),
            [Some(3), Some(3), Some(4), Some(5)]
        );
    }

    #[tokio::test]
    async fn duplicates_link_in_chains_and_malformed_niks_take_no_part() {
        let rows = [
            [A, "Budi Santoso", "1995-07-14", "M", "2024-01-01"],
            // Linked to line 2 by name and birth date …
            [B, "Budi Santoso", "1995-07-14", "M", "2024-01-02"],
            // … and to line 3 by its NIK: all three are one person.
            [B, "Joko", "", "M", "2024-05-01"],
            // A malformed NIK with the same name and birth date links nothing.
            [
                "320101140795",
                "Budi Santoso",
                "1995-07-14",
                "M",
                "2025-01-01",
            ],
            [C, "Budi Santoso", "1995-07-14", "M", "2024-01-03"],
        ];
        assert_eq!(
            kept_lines(&grouped(&rows, 1000).await),
            [Some(4), Some(4), Some(4), None, Some(4)]
        );
    }

    #[tokio::test]
    async fn kept_rows_are_cut_into_batches_in_line_order() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            input_sha256: "00".into(),
            header: vec!["nik".into()],
            columns: ColumnMap {
                nik: 0,
                name: None,
                birth_date: None,
                sex: None,
                reported_on: None,
            },
            batch_size: 2,
        };
        let mut work = Work::create(&dir.path().join("w"), &meta).await.unwrap();
        let niks = [A, B, A, "1", C, "3201010404920006"];
        let reports: Vec<Report> = niks
            .iter()
            .enumerate()
            .map(|(i, n)| Report::from_fields(i as u64 + 2, vec![n.to_string()], &meta.columns))
            .collect();
        work.load(&reports, 6).await.unwrap();
        work.set_phase(Phase::Dedupe).await.unwrap();
        dedupe(&mut work, 2).await.unwrap();
        assert_eq!(work.pending_batches().await.unwrap(), [0, 1]);
        let refs = |items: Vec<crate::commands::cleanse::verify::Item>| {
            items.into_iter().map(|i| i.reference).collect::<Vec<_>>()
        };
        // Line 2 is kept for A (the earliest of two equal rows), line 5 is malformed.
        assert_eq!(refs(work.batch_items(0).await.unwrap()), ["2", "3"]);
        assert_eq!(refs(work.batch_items(1).await.unwrap()), ["6", "7"]);
        assert_eq!(work.verify_counts().await.unwrap(), (4, 0));
        work.remove().await.unwrap();
    }
}
