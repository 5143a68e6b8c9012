//! One test per rejection: each changes one thing in a small valid configuration and
//! checks the field named. None opens a socket or a database.

use super::*;

const BASE: &str = r#"
[federation]
id = "ID"
authority = "ID:GOV:SIMPUL"
catalog = "CATALOG"

[[members]]
id = "ID:GOV:KEMLU"
name = "Kemlu"
listen = "127.0.0.1:7441"
local = { listen = "127.0.0.1:7641", member_ca = "certs/ID_GOV_KEMLU/member-ca.pem" }
admin = { listen = "127.0.0.1:7541", operators = [] }
subsystems = [{ name = "PEDULI-WNI", grants = [{ contract = "person.profile", version = "1", purposes = ["citizen-protection"] }, { contract = "citizenship.status", version = "1", purposes = ["citizen-protection"] }] }]

  [[members.federated]]
  id = "person.profile"
  version = "1"
  purpose = "citizen-protection"
  parts = [
{ name = "citizenship", contract = "citizenship.status", version = "1" },
{ name = "insurance", contract = "insurance.status", version = "1" },
  ]

[[members]]
id = "ID:GOV:DUKCAPIL"
name = "Dukcapil"
listen = "127.0.0.1:7442"

  [[members.provides]]
  contract = "citizenship.status"
  version = "1"
  consumers = [{ member = "ID:GOV:KEMLU", purposes = ["citizen-protection"] }]
  [members.provides.sql]
  database = "data/dukcapil.db"
  statement = "SELECT citizenship, deceased FROM residents WHERE nik = :nik"
  columns = { citizenship = "text", deceased = "bool" }
  found = { registered = true }
  not_found = { registered = false, citizenship = "unknown", deceased = false }
"#;

fn text(edits: &[(&str, &str)]) -> String {
    let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/catalog");
    let mut t = BASE.replace("CATALOG", &catalog.display().to_string());
    for (from, to) in edits {
        assert!(t.contains(from), "the base has no `{from}`");
        t = t.replacen(from, to, 1);
    }
    t
}

fn parse(edits: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse(&text(edits), "test.toml", Path::new("/nonexistent"))
}

#[test]
fn the_base_is_valid() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.members.len(), 2);
    assert!(
        c.catalog
            .contains_key(&ContractRef::new("citizenship.status", "1"))
    );
}

macro_rules! refused {
    ($($name:ident: [$(($from:expr, $to:expr)),*] => $field:expr, $reason:expr, $kind:ident;)*) => {$(
        #[test]
        fn $name() {
            let e = parse(&[$(($from, $to)),*]).unwrap_err();
            assert_eq!(e.path, "test.toml");
            assert_eq!(e.kind, Rejection::$kind, "{e}");
            assert_eq!(e.field, $field, "{e}");
            assert!(e.reason.contains($reason), "{e}");
        }
    )*};
}

