//! The asking side's part: its groups blinded into a query, and the overlap counted from the
//! answers.

use std::collections::BTreeMap;

use super::blind::{BlindingKey, blind};
use super::{Digest, Limits, Point, PsiError};

/// The asking side's groups, blinded: group *i* goes to the answering side as point list
/// *i*; the labels stay here.
pub struct Query {
    labels: Vec<String>,
    lists: Vec<Vec<Point>>,
}

impl Query {
    /// Blinds A's `rows` — each an identifier with A's own label for it (a country; `""`
    /// throughout for no breakdown) — under `key` for the run `context`. Rows are grouped
    /// by label, groups ordered by label, and each group de-duplicated and blinded with
    /// [`blind`].
    ///
    /// # Errors
    /// [`PsiError::NoGroups`] and [`PsiError::TooManyGroups`] for the number of labels;
    /// [`PsiError::TooSmall`] and [`PsiError::TooLarge`] for a group's distinct identifiers.
    pub fn blind<L, I>(
        key: &BlindingKey,
        context: &[u8],
        rows: impl IntoIterator<Item = (L, I)>,
        limits: &Limits,
    ) -> Result<Query, PsiError>
    where
        L: AsRef<str>,
        I: AsRef<[u8]> + Sync,
    {
        let mut groups: BTreeMap<String, Vec<I>> = BTreeMap::new();
        for (label, id) in rows {
            match groups.get_mut(label.as_ref()) {
                Some(ids) => ids.push(id),
                None => {
                    groups.insert(label.as_ref().to_owned(), vec![id]);
                }
            }
        }
        limits.check_groups(groups.len())?;
        let mut query = Query {
            labels: Vec::with_capacity(groups.len()),
            lists: Vec::with_capacity(groups.len()),
        };
        for (list, (label, ids)) in (0u32..).zip(groups) {
            let points = blind(key, context, &ids);
            limits.check_size(list, points.len())?;
            query.labels.push(label);
            query.lists.push(points);
        }
        Ok(query)
    }

    /// The groups' point lists, in order: what A sends.
    pub fn lists(&self) -> &[Vec<Point>] {
        &self.lists
    }

    /// The groups' labels, in the same order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The overlap of each group: `answers[i]` is B's answer for group *i* (B's digests of
    /// the group's points under its key), `theirs` B's set re-blinded under A's key, sorted,
    /// as [`super::Reblinder::finish`] gives it.
    ///
    /// # Errors
    /// [`PsiError::AnswerCount`], [`PsiError::AnswerSize`]: answers that do not fit the
    /// query.
    pub fn overlap(&self, answers: &[Vec<Digest>], theirs: &[Digest]) -> Result<Overlap, PsiError> {
        if answers.len() != self.lists.len() {
            return Err(PsiError::AnswerCount {
                found: answers.len(),
                expected: self.lists.len(),
            });
        }
        let mut groups = Vec::with_capacity(answers.len());
        for (group, ((label, points), answer)) in
            (0u32..).zip(self.labels.iter().zip(&self.lists).zip(answers))
        {
            if answer.len() != points.len() {
                return Err(PsiError::AnswerSize {
                    group,
                    found: answer.len(),
                    expected: points.len(),
                });
            }
            groups.push(GroupOverlap {
                label: label.clone(),
                size: points.len(),
                overlap: count(answer, theirs),
            });
        }
        Ok(Overlap {
            groups,
            theirs: theirs.len(),
        })
    }
}

/// How many of `answer`'s digests are in `theirs` (sorted ascending).
pub fn count(answer: &[Digest], theirs: &[Digest]) -> usize {
    answer
        .iter()
        .filter(|d| theirs.binary_search(d).is_ok())
        .count()
}

/// What a run tells the asking side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// Each group's overlap, in the query's order.
    pub groups: Vec<GroupOverlap>,
    /// The distinct identifiers in the answering side's set.
    pub theirs: usize,
}

impl Overlap {
    /// The groups' overlaps added up: the whole overlap, when no identifier of A's is in two
    /// groups.
    pub fn total(&self) -> usize {
        self.groups.iter().map(|g| g.overlap).sum()
    }
}

/// One group's overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOverlap {
    /// A's label for the group.
    pub label: String,
    /// A's distinct identifiers in it.
    pub size: usize,
    /// How many of them are in the answering side's set.
    pub overlap: usize,
}
