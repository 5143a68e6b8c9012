//! The one validation step: [`RawConfig`] in, [`Config`] out, or the first rejection with
//! the file, the field and its kind.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use adapters::AdapterSpec;
use contracts::manifest::Rate;
use contracts::{Contract, ContractRef, MemberId};

use super::raw::{RawConfig, RawFederated, RawMember, RawProvision, RawRateBackend};
use super::{
    AdmissionLimits, BreakerConfig, Config, ConfigError, ConnectionBounds, FederatedContract,
    Federation, Member, Provision, RateStore, Rejection,
};
use crate::layout::PkiLayout;

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
struct Refuse<'a>(&'a str);

impl Refuse<'_> {
    fn at(
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
    let federation = Federation {
        id: f.id,
        authority: f.authority,
        manifest: base_dir.join(&f.manifest),
        authority_key: match &f.authority_key {
            Some(p) => base_dir.join(p),
            None => pki.authority_jwk(),
        },
        pki,
        manifest_validity_days: f.manifest_validity_days,
        catalog: catalog_dir,
        hosts: f.hosts,
    };

    // Members first, so that every provision can check its consumers against all of them.
    let mut ids = HashSet::new();
    let mut listens = HashSet::new();
    let mut members = Vec::with_capacity(raw.members.len());
    let mut pending = Vec::with_capacity(raw.members.len());
    for (i, m) in raw.members.into_iter().enumerate() {
        let at = format!("members[{i}]");
        let (member, rest) = member(&refuse, &at, m, &federation.pki, &mut ids, &mut listens)?;
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
        for (j, f) in rest.federated.into_iter().enumerate() {
            let f = cx.federated(&format!("{at}.federated[{j}]"), f)?;
            member.federated.push(f);
        }
    }
    Ok(Config {
        source: source.to_owned(),
        base_dir,
        federation,
        data: raw.data,
        members,
        catalog,
    })
}

/// What of a member is validated once every member is known.
struct Pending {
    provides: Vec<RawProvision>,
    federated: Vec<RawFederated>,
    default_rate: Rate,
}

/// One member's own fields: its ids, addresses, limits and audit log.
fn member(
    refuse: &Refuse,
    at: &str,
    m: RawMember,
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
    let rates = match (limits.rate_backend, limits.redis_url) {
        (RawRateBackend::Local, _) => RateStore::Local,
        (RawRateBackend::Redis, Some(url)) => RateStore::Redis {
            url,
            prefix: limits.redis_prefix,
        },
        (RawRateBackend::Redis, None) => {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.limits.redis_url"),
                "required with rate_backend = \"redis\"",
            ));
        }
    };
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
    if m.admin.as_ref().is_some_and(|a| a.max_connections == 0) {
        return Err(at_least_one("admin.max_connections"));
    }
    let connections = ConnectionBounds {
        max: limits.max_connections,
        per_address: limits.max_connections_per_address,
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
    if let Some(admin) = &m.admin
        && let Some((k, who)) = admin
            .evidence_auditors
            .iter()
            .enumerate()
            .find(|(_, who)| !admin.auditors.contains(who))
    {
        return Err(refuse.at(
            Rejection::UnknownMember,
            format!("{at}.admin.evidence_auditors[{k}]"),
            format!("{who} is not on admin.auditors: evidence is granted only to an auditor"),
        ));
    }
    if let Some(admin) = &m.admin
        && !listens.insert(admin.listen)
    {
        return Err(refuse.at(
            Rejection::AddressInUse,
            format!("{at}.admin.listen"),
            format!("{} is used by another listener", admin.listen),
        ));
    }
    let subsystems = m
        .subsystems
        .iter()
        .enumerate()
        .map(|(j, s)| {
            m.id.subsystem(s).map_err(|e| {
                refuse.at(
                    Rejection::NotAMemberId,
                    format!("{at}.subsystems[{j}]"),
                    e.to_string(),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let member = Member {
        id: m.id,
        name: m.name,
        listen: m.listen,
        gateway,
        subsystems,
        query_deadline: Duration::from_millis(m.query_deadline_ms),
        seed: m.seed,
        replay_capacity: limits.replay_capacity,
        rates,
        connections,
        admission,
        cache: m.cache,
        breaker: BreakerConfig {
            failures: m.breaker.failures,
            cooldown: Duration::from_millis(m.breaker.cooldown_ms),
        },
        admin: m.admin,
        audit,
        provides: Vec::new(),
        federated: Vec::new(),
    };
    let pending = Pending {
        provides: m.provides,
        federated: m.federated,
        default_rate: limits.default_rate,
    };
    Ok((member, pending))
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
        let Some(contract) = self.catalog.get(&r) else {
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
        for (k, c) in p.consumers.iter().enumerate() {
            if !self.members.contains(&c.member) {
                return Err(refuse.at(
                    Rejection::UnknownMember,
                    format!("{at}.consumers[{k}].member"),
                    format!("{} is not a configured member", c.member),
                ));
            }
            let purposes = &contract.doc().purposes;
            if let Some(bad) = c.purposes.iter().find(|x| !purposes.contains(x)) {
                return Err(refuse.at(
                    Rejection::UnknownPurpose,
                    format!("{at}.consumers[{k}].purposes"),
                    format!("`{bad}` is not a purpose of {r} ({})", purposes.join(", ")),
                ));
            }
        }
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
        let adapter = adapters::build(&spec, self.base_dir)
            .map_err(|e| refuse.at(Rejection::Binding, format!("{at}.{}", e.field), e.reason))?;
        Ok(Provision {
            contract: r,
            consumers: p.consumers,
            rate,
            concurrency: p.concurrency,
            queue: Duration::from_millis(p.queue_ms),
            spec,
            adapter,
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