refused! {
    a_syntax_error_names_its_line:
        [("name = \"Kemlu\"", "name = Kemlu")] => "line 9 (`name = Kemlu`)", "quoted", Syntax;
    an_unknown_field_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\ncolour = \"red\"")] => "line 10 (`colour = \"red\"`)", "unknown field `colour`", Syntax;
    a_missing_catalog_directory_is_refused:
        [("contracts/catalog\"", "contracts/nowhere\"")] => "federation.catalog", "nowhere", Catalog;
    an_authority_that_is_a_subsystem_is_refused:
        [("ID:GOV:SIMPUL", "ID:GOV:SIMPUL:X")] => "federation.authority", "three parts", NotAMemberId;
    a_member_id_that_is_a_subsystem_is_refused:
        [("id = \"ID:GOV:KEMLU\"", "id = \"ID:GOV:KEMLU:X\"")] => "members[0].id", "not a subsystem", NotAMemberId;
    a_member_configured_twice_is_refused:
        [("id = \"ID:GOV:DUKCAPIL\"", "id = \"ID:GOV:KEMLU\"")] => "members[1].id", "twice", Duplicate;
    a_listen_address_used_twice_is_refused:
        [("127.0.0.1:7442", "127.0.0.1:7441")] => "members[1].listen", "another member", AddressInUse;
    a_manifest_url_that_is_not_https_is_refused:
        [("authority = \"ID:GOV:SIMPUL\"", "authority = \"ID:GOV:SIMPUL\"\nmanifest_url = \"http://authority.example/manifest.jws\"")] => "federation.manifest_url", "https://", NotHttps;
    a_crl_url_with_user_info_is_refused:
        [("authority = \"ID:GOV:SIMPUL\"", "authority = \"ID:GOV:SIMPUL\"\ncrl_url = \"https://user@authority.example/crl.pem\"")] => "federation.crl_url", "user info", NotHttps;
    a_refresh_of_zero_seconds_is_refused:
        [("authority = \"ID:GOV:SIMPUL\"", "authority = \"ID:GOV:SIMPUL\"\nrefresh_s = 0")] => "federation.refresh_s", "1 to 86400", OutOfRange;
    a_gateway_url_that_is_not_https_is_refused:
        [("listen = \"127.0.0.1:7441\"", "listen = \"127.0.0.1:7441\"\ngateway = \"http://x\"")] => "members[0].gateway", "https", NotHttps;
    redis_limits_without_a_url_are_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { rate_backend = \"redis\" }")] => "members[0].limits.redis_url", "required", Missing;
    a_redis_replay_window_without_a_url_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { replay_backend = \"redis\" }")] => "members[0].limits.redis_url", "replay_backend", Missing;
    a_replay_window_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { replay_capacity = 0 }")] => "members[0].limits", "at least 1", OutOfRange;
    a_max_connections_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { max_connections = 0 }")] => "members[0].limits.max_connections", "at least 1", OutOfRange;
    a_max_connections_per_address_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { max_connections_per_address = 0 }")] => "members[0].limits.max_connections_per_address", "at least 1", OutOfRange;
    a_max_handshakes_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { max_handshakes = 0 }")] => "members[0].limits.max_handshakes", "at least 1", OutOfRange;
    an_admission_per_peer_rate_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { admission_per_peer = { per_second = 0, burst = 10 } }")] => "members[0].limits.admission_per_peer", "at least 1", OutOfRange;
    an_admission_per_peer_burst_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { admission_per_peer = { per_second = 10, burst = 0 } }")] => "members[0].limits.admission_per_peer", "at least 1", OutOfRange;
    an_admission_per_address_rate_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { admission_per_address = { per_second = 0, burst = 10 } }")] => "members[0].limits.admission_per_address", "at least 1", OutOfRange;
    an_admission_per_address_burst_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { admission_per_address = { per_second = 10, burst = 0 } }")] => "members[0].limits.admission_per_address", "at least 1", OutOfRange;
    an_admission_limit_without_a_burst_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\nlimits = { admission_per_peer = { per_second = 10 } }")] => "line 10 (`limits = { admission_per_peer = { per_second = 10 } }`)", "missing field `burst`", Syntax;
    an_admin_max_connections_of_zero_is_refused:
        [("operators = [] }", "operators = [], max_connections = 0 }")] => "members[0].admin.max_connections", "at least 1", OutOfRange;
    an_audit_tree_head_interval_of_zero_is_refused:
        [("name = \"Kemlu\"", "name = \"Kemlu\"\naudit = { tree_head_interval_s = 0 }")] => "members[0].audit.tree_head_interval_s", "at least 1", OutOfRange;
    an_admin_listener_on_a_used_address_is_refused:
        [("127.0.0.1:7541", "127.0.0.1:7441")] => "members[0].admin.listen", "another listener", AddressInUse;
    an_evidence_auditor_who_is_no_auditor_is_refused:
        [("operators = [] }", "operators = [], auditors = [\"AUDIT\"], evidence_auditors = [\"OPS\"] }")] => "members[0].admin.evidence_auditors[0]", "not on admin.auditors", UnknownMember;
    a_malformed_subsystem_name_is_refused:
        [("name = \"PEDULI-WNI\"", "name = \"peduli wni\"")] => "members[0].subsystems[0].name", "", NotAMemberId;
    a_provided_contract_not_in_the_catalog_is_refused:
        [("contract = \"citizenship.status\"\n  version = \"1\"", "contract = \"citizenship.status\"\n  version = \"9\"")] => "members[1].provides[0].contract", "not in the catalog", NotInCatalog;
    a_contract_whose_document_names_another_provider_is_refused:
        [("contract = \"citizenship.status\"\n  version = \"1\"", "contract = \"insurance.status\"\n  version = \"1\"")] => "members[1].provides[0].contract", "according to its document", WrongProvider;
    a_consumer_that_is_not_configured_is_refused:
        [("member = \"ID:GOV:KEMLU\", purposes", "member = \"ID:GOV:NOBODY\", purposes")] => "members[1].provides[0].consumers[0].member", "not a configured member", UnknownMember;
    a_purpose_the_contract_does_not_allow_is_refused:
        [("member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]", "member = \"ID:GOV:KEMLU\", purposes = [\"marketing\"] }]")] => "members[1].provides[0].consumers[0].purposes", "`marketing`", UnknownPurpose;
    a_rate_of_zero_is_refused:
        [("consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]", "consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]\n  rate = { per_second = 0, burst = 1 }")] => "members[1].provides[0].rate", "at least 1", OutOfRange;
    a_concurrency_of_zero_is_refused:
        [("consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]", "consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]\n  concurrency = 0")] => "members[1].provides[0].concurrency", "at least 1", OutOfRange;
    an_unknown_binding_table_is_refused:
        [("[members.provides.sql]", "[members.provides.unused]")] => "line 33 (`[members.provides.unused]`)", "unknown field `unused`", Syntax;
    a_binding_the_adapter_refuses_names_its_field:
        [("statement = \"SELECT", "timeout_ms = 0\n  statement = \"SELECT")] => "members[1].provides[0].sql.timeout_ms/pool_size", "at least 1", Binding;
    a_federated_contract_with_a_catalog_contracts_id_is_refused:
        [("id = \"person.profile\"", "id = \"citizenship.status\"")] => "members[0].federated[0].id", "catalog contract", Duplicate;
    a_federated_contract_without_parts_is_refused:
        [("parts = [\n", "parts = [\n]\nunused = [\n")] => "line 21 (`unused = [`)", "unknown field `unused`", Syntax;
    a_federated_deadline_of_zero_is_refused:
        [("purpose = \"citizen-protection\"\n  parts", "purpose = \"citizen-protection\"\n  deadline_ms = 0\n  parts")] => "members[0].federated[0].deadline_ms", "at least 1", OutOfRange;
    a_part_not_in_the_catalog_is_refused:
        [("contract = \"insurance.status\", version = \"1\"", "contract = \"insurance.status\", version = \"7\"")] => "members[0].federated[0].parts[1].contract", "not in the catalog", NotInCatalog;
    a_part_name_used_twice_is_refused:
        [("name = \"insurance\"", "name = \"citizenship\"")] => "members[0].federated[0].parts[1].name", "used twice", Duplicate;
    a_local_listener_without_a_member_anchor_is_refused:
        [(", member_ca = \"certs/ID_GOV_KEMLU/member-ca.pem\" }", " }")] => "members[0].local", "federation CA is never trusted", Missing;
    a_local_listener_on_a_used_address_is_refused:
        [("listen = \"127.0.0.1:7641\"", "listen = \"127.0.0.1:7441\"")] => "members[0].local.listen", "another listener", AddressInUse;
    a_pinned_fingerprint_that_is_not_one_is_refused:
        [("member-ca.pem\" }", "member-ca.pem\", pinned = [\"sha1:00ff\"] }")] => "members[0].local.pinned[0]", "not a fingerprint", NotAFingerprint;
    an_admin_listener_without_a_member_anchor_is_refused:
        [("local = { listen = \"127.0.0.1:7641\", member_ca = \"certs/ID_GOV_KEMLU/member-ca.pem\" }\n", "")] => "members[0].admin", "member's own anchor", Missing;
    a_subsystem_with_grants_and_no_local_listener_is_refused:
        [("local = { listen = \"127.0.0.1:7641\", member_ca = \"certs/ID_GOV_KEMLU/member-ca.pem\" }\n", ""), ("admin = { listen = \"127.0.0.1:7541\", operators = [] }\n", "")] => "members[0].local", "no local listener", Missing;
    an_operator_given_as_a_full_id_is_refused:
        [("operators = [] }", "operators = [\"ID:GOV:KEMLU:OPS\"] }")] => "members[0].admin.operators[0]", "write the name only", NotAMemberId;
    a_subsystem_configured_twice_is_refused:
        [("subsystems = [{ name = \"PEDULI-WNI\",", "subsystems = [{ name = \"PEDULI-WNI\" }, { name = \"PEDULI-WNI\",")] => "members[0].subsystems[1].name", "twice", Duplicate;
    a_subsystem_rate_of_zero_is_refused:
        [("{ name = \"PEDULI-WNI\",", "{ name = \"PEDULI-WNI\", rate = { per_second = 0, burst = 1 },")] => "members[0].subsystems[0].rate", "at least 1", OutOfRange;
    a_grant_of_no_known_contract_is_refused:
        [("{ contract = \"person.profile\", version = \"1\"", "{ contract = \"person.profile\", version = \"2\"")] => "members[0].subsystems[0].grants[0].contract", "nor a federated contract", NotInCatalog;
    a_grant_without_purposes_is_refused:
        [("version = \"1\", purposes = [\"citizen-protection\"] }] }]", "version = \"1\", purposes = [] }] }]")] => "members[0].subsystems[0].grants[1].purposes", "at least one", Missing;
    a_grant_for_a_purpose_the_contract_does_not_allow_is_refused:
        [("version = \"1\", purposes = [\"citizen-protection\"] }] }]", "version = \"1\", purposes = [\"marketing\"] }] }]")] => "members[0].subsystems[0].grants[1].purposes", "`marketing`", UnknownPurpose;
    a_grant_of_a_federated_contract_for_another_purpose_is_refused:
        [("{ contract = \"person.profile\", version = \"1\", purposes = [\"citizen-protection\"] }", "{ contract = \"person.profile\", version = \"1\", purposes = [\"social-security\"] }")] => "members[0].subsystems[0].grants[0].purposes", "`social-security`", UnknownPurpose;
    a_contract_granted_twice_to_one_subsystem_is_refused:
        [("{ contract = \"person.profile\", version = \"1\"", "{ contract = \"citizenship.status\", version = \"1\"")] => "members[0].subsystems[0].grants[1].contract", "granted twice", Duplicate;
    a_grant_the_member_is_not_granted_by_a_provider_in_the_file_is_refused:
        [("version = \"1\", purposes = [\"citizen-protection\"] }] }]", "version = \"1\", purposes = [\"social-security\"] }] }]")] => "members[0].subsystems[0].grants[1].purposes", "ID:GOV:KEMLU itself is not granted", NotGranted;
}

