//! The one validation step: [`RawConfig`] in, [`Config`] out, or the first rejection with
//! the file, the field and its kind.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use adapters::{AdapterSpec, ColumnType, RowMode, SqlSpec};
use contracts::manifest::Rate;
use contracts::{Contract, ContractRef, MemberId, StaffId, StaffRole};
use serde_json::Value;

use super::raw::{
    RawAdmin, RawConfig, RawFederated, RawGrant, RawLocal, RawMember, RawProvision, RawStateBackend,
};
use super::{
    AdminConfig, AdmissionLimits, BreakerConfig, Config, ConfigError, ConnectionBounds,
    FederatedContract, Federation, LocalConfig, Member, MemberAnchor, Provision, Rejection,
    StateStore, Subsystem, SubsystemGrant,
};
use crate::layout::{MEMBER_CRL_FILE, PkiLayout};

/// Where in the text a parse error is: its line, and that line's text.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return "(file)".into();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let shown: String = line.chars().take(60).collect();
    format!("line {line_no} (`{shown}`)")
}

/// Rejections of one file.
pub(super) struct Refuse<'a>(pub(super) &'a str);

impl Refuse<'_> {
    pub(super) fn at(
        &self,
        kind: Rejection,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            path: self.0.to_owned(),
            field: field.into(),
            reason: reason.into(),
            kind,
        }
    }
}

/// Parses `text` (from `source`) and validates it; relative paths resolve against
/// `base_dir`; `fallback` is the catalog when the configured directory does not exist.
pub(super) fn resolve(
    text: &str,
    source: &str,
    base_dir: &Path,
    fallback: Option<Vec<Contract>>,
) -> Result<Config, ConfigError> {
    let refuse = Refuse(source);
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        refuse.at(
            Rejection::Syntax,
            locate(text, e.span()),
            e.message().trim(),
        )
    })?;
    let base_dir = base_dir.to_path_buf();
    let f = raw.federation;
    let catalog_dir = base_dir.join(&f.catalog);
    let documents = match fallback {
        Some(documents) if !catalog_dir.is_dir() => documents,
        _ => contracts::load_catalog(&catalog_dir)
            .map_err(|e| refuse.at(Rejection::Catalog, "federation.catalog", e.to_string()))?,
    };
    let catalog: BTreeMap<ContractRef, Contract> =
        documents.into_iter().map(|c| (c.reference(), c)).collect();
    if f.authority.is_subsystem() {
        return Err(refuse.at(
            Rejection::NotAMemberId,
            "federation.authority",
            "must be a member id (three parts)",
        ));
    }
    if raw.members.is_empty() {
        return Err(refuse.at(
            Rejection::Missing,
            "members",
            "at least one member is required",
        ));
    }
    let pki = PkiLayout::new(base_dir.join(&f.certs));
    for (field, url) in [
        ("federation.manifest_url", &f.manifest_url),
        ("federation.crl_url", &f.crl_url),
    ] {
        if let Some(url) = url
            && !publication_url(url)
        {
            return Err(refuse.at(
                Rejection::NotHttps,
                field,
                "must be an https:// URL with a host and without user info or fragment",
            ));
        }
    }
    if f.refresh_s == 0 || f.refresh_s > 86_400 {
        return Err(refuse.at(
            Rejection::OutOfRange,
            "federation.refresh_s",
            "must be 1 to 86400 seconds",
        ));
    }
    let federation = Federation {
        id: f.id,
        authority: f.authority,
        manifest: base_dir.join(&f.manifest),
        authority_key: match &f.authority_key {
            Some(p) => base_dir.join(p),
            None => pki.authority_jwk(),
        },
        crl: match &f.crl {
            Some(p) => base_dir.join(p),
            None => pki.federation_crl(),
        },
        pki,
        manifest_validity_days: f.manifest_validity_days,
        catalog: catalog_dir,
        hosts: f.hosts,
        manifest_url: f.manifest_url,
        crl_url: f.crl_url,
        refresh: std::time::Duration::from_secs(f.refresh_s),
        expiry_warning: std::time::Duration::from_secs(u64::from(f.expiry_warning_days) * 86_400),
    };

    // Members first, so that every provision can check its consumers against all of them.
    let mut ids = HashSet::new();
    let mut listens = HashSet::new();
    let mut members = Vec::with_capacity(raw.members.len());
    let mut pending = Vec::with_capacity(raw.members.len());
    for (i, m) in raw.members.into_iter().enumerate() {
        let at = format!("members[{i}]");
        let (member, rest) = member(
            &refuse,
            &at,
            m,
            &base_dir,
            &federation.pki,
            &mut ids,
            &mut listens,
        )?;
        members.push(member);
        pending.push(rest);
    }
    let cx = Context {
        refuse: &refuse,
        catalog: &catalog,
        catalog_dir: &federation.catalog,
        base_dir: &base_dir,
        members: &ids,
    };
    for (i, (member, rest)) in members.iter_mut().zip(pending).enumerate() {
        let at = format!("members[{i}]");
        for (j, p) in rest.provides.into_iter().enumerate() {
            let at = format!("{at}.provides[{j}]");
            let p = cx.provision(&at, &member.id, p, &rest.default_rate)?;
            if member.provides.iter().any(|q| q.contract == p.contract) {
                return Err(refuse.at(
                    Rejection::Duplicate,
                    format!("{at}.contract"),
                    "provided twice",
                ));
            }
            member.provides.push(p);
        }
        for (j, e) in rest.events.into_iter().enumerate() {
            let at = format!("{at}.events[{j}]");
            let e = cx.event_source(&at, member, e, &rest.default_rate)?;
            let twice = member.events.iter().any(|f| f.contract == e.contract)
                || member.provides.iter().any(|p| p.contract == e.contract);
            if twice {
                return Err(refuse.at(
                    Rejection::Duplicate,
                    format!("{at}.contract"),
                    "emitted twice",
                ));
            }
            member.events.push(e);
        }
        for (j, w) in rest.webhooks.into_iter().enumerate() {
            let at = format!("{at}.webhooks[{j}]");
            let w = cx.webhook(&at, w)?;
            if member.webhooks.iter().any(|v| v.name == w.name) {
                return Err(refuse.at(
                    Rejection::Duplicate,
                    format!("{at}.name"),
                    format!("a webhook named `{}` is configured twice", w.name),
                ));
            }
            member.webhooks.push(w);
        }
        for (j, f) in rest.federated.into_iter().enumerate() {
            let f = cx.federated(&format!("{at}.federated[{j}]"), f)?;
            member.federated.push(f);
        }
        for (j, grants) in rest.grants.into_iter().enumerate() {
            let at = format!("{at}.subsystems[{j}]");
            for (k, g) in grants.into_iter().enumerate() {
                let g = cx.grant(&format!("{at}.grants[{k}]"), member, g)?;
                if member.subsystems[j]
                    .grants
                    .iter()
                    .any(|h| h.contract == g.contract)
                {
                    return Err(refuse.at(
                        Rejection::Duplicate,
                        format!("{at}.grants[{k}].contract"),
                        format!("{} is granted twice", g.contract),
                    ));
                }
                member.subsystems[j].grants.push(g);
            }
        }
    }
    let config = Config {
        source: source.to_owned(),
        base_dir,
        federation,
        data: raw.data,
        members,
        catalog,
    };
    // What a provider in this same file grants is known now; the rest is checked against
    // the manifest when the gateway starts.
    for m in &config.members {
        super::check_subsystem_grants(&config, &m.id, |contract, purpose| {
            let consumers = config.members.iter().find_map(|p| {
                p.provides
                    .iter()
                    .find(|p| &p.contract == contract)
                    .map(|p| &p.consumers)
                    .or_else(|| {
                        p.events
                            .iter()
                            .find(|e| &e.contract == contract)
                            .map(|e| &e.subscribers)
                    })
            })?;
            Some(
                consumers
                    .iter()
                    .any(|c| c.member == m.id && c.purposes.iter().any(|p| p == purpose)),
            )
        })?;
    }
    Ok(config)
}

