//! The contract catalog: a directory of contract documents, one `<id>.v<version>.json` each.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::contract::{Contract, ContractError, ContractRef};

/// Why a catalog directory was refused. Every variant names the file (or directory) at fault.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The directory could not be listed.
    #[error("{}: cannot read directory: {source}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A contract file could not be read.
    #[error("{}: cannot read file: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file is not a valid contract document.
    #[error("{}: {source}", path.display())]
    Contract {
        /// The file.
        path: PathBuf,
        /// What is wrong with the document.
        source: ContractError,
    },
    /// A file's name does not match the id and version of the document it holds.
    #[error("{}: file name must be {expected} for this document", path.display())]
    FileName {
        /// The file.
        path: PathBuf,
        /// The name it must have: `<id>.v<version>.json`.
        expected: String,
    },
    /// Two files define the same contract id and version.
    #[error("{}: duplicate: {contract} is already defined by {}", path.display(), first.display())]
    Duplicate {
        /// The later file.
        path: PathBuf,
        /// The file that defined the contract first.
        first: PathBuf,
        /// The contract both define.
        contract: ContractRef,
    },
}

/// Loads every `*.json` file of `dir` as a contract document, in file-name order.
///
/// Other files and subdirectories are ignored. Each document must parse and validate with
/// [`Contract::from_json`], its file name must be exactly `<id>.v<version>.json`, and no two
/// files may define the same id and version. The first problem found is returned.
pub fn load_catalog(dir: &Path) -> Result<Vec<Contract>, CatalogError> {
    let read_dir_error = |source| CatalogError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_dir_error)? {
        let path = entry.map_err(read_dir_error)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        match fs::read(&path) {
            Ok(bytes) => files.push((path, bytes)),
            Err(source) => return Err(CatalogError::ReadFile { path, source }),
        }
    }
    build(files)
}

/// Parses read files, checks their names, and refuses duplicates.
fn build(files: Vec<(PathBuf, Vec<u8>)>) -> Result<Vec<Contract>, CatalogError> {
    let mut seen: HashMap<ContractRef, PathBuf> = HashMap::new();
    let mut contracts = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let contract = match Contract::from_json(&bytes) {
            Ok(c) => c,
            Err(source) => return Err(CatalogError::Contract { path, source }),
        };
        let reference = contract.reference();
        let expected = format!("{}.v{}.json", reference.id, reference.version);
        if path.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
            return Err(CatalogError::FileName { path, expected });
        }
        if let Some(first) = seen.get(&reference) {
            return Err(CatalogError::Duplicate {
                path,
                first: first.clone(),
                contract: reference,
            });
        }
        seen.insert(reference, path);
        contracts.push(contract);
    }
    Ok(contracts)
}

/// The demo federation's contract documents, compiled into this crate from its `catalog/`
/// directory, for a demo run where no catalog directory is at hand.
const EMBEDDED: [&str; 12] = [
    include_str!("../catalog/citizenship.status.v1.json"),
    include_str!("../catalog/employment.placement.v1.json"),
    include_str!("../catalog/identity.verify.v1.json"),
    include_str!("../catalog/insurance.counts.v1.json"),
    include_str!("../catalog/insurance.overlap.v1.json"),
    include_str!("../catalog/insurance.status.v1.json"),
    include_str!("../catalog/placement.changed.v1.json"),
    include_str!("../catalog/placement.counts.v1.json"),
    include_str!("../catalog/placement.overlap.v1.json"),
    include_str!("../catalog/placement.record.v1.json"),
    include_str!("../catalog/residence.abroad.v1.json"),
    include_str!("../catalog/selfreport.counts.v1.json"),
];