#[test]
fn a_grant_the_manifest_does_not_give_the_member_is_refused_at_start_up() {
    let c = parse(&[]).unwrap();
    let kemlu = MemberId::parse("ID:GOV:KEMLU").unwrap();
    // What the manifest grants Kemlu: everything but insurance, a part of person.profile.
    let manifest = |r: &ContractRef, _: &str| Some(r.id != "insurance.status");
    let e = check_subsystem_grants(&c, &kemlu, manifest).unwrap_err();
    assert_eq!(e.path, "test.toml");
    assert_eq!(e.kind, Rejection::NotGranted);
    assert_eq!(e.field, "members[0].subsystems[0].grants[0].purposes");
    assert!(e.reason.contains("part `insurance`"), "{e}");
    // Everything granted: nothing to refuse.
    check_subsystem_grants(&c, &kemlu, |_, _| Some(true)).unwrap();
}

#[test]
fn pinned_fingerprints_are_read_with_or_without_colons() {
    let hex = "AB".repeat(32);
    let colons = vec!["ab"; 32].join(":");
    let c = parse(&[(
        "member-ca.pem\" }",
        &format!("member-ca.pem\", pinned = [\"sha256:{hex}\", \"SHA256:{colons}\"] }}"),
    )])
    .unwrap();
    let anchor = &c.members[0].local.as_ref().unwrap().anchor;
    assert_eq!(anchor.pinned, vec![[0xab; 32], [0xab; 32]]);
    assert_eq!(
        anchor.member_ca.as_deref(),
        Some(Path::new("/nonexistent/certs/ID_GOV_KEMLU/member-ca.pem"))
    );
}