/// What of a member is validated once every member is known.
struct Pending {
    events: Vec<super::raw::RawEvents>,
    webhooks: Vec<super::raw::RawWebhook>,
    provides: Vec<RawProvision>,
    federated: Vec<RawFederated>,
    default_rate: Rate,
    /// Each subsystem's grants, in the order of `subsystems`.
    grants: Vec<Vec<RawGrant>>,
}

/// `sha256:` and 64 hex digits (colons between pairs allowed, as `openssl x509 -fingerprint
/// -sha256` prints them), either case.
fn fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: String = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))?
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `[members.local]`: an address of its own and an anchor the member controls.
fn local(
    refuse: &Refuse,
    at: &str,
    l: RawLocal,
    base_dir: &Path,
    listens: &mut HashSet<SocketAddr>,
) -> Result<LocalConfig, ConfigError> {
    if !listens.insert(l.listen) {
        return Err(refuse.at(
            Rejection::AddressInUse,
            format!("{at}.local.listen"),
            format!("{} is used by another listener", l.listen),
        ));
    }
    if l.member_ca.is_none() && l.pinned.is_empty() {
        return Err(refuse.at(
            Rejection::Missing,
            format!("{at}.local"),
            "name the member's own trust anchor: member_ca (its CA's PEM file, \
             `simpul pki init` makes one) or pinned (certificate fingerprints); \
             the federation CA is never trusted here",
        ));
    }
    let pinned = l
        .pinned
        .iter()
        .enumerate()
        .map(|(k, p)| {
            fingerprint(p).ok_or_else(|| {
                refuse.at(
                    Rejection::NotAFingerprint,
                    format!("{at}.local.pinned[{k}]"),
                    format!(
                        "`{p}` is not a fingerprint: write sha256: and the 64 hex digits of the \
                         certificate's SHA-256 (openssl x509 -noout -fingerprint -sha256)"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if l.member_crl.is_some() && l.member_ca.is_none() {
        return Err(refuse.at(
            Rejection::Missing,
            format!("{at}.local.member_crl"),
            "a CRL needs the CA that signs it: name member_ca too, or remove member_crl \
             (a pinned certificate is revoked by removing its pin)",
        ));
    }
    let member_ca = l.member_ca.map(|p| base_dir.join(p));
    // By default the member CA's CRL lies beside it, where `simpul pki` writes it.
    let member_crl = match (l.member_crl, &member_ca) {
        (Some(p), _) => Some(base_dir.join(p)),
        (None, Some(ca)) => Some(ca.with_file_name(MEMBER_CRL_FILE)),
        (None, None) => None,
    };
    Ok(LocalConfig {
        listen: l.listen,
        anchor: MemberAnchor {
            member_ca,
            member_crl,
            pinned,
        },
    })
}

/// `[members.admin]`: its operators and auditors, each a name under this member.
fn admin(
    refuse: &Refuse,
    at: &str,
    member: &MemberId,
    a: RawAdmin,
    has_anchor: bool,
    listens: &mut HashSet<SocketAddr>,
) -> Result<AdminConfig, ConfigError> {
    if a.max_connections == 0 {
        return Err(refuse.at(
            Rejection::OutOfRange,
            format!("{at}.admin.max_connections"),
            "must be at least 1",
        ));
    }
    if !has_anchor {
        return Err(refuse.at(
            Rejection::Missing,
            format!("{at}.admin"),
            "the admin listener trusts the member's own anchor: add [members.local] with \
             member_ca or pinned",
        ));
    }
    let staff = |role: StaffRole, field: &str, names: &[String]| {
        names
            .iter()
            .enumerate()
            .map(|(k, name)| {
                StaffId::new(role, member, name).map_err(|e| {
                    refuse.at(
                        Rejection::NotAMemberId,
                        format!("{at}.admin.{field}[{k}]"),
                        format!("{e}: write the name only (e.g. \"OPS\")"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let operators = staff(StaffRole::Operator, "operators", &a.operators)?;
    let auditors = staff(StaffRole::Auditor, "auditors", &a.auditors)?;
    let evidence_auditors = staff(
        StaffRole::Auditor,
        "evidence_auditors",
        &a.evidence_auditors,
    )?;
    if let Some((k, who)) = evidence_auditors
        .iter()
        .enumerate()
        .find(|(_, who)| !auditors.contains(who))
    {
        return Err(refuse.at(
            Rejection::UnknownMember,
            format!("{at}.admin.evidence_auditors[{k}]"),
            format!("{who} is not on admin.auditors: evidence is granted only to an auditor"),
        ));
    }
    if !listens.insert(a.listen) {
        return Err(refuse.at(
            Rejection::AddressInUse,
            format!("{at}.admin.listen"),
            format!("{} is used by another listener", a.listen),
        ));
    }
    Ok(AdminConfig {
        listen: a.listen,
        operators,
        auditors,
        evidence_auditors,
        max_connections: a.max_connections,
    })
}

/// One member's own fields: its ids, addresses, limits and audit log.
fn member(
    refuse: &Refuse,
    at: &str,
    m: RawMember,
    base_dir: &Path,
    pki: &PkiLayout,
    ids: &mut HashSet<MemberId>,
    listens: &mut HashSet<SocketAddr>,
) -> Result<(Member, Pending), ConfigError> {
    if m.id.is_subsystem() {
        return Err(refuse.at(
            Rejection::NotAMemberId,
            format!("{at}.id"),
            "must be a member id (three parts), not a subsystem",
        ));
    }
    if !ids.insert(m.id.clone()) {
        return Err(refuse.at(
            Rejection::Duplicate,
            format!("{at}.id"),
            format!("{} is configured twice", m.id),
        ));
    }
    if !listens.insert(m.listen) {
        return Err(refuse.at(
            Rejection::AddressInUse,
            format!("{at}.listen"),
            format!("{} is used by another member", m.listen),
        ));
    }
    let gateway = m
        .gateway
        .unwrap_or_else(|| format!("https://localhost:{}", m.listen.port()));
    if !gateway.starts_with("https://") {
        return Err(refuse.at(
            Rejection::NotHttps,
            format!("{at}.gateway"),
            "must be an https:// URL",
        ));
    }
    let limits = m.limits;
    let store = |backend: RawStateBackend, field: &str| match (backend, &limits.redis_url) {
        (RawStateBackend::Local, _) => Ok(StateStore::Local),
        (RawStateBackend::Redis, Some(url)) => Ok(StateStore::Redis {
            url: url.clone(),
            prefix: limits.redis_prefix.clone(),
        }),
        (RawStateBackend::Redis, None) => Err(refuse.at(
            Rejection::Missing,
            format!("{at}.limits.redis_url"),
            format!("required with {field} = \"redis\""),
        )),
    };
    let rates = store(limits.rate_backend, "rate_backend")?;
    let replay = store(limits.replay_backend, "replay_backend")?;
    if limits.replay_capacity == 0 || m.cache.max_entries == 0 || m.breaker.failures == 0 {
        return Err(refuse.at(
            Rejection::OutOfRange,
            format!("{at}.limits"),
            "replay_capacity, cache.max_entries and breaker.failures must be at least 1",
        ));
    }
    let at_least_one = |field: &str| {
        refuse.at(
            Rejection::OutOfRange,
            format!("{at}.{field}"),
            "must be at least 1",
        )
    };
    if limits.max_connections == 0 {
        return Err(at_least_one("limits.max_connections"));
    }
    if limits.max_connections_per_address == 0 {
        return Err(at_least_one("limits.max_connections_per_address"));
    }
    if limits.max_handshakes == 0 {
        return Err(at_least_one("limits.max_handshakes"));
    }
    for (field, rate) in [
        ("limits.admission_per_peer", &limits.admission_per_peer),
        (
            "limits.admission_per_address",
            &limits.admission_per_address,
        ),
    ] {
        if rate.per_second == 0 || rate.burst == 0 {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.{field}"),
                "per_second and burst must each be at least 1",
            ));
        }
    }
    let admission = AdmissionLimits {
        per_peer: limits.admission_per_peer.clone(),
        per_address: limits.admission_per_address.clone(),
    };
    let connections = ConnectionBounds {
        max: limits.max_connections,
        per_address: limits.max_connections_per_address,
        handshakes: limits.max_handshakes,
    };
    let mut audit = m
        .audit
        .unwrap_or_else(|| audit_store::AuditConfig::for_member(&m.id));
    // The last signed tree head is pinned next to the member's signing key, away from the
    // audit store: whoever can rewrite the store should not also hold what catches it.
    // So are the keys that keep identifiers out of reach at rest: the HMAC secret of
    // `subject` and the key that seals evidence.
    let keys = pki.member_dir(&m.id);
    for (file, name) in [
        (&mut audit.pinned_head, "audit-head.json"),
        (&mut audit.secret_file, "audit-subject.key"),
        (&mut audit.evidence_key_file, "audit-evidence.key"),
    ] {
        if file.is_none() {
            *file = Some(keys.join(name).display().to_string());
        }
    }
    audit.check().map_err(|(field, reason)| {
        refuse.at(Rejection::OutOfRange, format!("{at}.audit.{field}"), reason)
    })?;
    let signing = super::signing::resolve(refuse, at, &m.id, m.signing, base_dir, pki)?;
    let local = m
        .local
        .map(|l| local(refuse, at, l, base_dir, listens))
        .transpose()?;
    let admin = m
        .admin
        .map(|a| admin(refuse, at, &m.id, a, local.is_some(), listens))
        .transpose()?;
    let mut subsystems: Vec<Subsystem> = Vec::with_capacity(m.subsystems.len());
    let mut grants = Vec::with_capacity(m.subsystems.len());
    for (j, s) in m.subsystems.into_iter().enumerate() {
        let id = m.id.subsystem(&s.name).map_err(|e| {
            refuse.at(
                Rejection::NotAMemberId,
                format!("{at}.subsystems[{j}].name"),
                e.to_string(),
            )
        })?;
        if subsystems.iter().any(|t| t.id == id) {
            return Err(refuse.at(
                Rejection::Duplicate,
                format!("{at}.subsystems[{j}].name"),
                format!("{id} is configured twice"),
            ));
        }
        let rate = s.rate.unwrap_or_else(|| limits.default_rate.clone());
        if rate.per_second == 0 || rate.burst == 0 {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.subsystems[{j}].rate"),
                "per_second and burst must be at least 1",
            ));
        }
        if !s.grants.is_empty() && local.is_none() {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.local"),
                format!(
                    "{id} is granted contracts but the member has no local listener: add \
                     [members.local] with listen and member_ca or pinned"
                ),
            ));
        }
        subsystems.push(Subsystem {
            id,
            rate,
            grants: Vec::new(),
        });
        grants.push(s.grants);
    }
    let member = Member {
        id: m.id,
        name: m.name,
        listen: m.listen,
        gateway,
        local,
        subsystems,
        query_deadline: Duration::from_millis(m.query_deadline_ms),
        seed: m.seed,
        replay_capacity: limits.replay_capacity,
        rates,
        replay,
        connections,
        admission,
        cache: m.cache,
        breaker: BreakerConfig {
            failures: m.breaker.failures,
            cooldown: Duration::from_millis(m.breaker.cooldown_ms),
        },
        admin,
        audit,
        provides: Vec::new(),
        federated: Vec::new(),
        lists: own_lists(refuse, at, m.lists, base_dir)?,
        events: Vec::new(),
        webhooks: Vec::new(),
        signing,
    };
    let pending = Pending {
        events: m.events,
        webhooks: m.webhooks,
        provides: m.provides,
        federated: m.federated,
        default_rate: limits.default_rate,
        grants,
    };
    Ok((member, pending))
}

/// A member's own lists: each a unique name of `[a-z0-9_-]` and an SQL binding in
/// `rows = "list"` mode.
fn own_lists(
    refuse: &Refuse<'_>,
    at: &str,
    raw: Vec<super::raw::RawList>,
    base_dir: &Path,
) -> Result<Vec<super::OwnList>, ConfigError> {
    let mut lists: Vec<super::OwnList> = Vec::with_capacity(raw.len());
    for (j, l) in raw.into_iter().enumerate() {
        let at = format!("{at}.lists[{j}]");
        let valid = (1..=64).contains(&l.name.len())
            && l.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.name"),
                "1 to 64 characters of [a-z0-9_-]",
            ));
        }
        if lists.iter().any(|k| k.name == l.name) {
            return Err(refuse.at(
                Rejection::Duplicate,
                format!("{at}.name"),
                format!("the list `{}` is named twice", l.name),
            ));
        }
        let adapter = adapters::build(&AdapterSpec::Sql(l.sql), base_dir).map_err(|e| {
            refuse.at(
                Rejection::Binding,
                format!("{at}.sql.{}", e.field),
                e.reason,
            )
        })?;
        if adapter.list_labelled().is_none() {
            return Err(refuse.at(
                Rejection::Binding,
                format!("{at}.sql.rows"),
                "a list is read whole: set rows = \"list\" (docs/ADAPTERS.md)",
            ));
        }
        lists.push(super::OwnList {
            name: l.name,
            adapter,
        });
    }
    Ok(lists)
}

/// What a provision and a federated contract are checked against.
struct Context<'a> {
    refuse: &'a Refuse<'a>,
    catalog: &'a BTreeMap<ContractRef, Contract>,
    catalog_dir: &'a Path,
    base_dir: &'a Path,
    members: &'a HashSet<MemberId>,
}

impl Context<'_> {
    /// A contract `provider` provides: in the catalog as its, granted to configured members
    /// for the contract's purposes, with limits of at least 1 and one backend the adapter
    /// accepts (built here, once).
    fn provision(
        &self,
        at: &str,
        provider: &MemberId,
        p: RawProvision,
        default_rate: &Rate,
    ) -> Result<Provision, ConfigError> {
        let refuse = self.refuse;
        let r = ContractRef::new(&p.contract, &p.version);
        let contract = self.catalog_contract(at, provider, &r)?;
        if contract.event().is_some() {
            return Err(refuse.at(
                Rejection::Binding,
                format!("{at}.contract"),
                format!("{r} is an event contract: it is emitted, not asked; declare it in [[members.events]] (docs/OPERATIONS.md)"),
            ));
        }
        self.check_consumers(at, "consumers", &r, contract, &p.consumers)?;
        let rate = p.rate.unwrap_or_else(|| default_rate.clone());
        if rate.per_second == 0 || rate.burst == 0 {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.rate"),
                "per_second and burst must be at least 1",
            ));
        }
        if p.concurrency == 0 || p.queue_ms == 0 {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.concurrency"),
                "concurrency and queue_ms must be at least 1",
            ));
        }
        let spec = match (p.sql, p.http) {
            (Some(sql), None) => AdapterSpec::Sql(sql),
            (None, Some(http)) => AdapterSpec::Http(http),
            (Some(_), Some(_)) => {
                return Err(refuse.at(
                    Rejection::Binding,
                    format!("{at}.http"),
                    "bind the contract to one backend: a `sql` or an `http` table, not both",
                ));
            }
            (None, None) => {
                return Err(refuse.at(
                    Rejection::Binding,
                    format!("{at}.sql"),
                    "bind the contract to a backend: add a `sql` or an `http` table",
                ));
            }
        };
        let (adapter, unresolved) = match adapters::build(&spec, self.base_dir) {
            Ok(adapter) => (adapter, None),
            // Only the serving machine has the secret: refused when this member starts.
            Err(e) if e.unset_variable.is_some() => {
                let why = refuse.at(Rejection::Binding, format!("{at}.{}", e.field), e.reason);
                let adapter: Arc<dyn adapters::Adapter> = Arc::new(Unresolved);
                (adapter, Some(Arc::new(why)))
            }
            Err(e) => {
                return Err(refuse.at(Rejection::Binding, format!("{at}.{}", e.field), e.reason));
            }
        };
        if unresolved.is_none() {
            self.check_table(at, contract, &spec, adapter.as_ref())?;
        }
        Ok(Provision {
            contract: r,
            consumers: p.consumers,
            rate,
            concurrency: p.concurrency,
            queue: Duration::from_millis(p.queue_ms),
            spec,
            adapter,
            unresolved,
        })
    }

    /// Each consumer (a subscriber, for an event contract) is a configured member, and asks
    /// only for purposes of the contract.
    fn check_consumers(
        &self,
        at: &str,
        field: &str,
        r: &ContractRef,
        contract: &Contract,
        consumers: &[contracts::manifest::Consumer],
    ) -> Result<(), ConfigError> {
        let refuse = self.refuse;
        for (k, c) in consumers.iter().enumerate() {
            if !self.members.contains(&c.member) {
                return Err(refuse.at(
                    Rejection::UnknownMember,
                    format!("{at}.{field}[{k}].member"),
                    format!("{} is not a configured member", c.member),
                ));
            }
            let purposes = &contract.doc().purposes;
            if let Some(bad) = c.purposes.iter().find(|x| !purposes.contains(x)) {
                return Err(refuse.at(
                    Rejection::UnknownPurpose,
                    format!("{at}.{field}[{k}].purposes"),
                    format!("`{bad}` is not a purpose of {r} ({})", purposes.join(", ")),
                ));
            }
            // A delivery is made under the first purpose its subscriber is granted.
            if c.purposes.is_empty() && field == "subscribers" {
                return Err(refuse.at(
                    Rejection::Missing,
                    format!("{at}.{field}[{k}].purposes"),
                    format!("name at least one purpose of {r} ({})", purposes.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The contract of `at.contract` in the catalog, with its document's provider
    /// `provider`.
    fn catalog_contract(
        &self,
        at: &str,
        provider: &MemberId,
        r: &ContractRef,
    ) -> Result<&Contract, ConfigError> {
        let refuse = self.refuse;
        let Some(contract) = self.catalog.get(r) else {
            return Err(refuse.at(
                Rejection::NotInCatalog,
                format!("{at}.contract"),
                format!("{r} is not in the catalog {}", self.catalog_dir.display()),
            ));
        };
        if &contract.doc().provider != provider {
            return Err(refuse.at(
                Rejection::WrongProvider,
                format!("{at}.contract"),
                format!(
                    "{r} is provided by {} according to its document",
                    contract.doc().provider
                ),
            ));
        }
        Ok(contract)
    }

    /// An event contract `member` emits: an event contract of the catalog whose document
    /// names it, delivered to configured members for the contract's purposes, emitted by
    /// subsystems the member has.
    fn event_source(
        &self,
        at: &str,
        member: &Member,
        e: super::raw::RawEvents,
        default_rate: &Rate,
    ) -> Result<super::EventSource, ConfigError> {
        let refuse = self.refuse;
        let r = ContractRef::new(&e.contract, &e.version);
        let contract = self.catalog_contract(at, &member.id, &r)?;
        if contract.event().is_none() {
            return Err(refuse.at(
                Rejection::Binding,
                format!("{at}.contract"),
                format!("{r} is not an event contract: provide it in [[members.provides]]"),
            ));
        }
        self.check_consumers(at, "subscribers", &r, contract, &e.subscribers)?;
        let mut emitters = Vec::with_capacity(e.emitters.len());
        for (k, name) in e.emitters.iter().enumerate() {
            let known = member
                .id
                .subsystem(name)
                .ok()
                .filter(|id| member.subsystems.iter().any(|s| &s.id == id));
            let Some(id) = known else {
                return Err(refuse.at(
                    Rejection::UnknownMember,
                    format!("{at}.emitters[{k}]"),
                    format!(
                        "`{name}` is not one of {}'s [[members.subsystems]]",
                        member.id
                    ),
                ));
            };
            emitters.push(id);
        }
        let table = match e.sql {
            Some(sql) => Some(self.change_table(at, &r, contract, sql)?),
            None => None,
        };
        Ok(super::EventSource {
            contract: r,
            subscribers: e.subscribers,
            emitters,
            rate: default_rate.clone(),
            table,
        })
    }

    /// The change table an event contract is emitted from: a binding with `rows =
    /// "changes"` whose columns but `source` are properties of the contract's request schema,
    /// each of a type the schema allows there, with a column for every property it requires
    /// (checked from the binding as written, so also where its `env:` secret is not set).
    fn change_table(
        &self,
        at: &str,
        r: &ContractRef,
        contract: &Contract,
        sql: SqlSpec,
    ) -> Result<super::ChangeTable, ConfigError> {
        let refuse = self.refuse;
        let columns_at = format!("{at}.sql.columns");
        if sql.rows != RowMode::Changes {
            return Err(refuse.at(
                Rejection::Binding,
                format!("{at}.sql.rows"),
                "an event contract is emitted from a change table: set rows = \"changes\" (docs/ADAPTERS.md)",
            ));
        }
        let request = &contract.doc().request;
        let properties = request.get("properties").and_then(Value::as_object);
        for (name, kind) in sql.columns.iter().filter(|(name, _)| *name != "source") {
            let Some(property) = properties.and_then(|p| p.get(name)) else {
                return Err(refuse.at(
                    Rejection::Binding,
                    columns_at,
                    format!(
                        "`{name}` is not a property of {r}'s events (the `properties` of its request schema): every column but `source` is a field of the event's data"
                    ),
                ));
            };
            let allowed = schema_types(property);
            if !allowed.is_empty() && !allowed.iter().any(|t| column_gives(*kind, t)) {
                return Err(refuse.at(
                    Rejection::Binding,
                    columns_at,
                    format!(
                        "`{name}` is read as \"{}\", but {r}'s events take {} there: convert it in the statement and map it as such",
                        column_kind(*kind),
                        allowed.join(" or ")
                    ),
                ));
            }
        }
        let required = request.get("required").and_then(Value::as_array);
        if let Some(missing) = required
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|p| !sql.columns.contains_key(*p))
        {
            return Err(refuse.at(
                Rejection::Binding,
                columns_at,
                format!("{r}'s events require `{missing}`: add a column of that name"),
            ));
        }
        let (adapter, unresolved) =
            match adapters::build(&AdapterSpec::Sql(sql.clone()), self.base_dir) {
                Ok(adapter) => (adapter, None),
                // Only the serving machine has the secret: refused when this member starts.
                Err(e) if e.unset_variable.is_some() => {
                    let why = refuse.at(Rejection::Binding, format!("{at}.{}", e.field), e.reason);
                    let adapter: Arc<dyn adapters::Adapter> = Arc::new(Unresolved);
                    (adapter, Some(Arc::new(why)))
                }
                Err(e) => {
                    return Err(refuse.at(
                        Rejection::Binding,
                        format!("{at}.{}", e.field),
                        e.reason,
                    ));
                }
            };
        Ok(super::ChangeTable {
            spec: sql,
            adapter,
            unresolved,
        })
    }

    /// A webhook: a name of `[a-z0-9_-]`, an `http://` or `https://` URL, a timeout of at
    /// least 1 ms, and event contracts of the catalog.
    fn webhook(&self, at: &str, w: super::raw::RawWebhook) -> Result<super::Webhook, ConfigError> {
        let refuse = self.refuse;
        let valid = (1..=64).contains(&w.name.len())
            && w.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.name"),
                "a webhook's name is 1 to 64 characters of [a-z0-9_-]",
            ));
        }
        let url = w
            .url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
            .ok_or_else(|| {
                refuse.at(
                    Rejection::OutOfRange,
                    format!("{at}.url"),
                    "an http:// or https:// URL with a host, e.g. http://127.0.0.1:7680/events",
                )
            })?;
        if w.timeout_ms == 0 {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.timeout_ms"),
                "must be at least 1",
            ));
        }
        if w.contracts.is_empty() {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.contracts"),
                "name the event contracts whose events this webhook takes",
            ));
        }
        let mut contracts = Vec::with_capacity(w.contracts.len());
        for (k, c) in w.contracts.into_iter().enumerate() {
            let r = ContractRef::new(c.contract, c.version);
            if self.catalog.get(&r).and_then(Contract::event).is_none() {
                return Err(refuse.at(
                    Rejection::NotInCatalog,
                    format!("{at}.contracts[{k}]"),
                    format!(
                        "{r} is not an event contract of the catalog {}",
                        self.catalog_dir.display()
                    ),
                ));
            }
            contracts.push(r);
        }
        Ok(super::Webhook {
            name: w.name,
            url,
            secret_file: self.base_dir.join(w.secret_file),
            contracts,
            timeout: Duration::from_millis(w.timeout_ms),
        })
    }

    /// A statistics contract is bound to an aggregate (`rows = "table"`) with a column for
    /// each of its dimensions; an aggregate answers nothing else.
    fn check_table(
        &self,
        at: &str,
        contract: &Contract,
        spec: &AdapterSpec,
        adapter: &dyn adapters::Adapter,
    ) -> Result<(), ConfigError> {
        let r = contract.reference();
        let field = match spec {
            AdapterSpec::Sql(_) => format!("{at}.sql.rows"),
            AdapterSpec::Http(_) => format!("{at}.http"),
        };
        let binding = |why: String| self.refuse.at(Rejection::Binding, field.clone(), why);
        match (contract.overlap(), adapter.list_labelled()) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(binding(format!(
                    "{r} is an overlap contract: bind it to a list, a `sql` table with rows = \"list\" (docs/ADAPTERS.md)"
                )));
            }
            (None, Some(_)) => {
                return Err(binding(format!(
                    "rows = \"list\" answers overlap contracts only, and {r} is not one"
                )));
            }
            (Some(_), Some(true)) => {
                return Err(self.refuse.at(
                    Rejection::Binding,
                    format!("{at}.sql.columns"),
                    format!("the provider's list of {r} is counted whole: drop its `label` column"),
                ));
            }
            (Some(_), Some(false)) => return Ok(()),
        }
        match (contract.statistics(), adapter.table_dimensions()) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(binding(format!(
                "{r} is a statistics contract: bind it to an aggregate, a `sql` table with rows = \"table\" (docs/ADAPTERS.md)"
            ))),
            (None, Some(_)) => Err(binding(format!(
                "rows = \"table\" answers statistics contracts only, and {r} is not one"
            ))),
            (Some(stats), Some(columns)) => {
                match stats.dimensions.iter().find(|d| !columns.contains(d)) {
                    Some(missing) => Err(self.refuse.at(
                        Rejection::Binding,
                        format!("{at}.sql.columns"),
                        format!("the aggregate has no column for `{missing}`, a dimension of {r}"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// One contract a subsystem of `member` may ask: a catalog contract for purposes its
    /// document allows, or one of the member's federated contracts for its one purpose.
    fn grant(&self, at: &str, member: &Member, g: RawGrant) -> Result<SubsystemGrant, ConfigError> {
        let refuse = self.refuse;
        let r = ContractRef::new(&g.contract, &g.version);
        if g.purposes.is_empty() {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.purposes"),
                "at least one purpose is required",
            ));
        }
        let allowed: Vec<String> =
            if let Some(fc) = member.federated.iter().find(|f| f.reference == r) {
                vec![fc.purpose.clone()]
            } else if let Some(c) = self.catalog.get(&r) {
                c.doc().purposes.clone()
            } else {
                return Err(refuse.at(
                    Rejection::NotInCatalog,
                    format!("{at}.contract"),
                    format!(
                        "{r} is neither in the catalog {} nor a federated contract of {}",
                        self.catalog_dir.display(),
                        member.id
                    ),
                ));
            };
        if let Some(bad) = g.purposes.iter().find(|p| !allowed.contains(p)) {
            return Err(refuse.at(
                Rejection::UnknownPurpose,
                format!("{at}.purposes"),
                format!("`{bad}` is not a purpose of {r} ({})", allowed.join(", ")),
            ));
        }
        Ok(SubsystemGrant {
            contract: r,
            purposes: g.purposes,
        })
    }

    /// A federated contract: an id no catalog contract has, a deadline, and parts with
    /// distinct names, each a catalog contract.
    fn federated(&self, at: &str, f: RawFederated) -> Result<FederatedContract, ConfigError> {
        let refuse = self.refuse;
        let reference = ContractRef::new(&f.id, &f.version);
        if self.catalog.contains_key(&reference) {
            return Err(refuse.at(
                Rejection::Duplicate,
                format!("{at}.id"),
                "a catalog contract already has this id and version",
            ));
        }
        if f.parts.is_empty() {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.parts"),
                "at least one part is required",
            ));
        }
        if f.deadline_ms == 0 {
            return Err(refuse.at(
                Rejection::OutOfRange,
                format!("{at}.deadline_ms"),
                "must be at least 1",
            ));
        }
        let mut parts: Vec<(String, ContractRef)> = Vec::with_capacity(f.parts.len());
        for (k, part) in f.parts.into_iter().enumerate() {
            let r = ContractRef::new(&part.contract, &part.version);
            if !self.catalog.contains_key(&r) {
                return Err(refuse.at(
                    Rejection::NotInCatalog,
                    format!("{at}.parts[{k}].contract"),
                    format!("{r} is not in the catalog"),
                ));
            }
            if parts.iter().any(|(name, _)| name == &part.name) {
                return Err(refuse.at(
                    Rejection::Duplicate,
                    format!("{at}.parts[{k}].name"),
                    "used twice",
                ));
            }
            parts.push((part.name, r));
        }
        Ok(FederatedContract {
            reference,
            title: f.title,
            purpose: f.purpose,
            deadline: Duration::from_millis(f.deadline_ms),
            parts,
        })
    }
}

