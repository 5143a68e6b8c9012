//! The demo federation that `simpul up` runs: its synthetic population (four ministries'
//! overlapping records about the same people), the development PKI, and the preparation
//! that makes whatever is missing before the gateways start. Nothing here is linked into
//! a production gateway's library.

pub mod changes;
pub mod crl;
pub mod pki;
mod plan;
pub mod population;
mod prepare;
pub mod request;
pub mod rotate;

pub use plan::{DemoPlan, SeedTarget};

use std::path::Path;

use gateway::config::{Config, ConfigError, Rejection};

/// The demo federation's configuration, embedded in the binary: what `simpul up` runs when
/// no `config.toml` is given or found.
pub const EMBEDDED_CONFIG: &str = include_str!("../../config.toml");

/// The embedded demo configuration, its paths resolved against `base_dir`; the catalog
/// embedded in `contracts` serves when `base_dir` has no catalog directory.
///
/// # Errors
/// A [`ConfigError`] if the embedded configuration or catalog does not validate (a test
/// pins that both do).
pub fn embedded_config(base_dir: &Path) -> Result<Config, ConfigError> {
    let source = "<embedded config.toml>";
    let catalog = contracts::embedded_catalog().map_err(|e| ConfigError {
        kind: Rejection::Catalog,
        path: source.into(),
        field: "federation.catalog".into(),
        reason: format!("embedded catalog: {e}"),
    })?;
    Config::parse_with_fallback_catalog(EMBEDDED_CONFIG, source, base_dir, Some(catalog))
}
pub use prepare::{
    PrepareError, Prepared, demo_caller, member_schema, pki_plan, prepare, use_database_server,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_demo_validates_with_the_embedded_catalog_outside_a_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let config = embedded_config(dir.path()).unwrap();
        assert_eq!(config.members.len(), 4);
        assert_eq!(config.catalog.len(), 12);
        DemoPlan::from_config(&config).unwrap();
    }

    #[test]
    fn the_embedded_catalog_is_the_catalog_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/catalog");
        let on_disk = contracts::load_catalog(&dir).unwrap();
        let embedded = contracts::embedded_catalog().unwrap();
        let digests = |c: &[contracts::Contract]| {
            let mut d: Vec<String> = c.iter().map(|c| c.digest().to_owned()).collect();
            d.sort();
            d
        };
        assert_eq!(digests(&on_disk), digests(&embedded));
    }
}