#[test]
fn the_member_crl_lies_beside_the_member_ca_unless_named_and_needs_the_ca() {
    let c = parse(&[]).unwrap();
    let anchor = &c.members[0].local.as_ref().unwrap().anchor;
    assert_eq!(
        anchor.member_crl.as_deref(),
        Some(Path::new("/nonexistent/certs/ID_GOV_KEMLU/member-crl.pem"))
    );
    let c = parse(&[(
        "member-ca.pem\" }",
        "member-ca.pem\", member_crl = \"crl/kemlu.pem\" }",
    )])
    .unwrap();
    let anchor = &c.members[0].local.as_ref().unwrap().anchor;
    assert_eq!(
        anchor.member_crl.as_deref(),
        Some(Path::new("/nonexistent/crl/kemlu.pem"))
    );
    let hex = "ab".repeat(32);
    let err = parse(&[(
        "member_ca = \"certs/ID_GOV_KEMLU/member-ca.pem\" }",
        &format!("pinned = [\"sha256:{hex}\"], member_crl = \"crl.pem\" }}"),
    )])
    .unwrap_err();
    assert_eq!(err.field, "members[0].local.member_crl");
    assert_eq!(err.kind, Rejection::Missing);
    assert!(err.reason.contains("needs the CA"), "{err}");
}

#[test]
fn a_configuration_without_members_is_refused() {
    let t = text(&[]);
    let federation_only = &t[..t.find("[[members]]").unwrap()];
    let e = Config::parse(
        &format!("members = []\n{federation_only}"),
        "test.toml",
        Path::new("/nonexistent"),
    )
    .unwrap_err();
    assert_eq!((e.field.as_str(), e.kind), ("members", Rejection::Missing));
}

#[test]
fn a_federated_contract_with_an_empty_part_list_is_refused() {
    let t = text(&[]);
    let start = t.find("  parts = [").unwrap();
    let end = t[start..].find("  ]\n").unwrap() + start + 4;
    let edited = format!("{}  parts = []\n{}", &t[..start], &t[end..]);
    let e = Config::parse(&edited, "test.toml", Path::new("/nonexistent")).unwrap_err();
    assert_eq!(e.field, "members[0].federated[0].parts");
    assert_eq!(e.kind, Rejection::Missing);
}

#[test]
fn a_contract_bound_to_no_backend_is_refused() {
    let t = text(&[]);
    let unbound = &t[..t.find("  [members.provides.sql]").unwrap()];
    let e = Config::parse(unbound, "test.toml", Path::new("/nonexistent")).unwrap_err();
    assert_eq!(e.field, "members[1].provides[0].sql", "{e}");
    assert_eq!(e.kind, Rejection::Binding);
    assert!(e.reason.contains("bind the contract to a backend"), "{e}");
}

#[test]
fn a_contract_bound_to_both_backends_is_refused() {
    let t = text(&[]);
    let e = Config::parse(
        &format!("{t}  [members.provides.http]\n  url = \"https://x\"\n  answer = {{}}\n"),
        "test.toml",
        Path::new("/nonexistent"),
    )
    .unwrap_err();
    assert_eq!(e.field, "members[1].provides[0].http", "{e}");
    assert_eq!(e.kind, Rejection::Binding);
    assert!(e.reason.contains("not both"), "{e}");
}

#[test]
fn resolution_fills_in_defaults_and_resolves_paths() {
    let c = parse(&[]).unwrap();
    let base = Path::new("/nonexistent");
    assert_eq!(c.federation.manifest, base.join("data/manifest.jws"));
    assert_eq!(c.federation.pki.root, base.join("certs"));
    assert_eq!(c.federation.authority_key, c.federation.pki.authority_jwk());
    assert_eq!(c.federation.crl, base.join("certs/federation-crl.pem"));
    assert_eq!(c.federation.manifest_url, None);
    assert_eq!(c.federation.crl_url, None);
    assert_eq!(c.federation.refresh, Duration::from_secs(300));
    assert_eq!(c.federation.expiry_warning, Duration::from_secs(7 * 86_400));
    let kemlu = &c.members[0];
    assert_eq!(kemlu.gateway, "https://localhost:7441");
    assert_eq!(
        kemlu.subsystems[0].id,
        MemberId::parse("ID:GOV:KEMLU:PEDULI-WNI").unwrap()
    );
    // A subsystem's rate defaults to the member's default rate.
    assert_eq!(
        (
            kemlu.subsystems[0].rate.per_second,
            kemlu.subsystems[0].rate.burst
        ),
        (50, 100)
    );
    assert_eq!(
        kemlu.subsystems[0].grants[0].contract,
        ContractRef::new("person.profile", "1")
    );
    assert_eq!(
        kemlu.local.as_ref().map(|l| l.url()).as_deref(),
        Some("https://localhost:7641")
    );
    let admin = kemlu.admin.as_ref().unwrap();
    assert!(admin.operators.is_empty());
    assert_eq!(kemlu.query_deadline, Duration::from_secs(3));
    assert_eq!(kemlu.rates, StateStore::Local);
    assert_eq!(kemlu.replay, StateStore::Local);
    assert_eq!(
        kemlu.connections,
        ConnectionBounds {
            max: 4096,
            per_address: 256,
            handshakes: 256
        }
    );
    assert_eq!(kemlu.admin.as_ref().map(|a| a.max_connections), Some(64));
    assert_eq!(
        (&kemlu.admission.per_peer, &kemlu.admission.per_address),
        (
            &Rate {
                per_second: 10_000,
                burst: 20_000
            },
            &Rate {
                per_second: 20_000,
                burst: 40_000
            }
        )
    );
    assert_eq!(kemlu.audit.store, "data/audit-ID_GOV_KEMLU.db");
    assert_eq!(
        kemlu.audit.pinned_head.as_deref().map(Path::new),
        Some(base.join("certs/ID_GOV_KEMLU/audit-head.json").as_path())
    );
    let profile = &kemlu.federated[0];
    assert_eq!(profile.reference, ContractRef::new("person.profile", "1"));
    assert_eq!(profile.deadline, Duration::from_secs(3));
    assert_eq!(profile.parts[1].0, "insurance");
    let provision = &c.members[1].provides[0];
    assert_eq!(
        provision.contract,
        ContractRef::new("citizenship.status", "1")
    );
    assert_eq!((provision.rate.per_second, provision.rate.burst), (50, 100));
    assert_eq!(provision.queue, Duration::from_millis(100));
    assert!(matches!(provision.spec, AdapterSpec::Sql(_)));
}