/// The JSON types a property's schema names in its `type` (none when it names none).
fn schema_types(property: &Value) -> Vec<&str> {
    match property.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a column of `kind` gives a value of the JSON type `json_type`.
fn column_gives(kind: ColumnType, json_type: &str) -> bool {
    match kind {
        ColumnType::Text => json_type == "string",
        ColumnType::Integer => matches!(json_type, "integer" | "number"),
        ColumnType::Real => json_type == "number",
        ColumnType::Bool => json_type == "boolean",
        ColumnType::List => json_type == "array",
    }
}

/// A column type as `columns` writes it.
fn column_kind(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::Real => "real",
        ColumnType::Bool => "bool",
        ColumnType::List => "list",
    }
}

/// An authority's publication URL (`federation.manifest_url`, `federation.crl_url`):
/// `https://`, a host, no user info, no fragment, no spaces or control characters.
fn publication_url(url: &str) -> bool {
    url.starts_with("https://")
        && !url.contains(['@', '#'])
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some())
}

/// The adapter of a binding whose `env:` secret is not set where the configuration was read
/// ([`Provision::unresolved`]): no gateway starts with it, so it is never asked.
#[derive(Debug)]
struct Unresolved;

impl adapters::Adapter for Unresolved {
    fn answer<'a>(&'a self, _query: &'a serde_json::Value) -> adapters::AnswerFuture<'a> {
        Box::pin(async {
            Err(adapters::AdapterError::Unavailable(
                "the binding's environment variable is not set".into(),
            ))
        })
    }
}
