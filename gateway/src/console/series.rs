//! The gateway's own Prometheus text read back for the command centre: the samples of one
//! gateway (its `member` and `instance` labels; `simpul up` runs four in one process, whose
//! recorder they share), and quantiles of a cumulative histogram as `histogram_quantile`
//! computes them.

use std::collections::BTreeMap;

/// One sample line of the text format, without its `member` and `instance` labels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// The series' name as written (`…_bucket`, `…_sum`, `…_count` for histograms).
    pub name: String,
    /// Its other labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "" when it has none.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of `text` whose `member` and `instance` are the ones given; comments, other
/// gateways' samples and lines that do not parse are left out.
pub(crate) fn of_gateway(text: &str, member: &str, instance: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(parse_line)
        .filter_map(|(name, mut labels, value)| {
            let ours = labels.remove("member").as_deref() == Some(member)
                && labels.remove("instance").as_deref() == Some(instance);
            ours.then_some(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// `name{a="x",b="y"} 1` (labels optional, values with `\\`, `\"` and `\n` escapes).
fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &inner[end + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.to_owned(), labels, value))
}

/// The `q`-quantile (0 to 1) of a histogram's cumulative buckets `(le, count)`, sorted by
/// `le` and ending with `+Inf`: linear within the bucket that holds it, as Prometheus's
/// `histogram_quantile` does; the largest finite bound when it falls in `+Inf`; `None` for
/// an empty histogram.
pub(crate) fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = count - below;
            let fraction = if within > 0.0 {
                (rank - below) / within
            } else {
                1.0
            };
            return Some(lower + (le - lower) * fraction);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP simpul_exchanges_total Exchanges.
# TYPE simpul_exchanges_total counter
simpul_exchanges_total{member="ID:GOV:KEMLU",instance="127.0.0.1:1",contract="citizenship.status/1",peer="ID:GOV:DUKCAPIL",role="consumer",outcome="ok"} 3
simpul_exchanges_total{member="ID:GOV:KEMLU",instance="127.0.0.1:9",contract="citizenship.status/1",peer="ID:GOV:DUKCAPIL",role="consumer",outcome="ok"} 7
simpul_exchanges_total{member="ID:GOV:DUKCAPIL",instance="127.0.0.1:1",contract="citizenship.status/1",peer="ID:GOV:KEMLU",role="provider",outcome="ok"} 5
simpul_cache_evictions_total{member="ID:GOV:KEMLU",instance="127.0.0.1:1"} 0
simpul_odd{member="ID:GOV:KEMLU",instance="127.0.0.1:1",why="a \"quoted\\ word\nand a line"} 1.5
simpul_unlabelled 2
"#;

    #[test]
    fn only_the_samples_of_one_member_and_instance_are_read() {
        let samples = of_gateway(TEXT, "ID:GOV:KEMLU", "127.0.0.1:1");
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "simpul_exchanges_total");
        assert_eq!(samples[0].label("peer"), "ID:GOV:DUKCAPIL");
        assert_eq!(samples[0].label("member"), "");
        assert_eq!(samples[0].value, 3.0);
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[2].label("why"), "a \"quoted\\ word\nand a line");
        assert_eq!(samples[2].value, 1.5);
    }

    #[test]
    fn a_broken_line_is_left_out() {
        for line in [
            "simpul_x{member=\"ID:GOV:KEMLU\",instance=\"127.0.0.1:1\" 1",
            "simpul_x{member=ID:GOV:KEMLU,instance=\"127.0.0.1:1\"} 1",
            "simpul_x{member=\"ID:GOV:KEMLU\",instance=\"127.0.0.1:1\"} many",
            "{member=\"ID:GOV:KEMLU\"} 1",
        ] {
            assert!(
                of_gateway(line, "ID:GOV:KEMLU", "127.0.0.1:1").is_empty(),
                "{line}"
            );
        }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_that_holds_them() {
        let buckets = [
            (0.001, 0.0),
            (0.01, 50.0),
            (0.1, 90.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((quantile(0.5, &buckets).unwrap() - 0.01).abs() < 1e-12);
        assert!((quantile(0.25, &buckets).unwrap() - 0.0055).abs() < 1e-12);
        assert!((quantile(0.7, &buckets).unwrap() - 0.055).abs() < 1e-12);
        // In +Inf: the largest finite bound.
        assert_eq!(quantile(0.99, &buckets), Some(0.1));
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
    }
}