#[test]
fn a_gateway_url_and_rates_given_are_kept() {
    let c = parse(&[
        (
            "listen = \"127.0.0.1:7441\"",
            "listen = \"127.0.0.1:7441\"\ngateway = \"https://kemlu.example:443\"",
        ),
        (
            "name = \"Kemlu\"",
            "name = \"Kemlu\"\nlimits = { rate_backend = \"redis\", redis_url = \"env:REDIS\", default_rate = { per_second = 7, burst = 9 } }",
        ),
        (
            "name = \"Dukcapil\"",
            "name = \"Dukcapil\"\nlimits = { default_rate = { per_second = 3, burst = 4 }, max_connections = 20, max_connections_per_address = 5 }",
        ),
        ("operators = [] }", "operators = [], max_connections = 8 }"),
    ])
    .unwrap();
    assert_eq!(c.members[0].gateway, "https://kemlu.example:443");
    assert_eq!(
        c.members[0].rates,
        StateStore::Redis {
            url: "env:REDIS".into(),
            prefix: "simpul".into()
        }
    );
    assert_eq!(c.members[0].replay, StateStore::Local, "rate_backend alone");
    let rate = &c.members[1].provides[0].rate;
    assert_eq!((rate.per_second, rate.burst), (3, 4));
    assert_eq!(
        c.members[1].connections,
        ConnectionBounds {
            max: 20,
            per_address: 5,
            handshakes: 256
        }
    );
    assert_eq!(
        c.members[0].admin.as_ref().map(|a| a.max_connections),
        Some(8)
    );
}

const PKCS11: &str = r#"name = "Dukcapil"
signing = { pkcs11 = { module = "/usr/lib/softhsm/libsofthsm2.so", token = "dukcapil", key = "signing", pin_file = "secrets/dukcapil.pin" } }"#;

#[test]
fn the_signing_key_is_the_key_file_unless_a_token_is_named() {
    let c = parse(&[]).unwrap();
    assert_eq!(
        c.members[1].signing,
        crate::hsm::SigningConfig::File(
            Path::new("/nonexistent/certs/ID_GOV_DUKCAPIL/signing.key").to_owned()
        )
    );
    let c = parse(&[("name = \"Dukcapil\"", PKCS11)]).unwrap();
    assert_eq!(
        c.members[1].signing,
        crate::hsm::SigningConfig::Pkcs11(crate::hsm::Pkcs11Config {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "dukcapil".into(),
            key: "signing".into(),
            pin: crate::hsm::PinSource::File("/nonexistent/secrets/dukcapil.pin".into()),
        })
    );
    let env = PKCS11.replace(
        "pin_file = \"secrets/dukcapil.pin\"",
        "pin_env = \"DUKCAPIL_PIN\"",
    );
    let c = parse(&[("name = \"Dukcapil\"", &env)]).unwrap();
    let crate::hsm::SigningConfig::Pkcs11(p) = &c.members[1].signing else {
        panic!("not PKCS#11");
    };
    assert_eq!(p.pin, crate::hsm::PinSource::Env("DUKCAPIL_PIN".into()));
}

#[test]
fn a_pin_written_into_the_configuration_is_refused() {
    let inline = PKCS11.replace("pin_file = \"secrets/dukcapil.pin\"", "pin = \"1234\"");
    let e = parse(&[("name = \"Dukcapil\"", &inline)]).unwrap_err();
    assert_eq!(e.kind, Rejection::InlineSecret, "{e}");
    assert_eq!(e.field, "members[1].signing.pkcs11.pin");
    assert!(e.reason.contains("pin_file"), "{e}");
}

#[test]
fn a_token_without_a_pin_source_is_refused() {
    let none = PKCS11.replace(", pin_file = \"secrets/dukcapil.pin\"", "");
    let e = parse(&[("name = \"Dukcapil\"", &none)]).unwrap_err();
    assert_eq!(e.kind, Rejection::Missing, "{e}");
    assert_eq!(e.field, "members[1].signing.pkcs11.pin_file");
}

#[test]
fn a_pin_from_a_file_and_the_environment_at_once_is_refused() {
    let both = PKCS11.replace(
        "pin_file = \"secrets/dukcapil.pin\"",
        "pin_file = \"p\", pin_env = \"PIN\"",
    );
    let e = parse(&[("name = \"Dukcapil\"", &both)]).unwrap_err();
    assert_eq!(e.kind, Rejection::Conflict, "{e}");
    assert_eq!(e.field, "members[1].signing.pkcs11.pin_env");
}

#[test]
fn an_empty_pin_variable_name_is_refused() {
    let empty = PKCS11.replace("pin_file = \"secrets/dukcapil.pin\"", "pin_env = \"\"");
    let e = parse(&[("name = \"Dukcapil\"", &empty)]).unwrap_err();
    assert_eq!(e.kind, Rejection::Missing, "{e}");
    assert_eq!(e.field, "members[1].signing.pkcs11.pin_env");
}

#[test]
fn an_empty_token_or_key_label_is_refused() {
    for (from, to, field) in [
        ("token = \"dukcapil\"", "token = \" \"", "token"),
        ("key = \"signing\"", "key = \"\"", "key"),
    ] {
        let bad = PKCS11.replace(from, to);
        let e = parse(&[("name = \"Dukcapil\"", &bad)]).unwrap_err();
        assert_eq!(e.kind, Rejection::Missing, "{e}");
        assert_eq!(e.field, format!("members[1].signing.pkcs11.{field}"));
    }
}

#[test]
fn an_unknown_signing_field_is_refused() {
    let bad = PKCS11.replace("module =", "slot = 0, module =");
    let e = parse(&[("name = \"Dukcapil\"", &bad)]).unwrap_err();
    assert_eq!(e.kind, Rejection::Syntax, "{e}");
}

