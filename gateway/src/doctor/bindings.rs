//! Each provided contract's backend: the adapter the configuration built for it checks that
//! it could answer now ([`adapters::Adapter::check`]: the SQL adapter connects and prepares
//! its statement, the HTTP adapter connects to the API's host), asking nothing about anyone.

use super::{Check, Context, Finding, Verdict};

pub(super) async fn check(cx: &Context<'_>) -> Vec<Finding> {
    let mut set = tokio::task::JoinSet::new();
    let mut done: Vec<(usize, Finding)> = Vec::new();
    for (n, p) in cx.member.provides.iter().enumerate() {
        // An `env:` secret not set here: the gateway would not start (Provision::unresolved).
        if let Some(unset) = &p.unresolved {
            let field = format!("{} (members.provides)", p.contract);
            done.push((
                n,
                Finding::new(Check::Binding, field, Verdict::Fail, unset.to_string()),
            ));
            continue;
        }
        let adapter = p.adapter.clone();
        set.spawn(async move { (n, adapter.check().await) });
    }
    while let Some(joined) = set.join_next().await {
        let (n, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                done.push((
                    usize::MAX,
                    Finding::new(
                        Check::Binding,
                        "(members.provides)",
                        Verdict::Fail,
                        format!("a binding's check did not finish: {e}"),
                    ),
                ));
                continue;
            }
        };
        let contract = &cx.member.provides[n].contract;
        let field = format!("{} (members.provides)", contract);
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
                        "{e}: every exchange for {contract} fails until it is fixed (the \
                         binding is in {})",
                        cx.config.source
                    ),
                ),
            },
        ));
    }
    done.sort_by_key(|(n, _)| *n);
    done.into_iter().map(|(_, f)| f).collect()
}
