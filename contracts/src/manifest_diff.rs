//! What a new manifest changes against an older one (`simpul manifest diff`): members
//! added or removed and their gateway URLs, keys added, removed or with another window, CA
//! certificates, contracts (digest), grants (consumers, purposes), rates, and the serial,
//! version and dates.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::canonical::sha256_b64url;
use crate::manifest::{KeyWindow, ManifestContract, ManifestDoc, ManifestMember};

/// Whether something was added, removed or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only in the new manifest.
    Added,
    /// Only in the old manifest.
    Removed,
    /// In both, different.
    Changed,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// What kind of thing: `serial`, `version`, `federation`, `issued_at`, `expires_at`,
    /// `ca`, `member`, `member.name`, `member.gateway`, `key`, `key.window`, `contract`,
    /// `contract.digest`, `grant`, `grant.purposes`, `rate`.
    pub what: &'static str,
    /// Which one: a member id, a kid, `<contract>/<version>`, `<contract>/<version> <member>`,
    /// a CA certificate's SHA-256; empty for the manifest's own fields.
    pub subject: String,
    /// The old value, if there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The new value, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        let text = |v: &Option<Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        write!(f, "{sign} {}", self.what)?;
        if !self.subject.is_empty() {
            write!(f, " {}", self.subject)?;
        }
        match self.kind {
            ChangeKind::Added => write!(f, ": {}", text(&self.new)),
            ChangeKind::Removed => write!(f, ": {}", text(&self.old)),
            ChangeKind::Changed => write!(f, ": {} -> {}", text(&self.old), text(&self.new)),
        }
    }
}

struct Diff(Vec<Change>);

impl Diff {
    fn push(
        &mut self,
        kind: ChangeKind,
        what: &'static str,
        subject: impl Into<String>,
        old: Option<Value>,
        new: Option<Value>,
    ) {
        self.0.push(Change {
            kind,
            what,
            subject: subject.into(),
            old,
            new,
        });
    }

    fn field(&mut self, what: &'static str, subject: &str, old: Value, new: Value) {
        if old != new {
            self.push(ChangeKind::Changed, what, subject, Some(old), Some(new));
        }
    }

    /// Added, removed and changed entries of two maps keyed alike.
    fn keyed<T>(
        &mut self,
        what: &'static str,
        old: &BTreeMap<String, T>,
        new: &BTreeMap<String, T>,
        describe: impl Fn(&T) -> Value,
        mut changed: impl FnMut(&mut Self, &str, &T, &T),
    ) {
        for (k, o) in old {
            match new.get(k) {
                None => self.push(ChangeKind::Removed, what, k, Some(describe(o)), None),
                Some(n) => changed(self, k, o, n),
            }
        }
        for (k, n) in new {
            if !old.contains_key(k) {
                self.push(ChangeKind::Added, what, k, None, Some(describe(n)));
            }
        }
    }
}

fn window_text(w: &KeyWindow) -> Value {
    Value::String(format!("signs {w}"))
}