#[test]
fn another_members_unset_secret_is_kept_for_its_own_start_and_a_bad_one_is_refused_at_once() {
    // Dukcapil's database URL is a secret of Dukcapil's machine: Kemlu's reads without it.
    let unset = "SIMPUL_TEST_SURELY_UNSET_DUKCAPIL_DB";
    let config = parse(&[(
        "database = \"data/dukcapil.db\"",
        &format!("database = \"env:{unset}\""),
    )])
    .unwrap();
    let dukcapil = config
        .member(&MemberId::parse("ID:GOV:DUKCAPIL").unwrap())
        .unwrap();
    let why = dukcapil.provides[0].unresolved.as_deref().unwrap();
    assert_eq!(why.field, "members[1].provides[0].sql.database");
    assert!(
        why.reason.contains(unset) && why.reason.contains("not set"),
        "{why}"
    );
    assert_eq!(why.kind, Rejection::Binding);
    // `env:` with no name is a mistake in the file, refused whoever reads it.
    let err = parse(&[("database = \"data/dukcapil.db\"", "database = \"env:\"")]).unwrap_err();
    assert_eq!(err.field, "members[1].provides[0].sql.database");
}

/// BP2MI providing `contract` 1 to Kemlu for `statistics`, bound by `binding` (the `sql`
/// table's lines).
fn bp2mi_providing(contract: &str, binding: &str) -> Result<Config, ConfigError> {
    let t = format!(
        "{}
[[members]]
id = \"ID:GOV:BP2MI\"
name = \"BP2MI\"
listen = \"127.0.0.1:7443\"

  [[members.provides]]
  contract = \"{contract}\"
  version = \"1\"
  consumers = [{{ member = \"ID:GOV:KEMLU\", purposes = [\"statistics\"] }}]
  [members.provides.sql]
  database = \"data/bp2mi.db\"
{binding}
",
        text(&[])
    );
    Config::parse(&t, "test.toml", Path::new("/nonexistent"))
}

fn with_statistics(binding: &str) -> Result<Config, ConfigError> {
    bp2mi_providing("placement.counts", binding)
}

const AGGREGATE: &str = r#"  rows = "table"
  statement = "SELECT country, occupation AS sector, sex, year, COUNT(*) AS count FROM p GROUP BY 1, 2, 3, 4"
  columns = { country = "text", sector = "text", sex = "text", year = "text", count = "integer" }"#;

#[test]
fn a_statistics_contract_is_bound_to_an_aggregate_with_a_column_per_dimension() {
    assert!(with_statistics(AGGREGATE).is_ok());
    // One person at a time.
    let e = with_statistics(
        r#"  statement = "SELECT country FROM p WHERE nik = :nik"
  columns = { country = "text" }
  not_found = {}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[2].provides[0].sql.rows"),
        "{e}"
    );
    assert!(e.reason.contains("statistics contract"), "{e}");
    // An aggregate without `year`.
    let e = with_statistics(
        &AGGREGATE
            .replace(", year = \"text\"", "")
            .replace(", year,", ","),
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[2].provides[0].sql.columns"),
        "{e}"
    );
    assert!(e.reason.contains("`year`"), "{e}");
}

#[test]
fn an_aggregate_bound_to_a_contract_about_one_person_is_refused() {
    let e = parse(&[(
        r#"  statement = "SELECT citizenship, deceased FROM residents WHERE nik = :nik"
  columns = { citizenship = "text", deceased = "bool" }
  found = { registered = true }
  not_found = { registered = false, citizenship = "unknown", deceased = false }"#,
        r#"  rows = "table"
  statement = "SELECT citizenship, COUNT(*) AS count FROM residents GROUP BY 1"
  columns = { citizenship = "text", count = "integer" }"#,
    )])
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[1].provides[0].sql.rows"),
        "{e}"
    );
    assert!(e.reason.contains("statistics contracts only"), "{e}");
}

fn with_overlap(binding: &str) -> Result<Config, ConfigError> {
    bp2mi_providing("placement.overlap", binding)
}

const LIST: &str = r#"  rows = "list"
  statement = "SELECT nik AS identifier FROM placements WHERE status = 'active'"
  columns = { identifier = "text" }"#;

#[test]
fn an_overlap_contract_is_bound_to_a_list_without_labels() {
    assert!(with_overlap(LIST).is_ok());
    // An aggregate.
    let e = with_overlap(
        r#"  rows = "table"
  statement = "SELECT country, COUNT(*) AS count FROM p GROUP BY 1"
  columns = { country = "text", count = "integer" }"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[2].provides[0].sql.rows"),
        "{e}"
    );
    assert!(e.reason.contains("overlap contract"), "{e}");
    // A labelled list: the provider's list is counted whole.
    let e = with_overlap(
        &LIST
            .replace("AS identifier", "AS identifier, country AS label")
            .replace(
                "identifier = \"text\"",
                "identifier = \"text\", label = \"text\"",
            ),
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[2].provides[0].sql.columns"),
        "{e}"
    );
    assert!(e.reason.contains("`label`"), "{e}");
}

#[test]
fn a_list_bound_to_a_contract_about_one_person_is_refused() {
    let e = parse(&[(
        r#"  statement = "SELECT citizenship, deceased FROM residents WHERE nik = :nik"
  columns = { citizenship = "text", deceased = "bool" }
  found = { registered = true }
  not_found = { registered = false, citizenship = "unknown", deceased = false }"#,
        LIST,
    )])
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[1].provides[0].sql.rows"),
        "{e}"
    );
    assert!(e.reason.contains("overlap contracts only"), "{e}");
}