/// The demo federation's catalog as embedded in this crate (the documents of `catalog/`).
///
/// # Errors
/// A [`ContractError`] if an embedded document is not a valid contract (a test pins that
/// none is).
pub fn embedded_catalog() -> Result<Vec<Contract>, ContractError> {
    EMBEDDED
        .iter()
        .map(|doc| Contract::from_json(doc.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("simpul-catalog-{}-{n}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn write(&self, name: &str, content: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn doc(id: &str, version: &str) -> Value {
        json!({
            "id": id, "version": version, "provider": "ID:GOV:DUKCAPIL",
            "title": "t", "description": "d",
            "request": {"type": "object", "properties": {"nik": {"type": "string"}},
                        "required": ["nik"], "additionalProperties": false},
            "response": {"type": "object"},
            "purposes": ["citizen-protection"], "cache": null, "personal_data": ["/nik"]
        })
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec_pretty(v).unwrap()
    }

    #[test]
    fn loads_json_files_in_name_order_and_ignores_the_rest() {
        let dir = TempDir::new("ok");
        dir.write("b.thing.v2.json", &bytes(&doc("b.thing", "2")));
        dir.write("a.thing.v1.json", &bytes(&doc("a.thing", "1")));
        dir.write("README.md", b"not a contract");
        dir.write("notes.json.bak", b"{");
        fs::create_dir(dir.0.join("sub.json")).unwrap();
        let refs: Vec<_> = load_catalog(&dir.0)
            .unwrap()
            .iter()
            .map(|c| c.reference().to_string())
            .collect();
        assert_eq!(refs, ["a.thing/1", "b.thing/2"]);
    }

    #[test]
    fn empty_directory_is_an_empty_catalog() {
        let dir = TempDir::new("empty");
        assert!(load_catalog(&dir.0).unwrap().is_empty());
    }

    #[test]
    fn missing_directory_is_refused() {
        let dir = TempDir::new("missing");
        let missing = dir.0.join("nope");
        let err = load_catalog(&missing).unwrap_err();
        assert!(matches!(&err, CatalogError::ReadDir { path, .. } if *path == missing));
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{}: cannot read directory: ", missing.display())));
    }

    #[test]
    fn unparsable_file_names_the_file() {
        let dir = TempDir::new("parse");
        let path = dir.write("x.v1.json", b"{ not json");
        let err = load_catalog(&dir.0).unwrap_err();
        assert!(matches!(
            &err,
            CatalogError::Contract { path: p, source: ContractError::Json(_) } if *p == path
        ));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: not a contract document: ", path.display()))
        );
    }

    #[test]
    fn invalid_schema_names_the_file_and_the_field() {
        let dir = TempDir::new("schema");
        let mut d = doc("x", "1");
        d["request"] = json!({"type": 12});
        let path = dir.write("x.v1.json", &bytes(&d));
        let err = load_catalog(&dir.0).unwrap_err();
        assert!(matches!(
            &err,
            CatalogError::Contract {
                source: ContractError::Field {
                    field: "request",
                    ..
                },
                ..
            }
        ));
        let prefix = format!(
            "{}: field `request`: not a valid JSON Schema",
            path.display()
        );
        assert!(err.to_string().starts_with(&prefix), "{err}");
    }

    #[test]
    fn file_name_must_match_id_and_version() {
        for name in [
            "citizenship.status.json",
            "citizenship.status.v2.json",
            "x.v1.json",
        ] {
            let dir = TempDir::new("name");
            let path = dir.write(name, &bytes(&doc("citizenship.status", "1")));
            let err = load_catalog(&dir.0).unwrap_err();
            match &err {
                CatalogError::FileName { path: p, expected } => {
                    assert_eq!(*p, path);
                    assert_eq!(expected, "citizenship.status.v1.json");
                }
                other => panic!("{name}: {other}"),
            }
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: file name must be citizenship.status.v1.json for this document",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn first_error_in_name_order_wins() {
        let dir = TempDir::new("order");
        dir.write("a.v1.json", &bytes(&doc("a", "1")));
        let bad = dir.write("b.v1.json", b"[]");
        dir.write("c.v1.json", b"{");
        let err = load_catalog(&dir.0).unwrap_err();
        assert!(matches!(&err, CatalogError::Contract { path, .. } if *path == bad));
    }

    #[test]
    fn duplicates_are_refused() {
        // In one directory the file-name rule already makes duplicates impossible; the check
        // guards the catalog's invariant should files ever come from more than one place.
        let first = PathBuf::from("one/a.v1.json");
        let second = PathBuf::from("two/a.v1.json");
        let err = build(vec![
            (first.clone(), bytes(&doc("a", "1"))),
            (second.clone(), bytes(&doc("a", "1"))),
        ])
        .unwrap_err();
        match &err {
            CatalogError::Duplicate {
                path,
                first: f,
                contract,
            } => {
                assert_eq!(*path, second);
                assert_eq!(*f, first);
                assert_eq!(*contract, ContractRef::new("a", "1"));
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "{}: duplicate: a/1 is already defined by {}",
                second.display(),
                first.display()
            )
        );
    }
}