/// The differences from `old` to `new`, in the order: the manifest's own fields, CA
/// certificates, members (with their keys), contracts (with their grants and rates).
pub fn diff(old: &ManifestDoc, new: &ManifestDoc) -> Vec<Change> {
    let mut d = Diff(Vec::new());
    d.field("serial", "", json!(old.serial), json!(new.serial));
    d.field("version", "", json!(old.v), json!(new.v));
    d.field(
        "federation",
        "",
        json!(old.federation),
        json!(new.federation),
    );
    d.field("issued_at", "", json!(old.issued_at), json!(new.issued_at));
    d.field(
        "expires_at",
        "",
        json!(old.expires_at),
        json!(new.expires_at),
    );

    let cas = |doc: &ManifestDoc| -> BTreeMap<String, ()> {
        doc.ca
            .iter()
            .map(|pem| (sha256_b64url(pem.trim().as_bytes()), ()))
            .collect()
    };
    d.keyed(
        "ca",
        &cas(old),
        &cas(new),
        |_| Value::String("CA certificate (SHA-256 of its PEM text)".into()),
        |_, _, _, _| {},
    );

    fn members(doc: &ManifestDoc) -> BTreeMap<String, &ManifestMember> {
        doc.members.iter().map(|m| (m.id.to_string(), m)).collect()
    }
    let keys = |keys: &[Value]| -> BTreeMap<String, KeyWindow> {
        keys.iter()
            .map(|k| {
                (
                    k.get("kid")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_owned(),
                    KeyWindow::of_jwk(k).unwrap_or_default(),
                )
            })
            .collect()
    };
    let (old_members, new_members) = (members(old), members(new));
    d.keyed(
        "member",
        &old_members,
        &new_members,
        |m| Value::String(format!("{} at {}", m.name, m.gateway)),
        |d, id, o, n| {
            d.field("member.name", id, json!(o.name), json!(n.name));
            d.field("member.gateway", id, json!(o.gateway), json!(n.gateway));
        },
    );
    // Keys across all members, by kid (a kid starts with its member's id): a member added
    // or removed shows its keys too.
    let all_keys = |m: &BTreeMap<String, &ManifestMember>| {
        m.values()
            .flat_map(|m| keys(&m.keys))
            .collect::<BTreeMap<_, _>>()
    };
    d.keyed(
        "key",
        &all_keys(&old_members),
        &all_keys(&new_members),
        window_text,
        |d, kid, o, n| {
            if o != n {
                d.push(
                    ChangeKind::Changed,
                    "key.window",
                    kid,
                    Some(window_text(o)),
                    Some(window_text(n)),
                );
            }
        },
    );

    fn contracts(doc: &ManifestDoc) -> BTreeMap<String, &ManifestContract> {
        doc.contracts
            .iter()
            .map(|c| (format!("{}/{}", c.id, c.version), c))
            .collect()
    }
    let (old_contracts, new_contracts) = (contracts(old), contracts(new));
    d.keyed(
        "contract",
        &old_contracts,
        &new_contracts,
        |c| {
            Value::String(format!(
                "by {} digest {} rate {}/s burst {}",
                c.provider, c.digest, c.rate.per_second, c.rate.burst
            ))
        },
        |d, r, o, n| {
            d.field("contract.provider", r, json!(o.provider), json!(n.provider));
            d.field("contract.digest", r, json!(o.digest), json!(n.digest));
            d.field(
                "rate",
                r,
                json!(format!("{}/s burst {}", o.rate.per_second, o.rate.burst)),
                json!(format!("{}/s burst {}", n.rate.per_second, n.rate.burst)),
            );
        },
    );
    // Grants across all contracts: `<contract>/<version> <consumer>` → purposes.
    let grants = |c: &BTreeMap<String, &ManifestContract>| {
        c.iter()
            .flat_map(|(r, c)| {
                c.consumers.iter().map(move |g| {
                    let mut purposes = g.purposes.clone();
                    purposes.sort();
                    (format!("{r} {}", g.member), purposes.join(","))
                })
            })
            .collect::<BTreeMap<_, _>>()
    };
    d.keyed(
        "grant",
        &grants(&old_contracts),
        &grants(&new_contracts),
        |p| Value::String(format!("for {p}")),
        |d, g, o, n| d.field("grant.purposes", g, json!(o), json!(n)),
    );
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Consumer, Rate};
    use crate::member::MemberId;

    fn doc() -> ManifestDoc {
        ManifestDoc {
            v: 1,
            federation: "ID".into(),
            serial: 1,
            issued_at: 100,
            expires_at: 200,
            ca: vec!["CA1".into()],
            members: vec![ManifestMember {
                id: MemberId::parse("ID:GOV:A").unwrap(),
                name: "A".into(),
                gateway: "https://a:1".into(),
                keys: vec![json!({"kid": "ID:GOV:A#1"})],
            }],
            contracts: vec![ManifestContract {
                id: "c".into(),
                version: "1".into(),
                provider: MemberId::parse("ID:GOV:A").unwrap(),
                digest: "d1".into(),
                consumers: vec![Consumer {
                    member: MemberId::parse("ID:GOV:A").unwrap(),
                    purposes: vec!["p".into()],
                }],
                rate: Rate {
                    per_second: 5,
                    burst: 5,
                },
            }],
        }
    }

    #[test]
    fn the_same_manifest_has_no_differences() {
        assert!(diff(&doc(), &doc()).is_empty());
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let old = doc();
        let mut new = doc();
        new.serial = 2;
        new.v = 2;
        new.ca.push("CA2".into());
        new.members[0].gateway = "https://a:2".into();
        new.members[0].keys[0]["not_after"] = 150.into();
        new.members[0]
            .keys
            .push(json!({"kid": "ID:GOV:A#2", "not_before": 140}));
        new.members.push(ManifestMember {
            id: MemberId::parse("ID:GOV:B").unwrap(),
            name: "B".into(),
            gateway: "https://b:1".into(),
            keys: vec![json!({"kid": "ID:GOV:B#1"})],
        });
        new.contracts[0].digest = "d2".into();
        new.contracts[0].rate.per_second = 9;
        new.contracts[0].consumers[0].purposes.push("q".into());
        new.contracts[0].consumers.push(Consumer {
            member: MemberId::parse("ID:GOV:B").unwrap(),
            purposes: vec!["p".into()],
        });
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            [
                "~ serial: 1 -> 2",
                "~ version: 1 -> 2",
                &format!(
                    "+ ca {}: CA certificate (SHA-256 of its PEM text)",
                    sha256_b64url(b"CA2")
                ),
                "~ member.gateway ID:GOV:A: https://a:1 -> https://a:2",
                "+ member ID:GOV:B: B at https://b:1",
                "~ key.window ID:GOV:A#1: signs always -> signs until 1970-01-01T00:02:30Z",
                "+ key ID:GOV:A#2: signs from 1970-01-01T00:02:20Z",
                "+ key ID:GOV:B#1: signs always",
                "~ contract.digest c/1: d1 -> d2",
                "~ rate c/1: 5/s burst 5 -> 9/s burst 5",
                "~ grant.purposes c/1 ID:GOV:A: p -> p,q",
                "+ grant c/1 ID:GOV:B: for p",
            ]
        );
        // And backwards: what was added is removed.
        let back: Vec<String> = diff(&new, &old).iter().map(|c| c.to_string()).collect();
        assert!(back.contains(&"- member ID:GOV:B: B at https://b:1".to_owned()));
        assert!(back.contains(&"- key ID:GOV:A#2: signs from 1970-01-01T00:02:20Z".to_owned()));
        assert!(back.contains(&"- grant c/1 ID:GOV:B: for p".to_owned()));
    }
}