/// Kemlu with `lists` (the `[[members.lists]]` tables) after its federated contract.
fn with_lists(lists: &str) -> Result<Config, ConfigError> {
    parse(&[(
        "{ name = \"insurance\", contract = \"insurance.status\", version = \"1\" },\n  ]\n",
        &format!(
            "{{ name = \"insurance\", contract = \"insurance.status\", version = \"1\" }},\n  ]\n{lists}\n"
        ),
    )])
}

const OWN_LIST: &str = r#"
  [[members.lists]]
  name = "selfreports"
  [members.lists.sql]
  database = "data/kemlu.db"
  rows = "list"
  statement = "SELECT nik AS identifier, country AS label FROM reports"
  columns = { identifier = "text", label = "text" }"#;

#[test]
fn a_members_own_lists_are_named_once_and_read_whole() {
    let config = with_lists(OWN_LIST).unwrap();
    let kemlu = config
        .member(&MemberId::parse("ID:GOV:KEMLU").unwrap())
        .unwrap();
    assert_eq!(kemlu.lists[0].name, "selfreports");
    assert_eq!(kemlu.lists[0].adapter.list_labelled(), Some(true));
    let e = with_lists(&format!("{OWN_LIST}{OWN_LIST}")).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Duplicate, "members[0].lists[1].name"),
        "{e}"
    );
    let e = with_lists(&OWN_LIST.replace("\"selfreports\"", "\"Self Reports\"")).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::OutOfRange, "members[0].lists[0].name"),
        "{e}"
    );
    let e = with_lists(
        &(OWN_LIST
            .replace("rows = \"list\"\n", "")
            .replace(", country AS label", "")
            .replace(
                "{ identifier = \"text\", label = \"text\" }",
                "{ identifier = \"text\" }",
            )
            .replace("FROM reports", "FROM reports WHERE nik = :nik")
            + "\n  not_found = {}"),
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (Rejection::Binding, "members[0].lists[0].sql.rows"),
        "{e}"
    );
}

/// The base with BP2MI emitting `placement.changed` to Kemlu, and a webhook at Kemlu.
const EVENTS: [(&str, &str); 2] = [
    (
        "  ]\n\n[[members]]\nid = \"ID:GOV:DUKCAPIL\"",
        "  ]\n\n  [[members.webhooks]]\n  name = \"peduli-wni\"\n  url = \"http://127.0.0.1:7680/events\"\n  secret_file = \"certs/webhook.secret\"\n  contracts = [{ contract = \"placement.changed\", version = \"1\" }]\n\n[[members]]\nid = \"ID:GOV:DUKCAPIL\"",
    ),
    (
        "not_found = { registered = false, citizenship = \"unknown\", deceased = false }\n",
        "not_found = { registered = false, citizenship = \"unknown\", deceased = false }\n\n[[members]]\nid = \"ID:GOV:BP2MI\"\nname = \"BP2MI\"\nlisten = \"127.0.0.1:7443\"\nlocal = { listen = \"127.0.0.1:7643\", member_ca = \"certs/ID_GOV_BP2MI/member-ca.pem\" }\nsubsystems = [{ name = \"SISKOP2MI\" }]\n\n  [[members.events]]\n  contract = \"placement.changed\"\n  version = \"1\"\n  subscribers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]\n  emitters = [\"SISKOP2MI\"]\n",
    ),
];

fn parse_events(edits: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = EVENTS.to_vec();
    all.extend_from_slice(edits);
    parse(&all)
}

#[test]
fn an_event_source_and_a_webhook_resolve() {
    let c = parse_events(&[]).unwrap();
    let bp2mi = c.member(&MemberId::parse("ID:GOV:BP2MI").unwrap()).unwrap();
    assert_eq!(bp2mi.events.len(), 1);
    assert_eq!(
        bp2mi.events[0].emitters,
        [MemberId::parse("ID:GOV:BP2MI:SISKOP2MI").unwrap()]
    );
    let kemlu = c.member(&MemberId::parse("ID:GOV:KEMLU").unwrap()).unwrap();
    assert_eq!(kemlu.webhooks[0].name, "peduli-wni");
    assert_eq!(kemlu.webhooks[0].url.port_u16(), Some(7680));
    assert!(kemlu.webhooks[0].secret_file.is_absolute());
}

macro_rules! refused_with_events {
    ($($name:ident: [$(($from:expr, $to:expr)),*] => $field:expr, $reason:expr, $kind:ident;)*) => {$(
        #[test]
        fn $name() {
            let e = parse_events(&[$(($from, $to)),*]).unwrap_err();
            assert_eq!(e.kind, Rejection::$kind, "{e}");
            assert_eq!(e.field, $field, "{e}");
            assert!(e.reason.contains($reason), "{e}");
        }
    )*};
}

