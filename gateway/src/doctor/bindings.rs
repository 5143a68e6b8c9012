//! Each provided contract's backend, each of the member's own lists and each change table
//! its events are emitted from: the adapter the configuration built for it checks that it
//! could answer now
//! ([`adapters::Adapter::check`]: the SQL adapter connects and prepares its statement, the
//! HTTP adapter connects to the API's host), asking nothing about anyone.

use std::sync::Arc;

use super::{Check, Context, Finding, Verdict};

/// One binding to check: where it is in the configuration, what fails while it is broken,
/// and its adapter — or why the configuration could not build one here.
struct Binding {
    field: String,
    fails: String,
    adapter: Result<Arc<dyn adapters::Adapter>, String>,
}

pub(super) async fn check(cx: &Context<'_>) -> Vec<Finding> {
    let provided = cx.member.provides.iter().map(|p| Binding {
        field: format!("{} (members.provides)", p.contract),
        fails: format!("every exchange for {}", p.contract),
        // An `env:` secret not set here: the gateway would not start (Provision::unresolved).
        adapter: match &p.unresolved {
            Some(unset) => Err(unset.to_string()),
            None => Ok(p.adapter.clone()),
        },
    });
    let lists = cx.member.lists.iter().map(|l| Binding {
        field: format!("{} (members.lists)", l.name),
        fails: format!("every overlap run with the list `{}`", l.name),
        adapter: Ok(l.adapter.clone()),
    });
    let tables = cx.member.events.iter().filter_map(|e| {
        let table = e.table.as_ref()?;
        Some(Binding {
            field: format!("{} (members.events)", e.contract),
            fails: format!("emitting {} from its change table", e.contract),
            adapter: match &table.unresolved {
                Some(unset) => Err(unset.to_string()),
                None => Ok(table.adapter.clone()),
            },
        })
    });
    let bindings: Vec<Binding> = provided.chain(lists).chain(tables).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut done: Vec<(usize, Finding)> = Vec::new();
    for (n, b) in bindings.iter().enumerate() {
        match &b.adapter {
            Err(unset) => done.push((
                n,
                Finding::new(
                    Check::Binding,
                    b.field.clone(),
                    Verdict::Fail,
                    unset.clone(),
                ),
            )),
            Ok(adapter) => {
                let adapter = adapter.clone();
                set.spawn(async move { (n, adapter.check().await) });
            }
        }
    }
    while let Some(joined) = set.join_next().await {
        let (n, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                done.push((
                    usize::MAX,
                    Finding::new(
                        Check::Binding,
                        "(members.provides, members.lists, members.events)",
                        Verdict::Fail,
                        format!("a binding's check did not finish: {e}"),
                    ),
                ));
                continue;
            }
        };
        let b = &bindings[n];
        let field = b.field.clone();
        done.push((
            n,
            match result {
                Ok(Some(what)) => Finding::new(Check::Binding, field, Verdict::Ok, what),
                Ok(None) => Finding::new(
                    Check::Binding,
                    field,
                    Verdict::Ok,
                    "this adapter has nothing it can check before it is asked".into(),
                ),
                Err(e) => Finding::new(
                    Check::Binding,
                    field,
                    Verdict::Fail,
                    format!(
                        "{e}: {} fails until it is fixed (the binding is in {})",
                        b.fails, cx.config.source
                    ),
                ),
            },
        ));
    }
    done.sort_by_key(|(n, _)| *n);
    done.into_iter().map(|(_, f)| f).collect()
}
