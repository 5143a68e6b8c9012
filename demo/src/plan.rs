//! The demo's own sections of `config.toml` — `[data]` and each member's `seed` — read and
//! checked apart from the gateway's configuration, which keeps them as written.

use std::path::PathBuf;

use contracts::MemberId;
use gateway::config::{Config, ConfigError, Rejection};
use serde::Deserialize;

use crate::population::{Dataset, Population, SeedConfig, ServerTarget, generate};

/// What the demo seeds: the population and, per member, which dataset goes where.
#[derive(Clone, Debug)]
pub struct DemoPlan {
    /// `[data]`: the synthetic population.
    pub data: SeedConfig,
    /// Each member's `seed`, in the configuration's order.
    pub targets: Vec<SeedTarget>,
}

/// Which synthetic dataset to seed into which database of one member.
#[derive(Clone, Debug)]
pub struct SeedTarget {
    /// The member that holds it.
    pub member: MemberId,
    /// The dataset.
    pub dataset: Dataset,
    /// The SQLite file, resolved against the configuration's directory.
    pub database: PathBuf,
    /// Set by `simpul up --backend postgres`, never in the file: seed into this schema of a
    /// database server instead of the SQLite file.
    pub server: Option<ServerTarget>,
}

/// `seed = { dataset = "…", database = "…" }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeedTarget {
    dataset: Dataset,
    database: PathBuf,
}

impl DemoPlan {
    /// Reads the demo's sections of `config`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and the field (`data.people`, `members[1].seed`)
    /// when a section does not parse or a value is out of range.
    pub fn from_config(config: &Config) -> Result<DemoPlan, ConfigError> {
        let err = |kind: Rejection, field: String, reason: String| ConfigError {
            path: config.source.clone(),
            field,
            reason,
            kind,
        };
        let data: SeedConfig = match &config.data {
            Some(table) => {
                toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        err(
                            Rejection::Syntax,
                            "data".into(),
                            e.message().trim().to_owned(),
                        )
                    })?
            }
            None => SeedConfig::default(),
        };
        data.validate()
            .map_err(|r| err(Rejection::OutOfRange, "data".into(), r))?;
        let mut targets = Vec::new();
        for (i, m) in config.members.iter().enumerate() {
            let Some(table) = &m.seed else { continue };
            let raw: RawSeedTarget =
                toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        err(
                            Rejection::Syntax,
                            format!("members[{i}].seed"),
                            e.message().trim().to_owned(),
                        )
                    })?;
            targets.push(SeedTarget {
                member: m.id.clone(),
                dataset: raw.dataset,
                database: config.resolve(&raw.database),
                server: None,
            });
        }
        Ok(DemoPlan { data, targets })
    }

    /// The synthetic population (deterministic from `data.seed`).
    pub fn population(&self) -> Population {
        generate(&self.data)
    }

    /// The seed target of `member`, if it has one.
    pub fn target(&self, member: &MemberId) -> Option<&SeedTarget> {
        self.targets.iter().find(|t| &t.member == member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Config::parse(text, "test.toml", base).unwrap()
    }

    use std::path::Path;

    const MEMBER: &str = r#"
[federation]
id = "ID"
authority = "ID:GOV:SIMPUL"

[[members]]
id = "ID:GOV:DUKCAPIL"
name = "Dukcapil"
listen = "127.0.0.1:7442"
"#;

    #[test]
    fn the_defaults_serve_without_demo_sections() {
        let plan = DemoPlan::from_config(&config(MEMBER)).unwrap();
        assert_eq!(plan.data, SeedConfig::default());
        assert!(plan.targets.is_empty());
    }

    #[test]
    fn a_population_out_of_range_names_data() {
        let text = format!("[data]\npeople = 5\n{MEMBER}");
        let e = DemoPlan::from_config(&config(&text)).unwrap_err();
        assert_eq!((e.path.as_str(), e.field.as_str()), ("test.toml", "data"));
        assert_eq!(e.kind, gateway::config::Rejection::OutOfRange);
        assert!(e.reason.contains("data.people"), "{e}");
    }

    #[test]
    fn an_unknown_dataset_names_the_member_seed() {
        let text = format!("{MEMBER}seed = {{ dataset = \"pets\", database = \"x.db\" }}\n");
        let e = DemoPlan::from_config(&config(&text)).unwrap_err();
        assert_eq!(e.field, "members[0].seed");
        assert_eq!(e.kind, gateway::config::Rejection::Syntax);
        assert!(e.reason.contains("pets"), "{e}");
    }

    #[test]
    fn a_seed_target_resolves_its_file_against_the_configuration() {
        let text =
            format!("{MEMBER}seed = {{ dataset = \"residents\", database = \"data/d.db\" }}\n");
        let c = config(&text);
        let plan = DemoPlan::from_config(&c).unwrap();
        assert_eq!(plan.targets.len(), 1);
        assert_eq!(plan.targets[0].dataset, Dataset::Residents);
        assert_eq!(plan.targets[0].database, c.base_dir.join("data/d.db"));
    }
}