refused_with_events! {
    an_event_contract_provided_as_a_lookup_is_refused:
        [("  [[members.events]]", "  [[members.provides]]\n  contract = \"placement.changed\"\n  version = \"1\"\n  consumers = []\n  [members.provides.sql]\n  database = \"data/bp2mi.db\"\n  statement = \"SELECT 1 AS x\"\n  columns = { x = \"integer\" }\n\n  [[members.events]]")] => "members[2].provides[0].contract", "is an event contract", Binding;
    an_event_source_that_is_not_an_event_contract_is_refused:
        [("contract = \"placement.changed\"\n  version = \"1\"\n  subscribers", "contract = \"employment.placement\"\n  version = \"1\"\n  subscribers")] => "members[2].events[0].contract", "not an event contract", Binding;
    an_event_source_of_another_providers_contract_is_refused:
        [("contract = \"placement.changed\"\n  version = \"1\"\n  subscribers", "contract = \"citizenship.status\"\n  version = \"1\"\n  subscribers")] => "members[2].events[0].contract", "according to its document", WrongProvider;
    an_emitter_that_is_not_a_subsystem_is_refused:
        [("emitters = [\"SISKOP2MI\"]", "emitters = [\"SIAK\"]")] => "members[2].events[0].emitters[0]", "not one of ID:GOV:BP2MI's", UnknownMember;
    a_subscriber_that_is_not_configured_is_refused:
        [("subscribers = [{ member = \"ID:GOV:KEMLU\"", "subscribers = [{ member = \"ID:GOV:NOBODY\"")] => "members[2].events[0].subscribers[0].member", "not a configured member", UnknownMember;
    a_subscriber_without_a_purpose_is_refused:
        [("subscribers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]", "subscribers = [{ member = \"ID:GOV:KEMLU\", purposes = [] }]")] => "members[2].events[0].subscribers[0].purposes", "at least one purpose", Missing;
    a_webhook_that_is_not_http_is_refused:
        [("url = \"http://127.0.0.1:7680/events\"", "url = \"ftp://127.0.0.1/events\"")] => "members[0].webhooks[0].url", "http://", OutOfRange;
    a_webhook_with_a_bad_name_is_refused:
        [("name = \"peduli-wni\"", "name = \"Peduli WNI\"")] => "members[0].webhooks[0].name", "[a-z0-9_-]", OutOfRange;
    a_webhook_of_a_contract_that_is_not_an_event_contract_is_refused:
        [("contracts = [{ contract = \"placement.changed\"", "contracts = [{ contract = \"employment.placement\"")] => "members[0].webhooks[0].contracts[0]", "not an event contract", NotInCatalog;
    a_webhook_of_no_contract_is_refused:
        [("contracts = [{ contract = \"placement.changed\", version = \"1\" }]", "contracts = []")] => "members[0].webhooks[0].contracts", "name the event contracts", Missing;
    a_webhook_timeout_of_zero_is_refused:
        [("secret_file = \"certs/webhook.secret\"", "secret_file = \"certs/webhook.secret\"\n  timeout_ms = 0")] => "members[0].webhooks[0].timeout_ms", "at least 1", OutOfRange;
}

/// The emitters line of the `EVENTS` base, and the same with a change table after it.
const EMITTERS: &str = "emitters = [\"SISKOP2MI\"]\n";
const WITH_TABLE: &str = r#"emitters = ["SISKOP2MI"]
  [members.events.sql]
  database = "data/bp2mi.db"
  rows = "changes"
  statement = """
    SELECT id AS source, placement, kind AS "change", changed_on AS "on"
      FROM placement_changes WHERE id > :after ORDER BY id LIMIT :limit"""
  columns = { source = "integer", placement = "text", change = "text", on = "text" }
"#;

#[test]
fn an_event_source_with_a_change_table_resolves() {
    let c = parse_events(&[(EMITTERS, WITH_TABLE)]).unwrap();
    let bp2mi = c.member(&MemberId::parse("ID:GOV:BP2MI").unwrap()).unwrap();
    let table = bp2mi.events[0].table.as_ref().unwrap();
    assert!(table.unresolved.is_none());
    assert_eq!(table.spec.rows, adapters::RowMode::Changes);
    assert_eq!(
        table.adapter.change_fields(),
        Some(vec![
            "change".to_owned(),
            "on".to_owned(),
            "placement".to_owned()
        ])
    );
    // The local face stays open to its emitters beside the table.
    assert_eq!(bp2mi.events[0].emitters.len(), 1);
    // Without `sql`, no table.
    let c = parse_events(&[]).unwrap();
    let bp2mi = c.member(&MemberId::parse("ID:GOV:BP2MI").unwrap()).unwrap();
    assert!(bp2mi.events[0].table.is_none());
}

#[test]
fn a_change_table_whose_variable_is_not_set_is_read_but_not_started() {
    let c = parse_events(&[
        (EMITTERS, WITH_TABLE),
        (
            "database = \"data/bp2mi.db\"\n  rows = \"changes\"",
            "database = \"env:SIMPUL_TEST_SURELY_UNSET_VARIABLE\"\n  rows = \"changes\"",
        ),
    ])
    .unwrap();
    let bp2mi = c.member(&MemberId::parse("ID:GOV:BP2MI").unwrap()).unwrap();
    let unresolved = bp2mi.events[0].table.as_ref().unwrap().unresolved.as_ref();
    let e = unresolved.expect("refused when the member starts");
    assert_eq!(e.field, "members[2].events[0].sql.database", "{e}");
    assert!(
        e.reason.contains("SIMPUL_TEST_SURELY_UNSET_VARIABLE"),
        "{e}"
    );
}

refused_with_events! {
    a_change_table_that_is_not_in_changes_mode_is_refused:
        [(EMITTERS, WITH_TABLE), ("rows = \"changes\"", "rows = \"many\"\n  list_field = \"changes\"")] => "members[2].events[0].sql.rows", "set rows = \"changes\"", Binding;
    a_change_table_column_that_is_not_a_property_of_the_event_is_refused:
        [(EMITTERS, WITH_TABLE), ("on = \"text\" }", "on = \"text\", country = \"text\" }")] => "members[2].events[0].sql.columns", "`country` is not a property of placement.changed/1's events", Binding;
    a_change_table_column_of_a_type_the_event_does_not_take_is_refused:
        [(EMITTERS, WITH_TABLE), ("placement = \"text\"", "placement = \"integer\"")] => "members[2].events[0].sql.columns", "`placement` is read as \"integer\", but placement.changed/1's events take string there", Binding;
    a_change_table_without_a_column_the_event_requires_is_refused:
        [(EMITTERS, WITH_TABLE), (", on = \"text\" }", " }")] => "members[2].events[0].sql.columns", "placement.changed/1's events require `on`", Binding;
    a_change_table_the_adapter_refuses_is_refused_naming_its_field:
        [(EMITTERS, WITH_TABLE), ("WHERE id > :after ", "")] => "members[2].events[0].sql.statement", "uses `:after`", Binding;
}
