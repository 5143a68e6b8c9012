//! The event store (issue #17) — outbox, delivery cursors, inbox and webhook cursors — each
//! test run on SQLite in a temporary directory, then on PostgreSQL in a schema of its own
//! when `SIMPUL_TEST_POSTGRES_URL` is set, with time given by the test.

use std::collections::BTreeSet;

use audit_store::AuditConfig;
use audit_store::events::{
    Due, Emitted, EventStore, EventStoreError, HookState, Incoming, NewEvent, Received,
    Subscription, events_file,
};
use contracts::MemberId;
use contracts::canonical::sha256_b64url;
use sqlx::{Connection, Executor};

const BP2MI: &str = "ID:GOV:BP2MI";
const KEMLU: &str = "ID:GOV:KEMLU";
const DISDUKCAPIL: &str = "ID:GOV:DISDUKCAPIL";
const PLACEMENT: &str = "placement.changed";
const RETURN: &str = "return.recorded";
const PG_VAR: &str = "SIMPUL_TEST_POSTGRES_URL";

/// A test's start, Unix milliseconds.
const T0: i64 = 1_780_000_000_000;
/// An hour.
const HOUR: i64 = 3_600_000;

fn id(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

/// Where one run of a test keeps its stores: an SQLite audit store path in a temporary
/// directory, or a fresh PostgreSQL schema.
struct Place {
    engine: &'static str,
    dir: tempfile::TempDir,
    store: String,
    /// The server's URL and the schema, for PostgreSQL.
    pg: Option<(String, String)>,
}

impl Place {
    fn sqlite() -> Place {
        Place {
            engine: "sqlite",
            dir: tempfile::tempdir().unwrap(),
            store: "data/audit-bp2mi.db".into(),
            pg: None,
        }
    }

    /// `None` without the variable.
    async fn postgres() -> Option<Place> {
        let url = std::env::var(PG_VAR).ok()?;
        let schema = format!("events_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        Some(Place {
            engine: "postgres",
            dir: tempfile::tempdir().unwrap(),
            store: format!("{url}{sep}options[search_path]={schema}"),
            pg: Some((url, schema)),
        })
    }

    async fn open_as(&self, member: &str) -> EventStore {
        let cfg = AuditConfig {
            store: self.store.clone(),
            ..AuditConfig::default()
        };
        EventStore::open(&cfg, self.dir.path(), &id(member))
            .await
            .unwrap_or_else(|e| panic!("opening on {}: {e}", self.engine))
    }

    /// BP2MI's store: the emitting side in most tests.
    async fn open(&self) -> EventStore {
        self.open_as(BP2MI).await
    }

    /// Makes the outbox refuse an event of id [`POISON`] (a trigger that aborts its
    /// INSERT), so that the transaction holding it fails. Call after opening the store.
    async fn poison(&self) {
        match &self.pg {
            Some(_) => {
                let mut conn = sqlx::PgConnection::connect(&self.store).await.unwrap();
                conn.execute(
                    "CREATE FUNCTION simpul_test_poison() RETURNS trigger LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'poisoned by the test'; END $$",
                )
                .await
                .unwrap();
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "CREATE TRIGGER simpul_test_poison BEFORE INSERT ON simpul_event_outbox
                     FOR EACH ROW WHEN (NEW.id = '{POISON}') EXECUTE FUNCTION simpul_test_poison()"
                )))
                .await
                .unwrap();
                conn.close().await.unwrap();
            }
            None => {
                let file = events_file(&self.dir.path().join(&self.store));
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                        .await
                        .unwrap();
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "CREATE TRIGGER simpul_test_poison BEFORE INSERT ON simpul_event_outbox
                     WHEN NEW.id = '{POISON}' BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END"
                )))
                .await
                .unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    async fn cleanup(self) {
        if let Some((url, schema)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// Each scenario of `scenarios` as a test run on SQLite, then on PostgreSQL if configured.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let place = Place::sqlite();
            eprintln!("{}: on SQLite", stringify!($name));
            scenarios::$name(&place).await;
            place.cleanup().await;
            match Place::postgres().await {
                Some(place) => {
                    eprintln!("{}: on PostgreSQL", stringify!($name));
                    scenarios::$name(&place).await;
                    place.cleanup().await;
                }
                None => eprintln!(
                    "{}: the PostgreSQL half is skipped: {PG_VAR} is not set",
                    stringify!($name)
                ),
            }
        }
    )*};
}

on_both_engines!(
    emitted_events_take_increasing_seqs_from_one,
    a_change_table_row_read_twice_is_emitted_once,
    an_event_id_emitted_twice_is_stored_once,
    a_new_subscriber_starts_after_the_events_already_emitted,
    resubscribing_keeps_a_cursors_position_and_takes_the_new_grant,
    a_due_cursor_is_leased_to_one_owner_until_the_lease_expires,
    a_failed_delivery_is_not_due_again_before_its_next_attempt,
    released_leases_make_a_cursor_due_at_once,
    pending_events_are_read_in_pages_of_one_contract,
    expiry_moves_a_cursor_only_past_the_leading_expired_events,
    a_delivery_never_moves_a_cursor_back,
    cursors_report_their_backlog_oldest_pending_event_and_notices,
    purge_keeps_the_events_a_cursor_has_not_passed,
    a_received_event_is_stored_once_across_calls_and_within_one,
    the_inbox_and_cursors_survive_reopening_the_store,
    an_expiry_notice_is_kept_once_and_never_for_an_event_received,
    the_inbox_is_read_in_pages_by_provider_and_contract,
    a_new_webhook_starts_at_zero_and_moves_forward_only,
    a_webhook_is_rewound_for_a_redelivery_but_not_into_the_purged_part,
    purging_the_inbox_waits_for_every_hook,
    two_owners_asking_at_once_never_get_the_same_cursor,
    members_sharing_a_database_see_only_their_own_events,
    an_unknown_cursor_or_hook_is_refused_by_name,
    concurrent_emissions_each_get_a_distinct_seq_in_commit_order,
    emissions_of_one_source_in_one_batch_are_stored_once,
    a_failed_group_commit_fails_every_emission_in_it,
);

/// The id of the event that [`Place::poison`] makes every transaction fail on.
const POISON: &str = "evt-poison";

fn event(n: u32, contract: &str, source: Option<i64>, expires_ms: i64) -> NewEvent {
    NewEvent {
        id: format!("evt-{contract}-{n}"),
        contract: contract.into(),
        version: "1".into(),
        subject: format!("pmi-{n}"),
        emitted_ms: T0 + i64::from(n),
        expires_ms,
        jws: format!("eyJhbGciOiJFUzI1NiJ9.{contract}-{n}.c2ln"),
        source,
    }
}

fn sub(subscriber: &str, contract: &str) -> Subscription {
    Subscription {
        subscriber: subscriber.into(),
        contract: contract.into(),
        version: "1".into(),
        purpose: "worker-protection".into(),
    }
}

fn incoming(provider: &str, contract: &str, n: u32, received_ms: i64, expires_ms: i64) -> Incoming {
    Incoming {
        provider: provider.into(),
        contract: contract.into(),
        version: "1".into(),
        event_id: format!("evt-{contract}-{n}"),
        subject: format!("pmi-{n}"),
        emitted_ms: received_ms - 10,
        expires_ms,
        jws: format!("eyJhbGciOiJFUzI1NiJ9.{provider}-{contract}-{n}.c2ln"),
        delivery_id: format!("dlv-{n}"),
        received_ms,
    }
}

async fn emit_new(store: &EventStore, ev: &NewEvent) -> i64 {
    match store.emit(ev).await.unwrap() {
        Emitted::New { seq } => seq,
        other => panic!("{} was not new: {other:?}", ev.id),
    }
}

fn new_seq(r: &Received) -> i64 {
    match r {
        Received::New { seq } => *seq,
        Received::Duplicate { seq } => panic!("a duplicate of seq {seq}, not new"),
    }
}

fn names(due: &[Due]) -> Vec<(String, String)> {
    due.iter()
        .map(|d| (d.contract.clone(), d.subscriber.clone()))
        .collect()
}

fn hook_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test]
async fn the_sqlite_event_store_is_a_file_beside_the_audit_store() {
    let place = Place::sqlite();
    let store = place.open().await;
    let expected = place.dir.path().join("data/audit-bp2mi.events.db");
    assert!(expected.exists(), "{} is missing", expected.display());
    assert_eq!(store.label(), expected.display().to_string());
    assert_eq!(
        events_file(std::path::Path::new("data/audit-bp2mi.db")),
        std::path::Path::new("data/audit-bp2mi.events.db")
    );
    assert!(
        !place.dir.path().join("data/audit-bp2mi.db").exists(),
        "the audit store itself is not made by the event store"
    );
}

#[tokio::test]
async fn an_unresolvable_store_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        store: "env:SIMPUL_TEST_EVENTS_NOT_SET".into(),
        ..AuditConfig::default()
    };
    let e = EventStore::open(&cfg, dir.path(), &id(BP2MI))
        .await
        .unwrap_err();
    assert!(matches!(e, EventStoreError::Config { .. }), "{e}");
    assert!(e.to_string().contains("SIMPUL_TEST_EVENTS_NOT_SET"), "{e}");
}

/// Every call's future can be spawned (is `Send + 'static` once its arguments are owned),
/// as the gateway's delivery tasks need.
#[tokio::test]
async fn every_call_runs_in_a_spawned_task() {
    let place = Place::sqlite();
    let s = place.open().await;
    // `$call` uses `$s`, a clone of the store moved into the task with whatever it builds.
    macro_rules! spawned {
        ($s:ident => $call:expr) => {{
            let $s = s.clone();
            tokio::spawn(async move { $call.await })
                .await
                .unwrap()
                .unwrap()
        }};
    }
    spawned!(s => s.subscribe(&[sub(KEMLU, PLACEMENT)]));
    spawned!(s => s.emit(&event(1, PLACEMENT, Some(1), T0 + HOUR)));
    spawned!(s => s.last_source(PLACEMENT));
    spawned!(s => s.due(T0, 1000, "a"));
    spawned!(s => s.pending(PLACEMENT, 0, 10));
    spawned!(s => s.expire(KEMLU, PLACEMENT, T0));
    spawned!(s => s.notices(KEMLU, PLACEMENT));
    spawned!(s => s.delivered(KEMLU, PLACEMENT, 1, &["evt-x".to_owned()], Some("evt"), T0));
    spawned!(s => s.failed(KEMLU, PLACEMENT, "timeout", T0));
    spawned!(s => s.cursors());
    spawned!(s => s.purge(T0));
    spawned!(s => s.outbox_size());
    spawned!(s => s.receive(&[incoming(KEMLU, PLACEMENT, 1, T0, T0 + HOUR)]));
    spawned!(s => s.notice_expired(KEMLU, PLACEMENT, "evt-x", "h", T0));
    spawned!(s => s.inbox(Some(KEMLU), None, 0, 10));
    spawned!(s => s.inbox_seq_before(T0));
    spawned!(s => s.hooks(&hook_names(&["sisko"])));
    spawned!(s => s.hook_delivered("sisko", 1, T0));
    spawned!(s => s.hook_failed("sisko", "503", T0));
    spawned!(s => s.rewind("sisko", 0));
    spawned!(s => s.purge_inbox(T0, &hook_names(&["sisko"])));
}

/// The scenarios, run on each engine by [`on_both_engines`].
mod scenarios {
    use super::*;

    pub async fn emitted_events_take_increasing_seqs_from_one(place: &Place) {
        let s = place.open().await;
        assert_eq!(s.outbox_size().await.unwrap(), (0, 0));
        let a = event(1, PLACEMENT, None, T0 + HOUR);
        let b = event(2, RETURN, None, T0 + HOUR);
        let c = event(3, PLACEMENT, None, T0 + HOUR);
        assert_eq!(emit_new(&s, &a).await, 1);
        assert_eq!(emit_new(&s, &b).await, 2);
        assert_eq!(emit_new(&s, &c).await, 3);
        assert_eq!(s.outbox_size().await.unwrap(), (3, 3));

        let pending = s.pending(PLACEMENT, 0, 10).await.unwrap();
        assert_eq!(
            pending.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 3],
            "one contract's events, in seq order"
        );
        let first = &pending[0];
        assert_eq!(
            (
                &first.id,
                &first.subject,
                &first.jws,
                first.emitted_ms,
                first.expires_ms
            ),
            (&a.id, &a.subject, &a.jws, a.emitted_ms, a.expires_ms)
        );
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), None);
    }

    pub async fn a_change_table_row_read_twice_is_emitted_once(place: &Place) {
        let s = place.open().await;
        assert_eq!(
            emit_new(&s, &event(1, PLACEMENT, Some(41), T0 + HOUR)).await,
            1
        );
        assert_eq!(
            emit_new(&s, &event(2, PLACEMENT, Some(42), T0 + HOUR)).await,
            2
        );
        // The same row under another event id (a poller that restarted mid-batch).
        let again = NewEvent {
            id: "evt-other".into(),
            ..event(9, PLACEMENT, Some(41), T0 + HOUR)
        };
        assert_eq!(
            s.emit(&again).await.unwrap(),
            Emitted::Existing {
                seq: 1,
                id: format!("evt-{PLACEMENT}-1")
            }
        );
        // The same source number of another contract is another row.
        assert_eq!(
            emit_new(&s, &event(3, RETURN, Some(41), T0 + HOUR)).await,
            3
        );
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), Some(42));
        assert_eq!(s.last_source(RETURN).await.unwrap(), Some(41));
        assert_eq!(s.last_source("nothing.emitted").await.unwrap(), None);
        assert_eq!(
            s.outbox_size().await.unwrap(),
            (3, 3),
            "nothing written twice"
        );
    }

    pub async fn an_event_id_emitted_twice_is_stored_once(place: &Place) {
        let s = place.open().await;
        let ev = event(1, PLACEMENT, None, T0 + HOUR);
        assert_eq!(emit_new(&s, &ev).await, 1);
        assert_eq!(
            s.emit(&ev).await.unwrap(),
            Emitted::Existing {
                seq: 1,
                id: ev.id.clone()
            }
        );
        let with_source = NewEvent {
            source: Some(7),
            ..ev.clone()
        };
        assert_eq!(
            s.emit(&with_source).await.unwrap(),
            Emitted::Existing {
                seq: 1,
                id: ev.id.clone()
            },
            "a new source does not make a stored id new"
        );
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), None);
        assert_eq!(emit_new(&s, &event(2, PLACEMENT, None, T0 + HOUR)).await, 2);
    }

    pub async fn a_new_subscriber_starts_after_the_events_already_emitted(place: &Place) {
        let s = place.open().await;
        emit_new(&s, &event(1, PLACEMENT, None, T0 + HOUR)).await;
        emit_new(&s, &event(2, PLACEMENT, None, T0 + HOUR)).await;
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        let cursors = s.cursors().await.unwrap();
        assert_eq!(cursors.len(), 1);
        assert_eq!(cursors[0].delivered_seq, 2);
        assert_eq!(cursors[0].backlog, 0);
        assert!(cursors[0].active);
        assert!(
            s.due(T0, 1000, "a").await.unwrap().is_empty(),
            "nothing to deliver yet"
        );

        emit_new(&s, &event(3, PLACEMENT, None, T0 + HOUR)).await;
        let due = s.due(T0, 1000, "a").await.unwrap();
        assert_eq!(
            due,
            [Due {
                subscriber: KEMLU.into(),
                contract: PLACEMENT.into(),
                version: "1".into(),
                purpose: "worker-protection".into(),
                delivered_seq: 2,
                attempts: 0,
            }]
        );
        let pending = s
            .pending(PLACEMENT, due[0].delivered_seq, 10)
            .await
            .unwrap();
        assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    }

    pub async fn resubscribing_keeps_a_cursors_position_and_takes_the_new_grant(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        for n in 1..=3 {
            emit_new(&s, &event(n, PLACEMENT, None, T0 + HOUR)).await;
        }
        s.delivered(KEMLU, PLACEMENT, 2, &[], Some("evt-2"), T0)
            .await
            .unwrap();
        let renewed = Subscription {
            version: "2".into(),
            purpose: "consular-protection".into(),
            ..sub(KEMLU, PLACEMENT)
        };
        s.subscribe(&[renewed.clone(), sub(DISDUKCAPIL, PLACEMENT)])
            .await
            .unwrap();
        let cursors = s.cursors().await.unwrap();
        assert_eq!(cursors.len(), 2);
        let (dis, kemlu) = (&cursors[0], &cursors[1]);
        assert_eq!(
            dis.subscriber, DISDUKCAPIL,
            "sorted by contract, then subscriber"
        );
        assert_eq!(dis.delivered_seq, 3, "the new one starts after what exists");
        assert_eq!(kemlu.delivered_seq, 2, "the old one keeps its position");
        assert_eq!(
            (kemlu.version.as_str(), kemlu.purpose.as_str()),
            ("2", "consular-protection")
        );

        // Dropped from the active set: kept, not due, its position still held.
        s.subscribe(&[sub(DISDUKCAPIL, PLACEMENT)]).await.unwrap();
        let cursors = s.cursors().await.unwrap();
        assert_eq!(cursors.len(), 2);
        assert!(!cursors[1].active && cursors[1].delivered_seq == 2);
        assert!(s.due(T0, 1000, "a").await.unwrap().is_empty());

        // Back: where it was.
        s.subscribe(&[renewed]).await.unwrap();
        let due = s.due(T0, 1000, "a").await.unwrap();
        assert_eq!(names(&due), [(PLACEMENT.to_owned(), KEMLU.to_owned())]);
        assert_eq!(due[0].delivered_seq, 2);
        let cursors = s.cursors().await.unwrap();
        assert!(
            !cursors[0].active,
            "{} is no longer subscribed",
            cursors[0].subscriber
        );
    }

    pub async fn a_due_cursor_is_leased_to_one_owner_until_the_lease_expires(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT), sub(KEMLU, RETURN)])
            .await
            .unwrap();
        emit_new(&s, &event(1, PLACEMENT, None, T0 + HOUR)).await;
        let first = s.due(T0, 30_000, "replica-a").await.unwrap();
        assert_eq!(
            names(&first),
            [(PLACEMENT.to_owned(), KEMLU.to_owned())],
            "only a cursor with work"
        );
        assert!(
            s.due(T0 + 29_999, 30_000, "replica-b")
                .await
                .unwrap()
                .is_empty(),
            "leased to replica-a"
        );
        assert!(
            s.due(T0 + 29_999, 30_000, "replica-a")
                .await
                .unwrap()
                .is_empty(),
            "leased already"
        );
        let later = s.due(T0 + 30_000, 30_000, "replica-b").await.unwrap();
        assert_eq!(names(&later), names(&first), "the lease expired");

        // Delivered: the lease is freed and the next attempt is now.
        s.delivered(KEMLU, PLACEMENT, 1, &[], Some("evt-1"), T0 + 31_000)
            .await
            .unwrap();
        emit_new(&s, &event(2, PLACEMENT, None, T0 + HOUR)).await;
        let next = s.due(T0 + 31_000, 30_000, "replica-a").await.unwrap();
        assert_eq!(names(&next), names(&first));
        assert_eq!(next[0].delivered_seq, 1);
    }

    pub async fn released_leases_make_a_cursor_due_at_once(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        emit_new(&s, &event(1, PLACEMENT, None, T0 + HOUR)).await;
        assert_eq!(s.due(T0, 30_000, "killed").await.unwrap().len(), 1);
        assert!(s.due(T0 + 1, 30_000, "restarted").await.unwrap().is_empty());
        // The process that held it was killed; the one that starts on the store frees it.
        assert_eq!(s.release_leases().await.unwrap(), 1);
        assert_eq!(s.due(T0 + 1, 30_000, "restarted").await.unwrap().len(), 1);
        assert_eq!(s.is_shared(), place.pg.is_some());
    }

    pub async fn a_failed_delivery_is_not_due_again_before_its_next_attempt(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        emit_new(&s, &event(1, PLACEMENT, None, T0 + HOUR)).await;
        assert_eq!(s.due(T0, 30_000, "a").await.unwrap().len(), 1);
        s.failed(KEMLU, PLACEMENT, "connect timeout", T0 + 5_000)
            .await
            .unwrap();
        assert!(
            s.due(T0 + 4_999, 30_000, "b").await.unwrap().is_empty(),
            "lease freed, but the retry is not due yet"
        );
        let due = s.due(T0 + 5_000, 30_000, "b").await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, 1);
        s.failed(KEMLU, PLACEMENT, "503 from the subscriber", T0 + 15_000)
            .await
            .unwrap();
        let c = &s.cursors().await.unwrap()[0];
        assert_eq!(c.attempts, 2);
        assert_eq!(c.next_attempt_ms, T0 + 15_000);
        assert_eq!(c.last_error.as_deref(), Some("503 from the subscriber"));
        assert_eq!(c.delivered_seq, 0, "a failure does not move the cursor");
    }

    pub async fn pending_events_are_read_in_pages_of_one_contract(place: &Place) {
        let s = place.open().await;
        let mut placement = Vec::new();
        for n in 1..=5 {
            placement.push(emit_new(&s, &event(n, PLACEMENT, None, T0 + HOUR)).await);
            emit_new(&s, &event(n, RETURN, None, T0 + HOUR)).await;
        }
        let mut read = Vec::new();
        let mut after = 0;
        loop {
            let page = s.pending(PLACEMENT, after, 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = last.seq;
            read.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(read, placement);
        assert!(s.pending(PLACEMENT, 0, 0).await.unwrap().is_empty());
        assert!(
            s.pending("nothing.emitted", 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn expiry_moves_a_cursor_only_past_the_leading_expired_events(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        let e1 = event(1, PLACEMENT, None, T0 + 100);
        let e2 = event(2, PLACEMENT, None, T0 + 100);
        let e3 = event(3, PLACEMENT, None, T0 + 10_000);
        let e4 = event(4, PLACEMENT, None, T0 + 100);
        for e in [&e1, &e2, &e3, &e4] {
            emit_new(&s, e).await;
        }
        assert!(
            s.expire(KEMLU, PLACEMENT, T0 + 99)
                .await
                .unwrap()
                .is_empty(),
            "none expired yet"
        );

        let fresh = s.expire(KEMLU, PLACEMENT, T0 + 100).await.unwrap();
        let expected = vec![
            (e1.id.clone(), sha256_b64url(e1.jws.as_bytes()), 1),
            (e2.id.clone(), sha256_b64url(e2.jws.as_bytes()), 2),
        ];
        let got = |v: &[audit_store::events::Notice]| {
            v.iter()
                .map(|n| (n.event_id.clone(), n.hash.clone(), n.seq))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(&fresh),
            expected,
            "e4 has expired too, but e3 has not: it waits"
        );
        let c = &s.cursors().await.unwrap()[0];
        assert_eq!((c.delivered_seq, c.backlog, c.notices), (2, 2, 2));
        assert!(
            s.expire(KEMLU, PLACEMENT, T0 + 200)
                .await
                .unwrap()
                .is_empty(),
            "each notice is returned once"
        );
        assert_eq!(got(&s.notices(KEMLU, PLACEMENT).await.unwrap()), expected);

        // The notices are work: the cursor is due even with nothing else to send.
        s.delivered(KEMLU, PLACEMENT, 3, &[], Some(&e3.id), T0 + 300)
            .await
            .unwrap();
        assert_eq!(
            s.notices(KEMLU, PLACEMENT).await.unwrap().len(),
            2,
            "not sent yet"
        );
        assert_eq!(s.due(T0 + 300, 1000, "a").await.unwrap().len(), 1);
        s.delivered(
            KEMLU,
            PLACEMENT,
            3,
            std::slice::from_ref(&e1.id),
            None,
            T0 + 400,
        )
        .await
        .unwrap();
        assert_eq!(
            got(&s.notices(KEMLU, PLACEMENT).await.unwrap()),
            expected[1..]
        );
        s.delivered(
            KEMLU,
            PLACEMENT,
            3,
            std::slice::from_ref(&e2.id),
            None,
            T0 + 500,
        )
        .await
        .unwrap();
        assert!(s.notices(KEMLU, PLACEMENT).await.unwrap().is_empty());

        // Past e3, e4 is the leading expired event.
        let fresh = s.expire(KEMLU, PLACEMENT, T0 + 20_000).await.unwrap();
        assert_eq!(
            got(&fresh),
            [(e4.id.clone(), sha256_b64url(e4.jws.as_bytes()), 4)]
        );
        let c = &s.cursors().await.unwrap()[0];
        assert_eq!((c.delivered_seq, c.backlog, c.notices), (4, 0, 1));
    }

    pub async fn a_delivery_never_moves_a_cursor_back(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        for n in 1..=4 {
            emit_new(&s, &event(n, PLACEMENT, None, T0 + HOUR)).await;
        }
        s.failed(KEMLU, PLACEMENT, "timeout", T0 + 1_000)
            .await
            .unwrap();
        s.delivered(KEMLU, PLACEMENT, 3, &[], Some("evt-3"), T0 + 2_000)
            .await
            .unwrap();
        let c = &s.cursors().await.unwrap()[0];
        assert_eq!(c.delivered_seq, 3);
        assert_eq!((c.attempts, c.next_attempt_ms), (0, T0 + 2_000));
        assert_eq!(c.last_error, None, "cleared by the delivery");
        assert_eq!(c.last_delivered_id.as_deref(), Some("evt-3"));
        assert_eq!(c.last_delivered_ms, Some(T0 + 2_000));

        // A late acknowledgement of an older delivery, with nothing delivered named.
        s.delivered(KEMLU, PLACEMENT, 1, &[], None, T0 + 3_000)
            .await
            .unwrap();
        let c = &s.cursors().await.unwrap()[0];
        assert_eq!(c.delivered_seq, 3, "never back");
        assert_eq!(c.last_delivered_id.as_deref(), Some("evt-3"));
        assert_eq!(c.last_delivered_ms, Some(T0 + 2_000));
        assert_eq!(c.backlog, 1);
    }

    pub async fn cursors_report_their_backlog_oldest_pending_event_and_notices(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[
            sub(KEMLU, RETURN),
            sub(KEMLU, PLACEMENT),
            sub(DISDUKCAPIL, PLACEMENT),
        ])
        .await
        .unwrap();
        for n in 1..=3 {
            emit_new(&s, &event(n, PLACEMENT, None, T0 + 100 * i64::from(n))).await;
        }
        s.delivered(DISDUKCAPIL, PLACEMENT, 1, &[], Some("evt-1"), T0)
            .await
            .unwrap();
        s.expire(KEMLU, PLACEMENT, T0 + 100).await.unwrap();
        let cursors = s.cursors().await.unwrap();
        let view: Vec<_> = cursors
            .iter()
            .map(|c| {
                (
                    c.contract.as_str(),
                    c.subscriber.as_str(),
                    c.delivered_seq,
                    c.backlog,
                    c.oldest_pending_ms,
                    c.notices,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (PLACEMENT, DISDUKCAPIL, 1, 2, Some(T0 + 2), 0),
                (PLACEMENT, KEMLU, 1, 2, Some(T0 + 2), 1),
                (RETURN, KEMLU, 0, 0, None, 0),
            ]
        );
    }

    pub async fn purge_keeps_the_events_a_cursor_has_not_passed(place: &Place) {
        let s = place.open().await;
        s.subscribe(&[sub(KEMLU, PLACEMENT), sub(DISDUKCAPIL, PLACEMENT)])
            .await
            .unwrap();
        for n in 1..=4 {
            emit_new(&s, &event(n, PLACEMENT, Some(i64::from(n)), T0 + 100)).await;
        }
        emit_new(&s, &event(5, PLACEMENT, Some(5), T0 + HOUR)).await;
        // Nobody subscribes to RETURN: its events go once expired.
        emit_new(&s, &event(1, RETURN, None, T0 + 100)).await;
        s.delivered(KEMLU, PLACEMENT, 5, &[], Some("evt-5"), T0)
            .await
            .unwrap();
        s.delivered(DISDUKCAPIL, PLACEMENT, 2, &[], Some("evt-2"), T0)
            .await
            .unwrap();
        // DISDUKCAPIL no longer subscribes, but its cursor still holds the events it has not
        // passed.
        s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();

        assert_eq!(s.purge(T0 + 99).await.unwrap(), 0, "nothing has expired");
        assert_eq!(
            s.purge(T0 + 100).await.unwrap(),
            3,
            "seqs 1 and 2, and RETURN's"
        );
        let left: Vec<i64> = s
            .pending(PLACEMENT, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, [3, 4, 5]);

        s.delivered(DISDUKCAPIL, PLACEMENT, 5, &[], Some("evt-5"), T0 + 200)
            .await
            .unwrap();
        assert_eq!(s.purge(T0 + 200).await.unwrap(), 2, "seq 5 has not expired");
        assert_eq!(s.outbox_size().await.unwrap(), (5, 1));
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), Some(5));

        s.delivered(KEMLU, PLACEMENT, 5, &[], None, T0)
            .await
            .unwrap();
        assert_eq!(s.purge(T0 + HOUR).await.unwrap(), 1);
        assert_eq!(s.outbox_size().await.unwrap(), (0, 0));
        assert_eq!(
            s.last_source(PLACEMENT).await.unwrap(),
            Some(5),
            "where the poller resumes outlives the events"
        );
        assert_eq!(
            emit_new(&s, &event(6, PLACEMENT, Some(6), T0 + HOUR)).await,
            7,
            "a seq is never given twice"
        );
    }

    pub async fn a_received_event_is_stored_once_across_calls_and_within_one(place: &Place) {
        let s = place.open_as(KEMLU).await;
        let a = incoming(BP2MI, PLACEMENT, 1, T0, T0 + HOUR);
        let b = incoming(BP2MI, PLACEMENT, 2, T0, T0 + HOUR);
        let c = incoming(BP2MI, PLACEMENT, 3, T0 + 10, T0 + HOUR);
        assert_eq!(
            s.receive(&[a.clone(), b.clone(), a.clone()]).await.unwrap(),
            [
                Received::New { seq: 1 },
                Received::New { seq: 2 },
                Received::Duplicate { seq: 1 }
            ]
        );
        assert_eq!(
            s.receive(&[b.clone(), c.clone()]).await.unwrap(),
            [Received::Duplicate { seq: 2 }, Received::New { seq: 3 }]
        );
        // The same event id from another provider is another event.
        let other = incoming(DISDUKCAPIL, PLACEMENT, 1, T0 + 20, T0 + HOUR);
        assert_eq!(new_seq(&s.receive(&[other]).await.unwrap()[0]), 4);
        assert!(s.receive(&[]).await.unwrap().is_empty());
        let inbox = s.inbox(None, None, 0, 10).await.unwrap();
        assert_eq!(inbox.len(), 4);
        let first = &inbox[0];
        assert_eq!(
            (
                first.seq,
                first.provider.as_str(),
                first.event_id.as_str(),
                first.jws.as_str(),
                first.received_ms
            ),
            (1, BP2MI, a.event_id.as_str(), a.jws.as_str(), a.received_ms)
        );
    }

    pub async fn the_inbox_and_cursors_survive_reopening_the_store(place: &Place) {
        {
            let s = place.open().await;
            s.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
            emit_new(&s, &event(1, PLACEMENT, Some(10), T0 + HOUR)).await;
            emit_new(&s, &event(2, PLACEMENT, Some(11), T0 + HOUR)).await;
            s.delivered(KEMLU, PLACEMENT, 1, &[], Some("evt-1"), T0)
                .await
                .unwrap();
            s.receive(&[incoming(KEMLU, RETURN, 1, T0, T0 + HOUR)])
                .await
                .unwrap();
            s.hooks(&hook_names(&["sisko"])).await.unwrap();
            s.hook_delivered("sisko", 1, T0).await.unwrap();
        }
        let s = place.open().await;
        let c = &s.cursors().await.unwrap()[0];
        assert_eq!((c.delivered_seq, c.backlog), (1, 1));
        assert_eq!(c.last_delivered_id.as_deref(), Some("evt-1"));
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), Some(11));
        assert_eq!(
            s.receive(&[incoming(KEMLU, RETURN, 1, T0 + 5, T0 + HOUR)])
                .await
                .unwrap(),
            [Received::Duplicate { seq: 1 }]
        );
        assert_eq!(
            new_seq(
                &s.receive(&[incoming(KEMLU, RETURN, 2, T0 + 5, T0 + HOUR)])
                    .await
                    .unwrap()[0]
            ),
            2
        );
        assert_eq!(
            emit_new(&s, &event(3, PLACEMENT, Some(12), T0 + HOUR)).await,
            3
        );
        let hooks = s.hooks(&hook_names(&["sisko"])).await.unwrap();
        assert_eq!(hooks[0].delivered_seq, 1);
        assert_eq!(hooks[0].last_delivered_ms, Some(T0));
    }

    pub async fn an_expiry_notice_is_kept_once_and_never_for_an_event_received(place: &Place) {
        let s = place.open_as(KEMLU).await;
        let received = incoming(BP2MI, PLACEMENT, 1, T0, T0 + HOUR);
        s.receive(std::slice::from_ref(&received)).await.unwrap();
        assert!(
            s.notice_expired(BP2MI, PLACEMENT, "evt-lost", "hash-lost", T0)
                .await
                .unwrap()
        );
        assert!(
            !s.notice_expired(BP2MI, PLACEMENT, "evt-lost", "hash-lost", T0 + 1)
                .await
                .unwrap(),
            "noticed already"
        );
        assert!(
            !s.notice_expired(BP2MI, PLACEMENT, &received.event_id, "h", T0)
                .await
                .unwrap(),
            "the event is in the inbox"
        );
        assert!(
            s.notice_expired(DISDUKCAPIL, PLACEMENT, "evt-lost", "hash-lost", T0)
                .await
                .unwrap(),
            "another provider's event of that id"
        );
    }

    pub async fn the_inbox_is_read_in_pages_by_provider_and_contract(place: &Place) {
        let s = place.open_as(KEMLU).await;
        let mut all = Vec::new();
        for n in 1..=3 {
            all.push(incoming(BP2MI, PLACEMENT, n, T0 + i64::from(n), T0 + HOUR));
            all.push(incoming(BP2MI, RETURN, n, T0 + i64::from(n), T0 + HOUR));
            all.push(incoming(
                DISDUKCAPIL,
                PLACEMENT,
                n,
                T0 + i64::from(n),
                T0 + HOUR,
            ));
        }
        s.receive(&all).await.unwrap();
        let seqs =
            |v: Vec<audit_store::events::InboxEvent>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(s.inbox(None, None, 0, 100).await.unwrap()),
            (1..=9).collect::<Vec<_>>()
        );
        assert_eq!(
            seqs(s.inbox(Some(BP2MI), None, 0, 100).await.unwrap()),
            [1, 2, 4, 5, 7, 8]
        );
        assert_eq!(
            seqs(s.inbox(None, Some(PLACEMENT), 0, 100).await.unwrap()),
            [1, 3, 4, 6, 7, 9]
        );
        assert_eq!(
            seqs(s.inbox(Some(BP2MI), Some(PLACEMENT), 0, 100).await.unwrap()),
            [1, 4, 7]
        );
        assert_eq!(
            seqs(s.inbox(Some(BP2MI), Some(PLACEMENT), 1, 1).await.unwrap()),
            [4]
        );
        assert_eq!(seqs(s.inbox(None, None, 3, 4).await.unwrap()), [4, 5, 6, 7]);
        assert!(
            s.inbox(Some("ID:GOV:NOBODY"), None, 0, 100)
                .await
                .unwrap()
                .is_empty()
        );

        assert_eq!(
            s.inbox_seq_before(T0).await.unwrap(),
            0,
            "nothing received before"
        );
        assert_eq!(s.inbox_seq_before(T0 + 2).await.unwrap(), 3);
        assert_eq!(s.inbox_seq_before(T0 + 100).await.unwrap(), 9);
    }

    pub async fn a_new_webhook_starts_at_zero_and_moves_forward_only(place: &Place) {
        let s = place.open_as(KEMLU).await;
        s.receive(&[
            incoming(BP2MI, PLACEMENT, 1, T0, T0 + HOUR),
            incoming(BP2MI, PLACEMENT, 2, T0, T0 + HOUR),
        ])
        .await
        .unwrap();
        let fresh = HookState {
            name: String::new(),
            delivered_seq: 0,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            last_delivered_ms: None,
        };
        let hooks = s.hooks(&hook_names(&["sisko", "portal"])).await.unwrap();
        assert_eq!(
            hooks,
            [
                HookState {
                    name: "sisko".into(),
                    ..fresh.clone()
                },
                HookState {
                    name: "portal".into(),
                    ..fresh.clone()
                },
            ],
            "in the order given, everything in the inbox to deliver"
        );
        s.hook_failed("sisko", "502 from the member system", T0 + 60_000)
            .await
            .unwrap();
        s.hook_failed("sisko", "502 from the member system", T0 + 120_000)
            .await
            .unwrap();
        let sisko = &s.hooks(&hook_names(&["sisko"])).await.unwrap()[0];
        assert_eq!((sisko.attempts, sisko.next_attempt_ms), (2, T0 + 120_000));
        assert_eq!(
            sisko.last_error.as_deref(),
            Some("502 from the member system")
        );

        s.hook_delivered("sisko", 2, T0 + 130_000).await.unwrap();
        s.hook_delivered("sisko", 1, T0 + 140_000).await.unwrap();
        let hooks = s.hooks(&hook_names(&["portal", "sisko"])).await.unwrap();
        assert_eq!(
            hooks[0],
            HookState {
                name: "portal".into(),
                ..fresh
            }
        );
        let sisko = &hooks[1];
        assert_eq!(sisko.delivered_seq, 2, "never back");
        assert_eq!((sisko.attempts, sisko.last_error.as_deref()), (0, None));
        assert_eq!(sisko.last_delivered_ms, Some(T0 + 140_000));
    }

    pub async fn a_webhook_is_rewound_for_a_redelivery_but_not_into_the_purged_part(place: &Place) {
        let s = place.open_as(KEMLU).await;
        let hooks = hook_names(&["sisko"]);
        s.hooks(&hooks).await.unwrap();
        for n in 1..=4 {
            // Events 1 and 2 expire at T0 + 100, 3 and 4 an hour later.
            let expires = if n <= 2 { T0 + 100 } else { T0 + HOUR };
            s.receive(&[incoming(
                BP2MI,
                PLACEMENT,
                n,
                T0 + 10 * i64::from(n),
                expires,
            )])
            .await
            .unwrap();
        }
        s.hook_delivered("sisko", 4, T0 + 50).await.unwrap();
        s.rewind("sisko", 0).await.unwrap();
        let h = &s.hooks(&hooks).await.unwrap()[0];
        assert_eq!((h.delivered_seq, h.attempts, h.next_attempt_ms), (0, 0, 0));
        s.hook_delivered("sisko", 4, T0 + 60).await.unwrap();

        assert_eq!(s.purge_inbox(T0 + 100, &hooks).await.unwrap(), 2);
        let e = s.rewind("sisko", 0).await.unwrap_err();
        match &e {
            EventStoreError::RewindPurged {
                hook,
                to_seq,
                oldest,
                ..
            } => {
                assert_eq!((hook.as_str(), *to_seq, *oldest), ("sisko", 0, 3));
            }
            other => panic!("not a refusal past the purged part: {other}"),
        }
        assert!(e.to_string().contains("lowest position is 2"), "{e}");
        assert_eq!(
            s.hooks(&hooks).await.unwrap()[0].delivered_seq,
            4,
            "unchanged"
        );

        // "Since T0": what is left of it, from just before the oldest event kept.
        let since = s.inbox_seq_before(T0).await.unwrap();
        assert_eq!(since, 2);
        s.rewind("sisko", since).await.unwrap();
        assert_eq!(s.hooks(&hooks).await.unwrap()[0].delivered_seq, 2);
        assert_eq!(s.inbox_seq_before(T0 + 35).await.unwrap(), 3);

        let e = s.rewind("sisko", 5).await.unwrap_err();
        assert!(
            matches!(
                e,
                EventStoreError::RewindAhead {
                    to_seq: 5,
                    newest: 4,
                    ..
                }
            ),
            "{e}"
        );
    }

    pub async fn purging_the_inbox_waits_for_every_hook(place: &Place) {
        let s = place.open_as(KEMLU).await;
        let both = hook_names(&["sisko", "portal"]);
        s.hooks(&both).await.unwrap();
        for n in 1..=4 {
            s.receive(&[incoming(BP2MI, PLACEMENT, n, T0, T0 + 100)])
                .await
                .unwrap();
        }
        s.hook_delivered("sisko", 4, T0).await.unwrap();
        s.hook_delivered("portal", 2, T0).await.unwrap();
        assert_eq!(
            s.purge_inbox(T0 + 99, &both).await.unwrap(),
            0,
            "not expired"
        );
        assert_eq!(
            s.purge_inbox(T0 + 100, &hook_names(&["sisko", "portal", "new-hook"]))
                .await
                .unwrap(),
            0,
            "a hook named that does not exist yet has delivered nothing"
        );
        assert_eq!(
            s.purge_inbox(T0 + 100, &both).await.unwrap(),
            2,
            "portal is at 2"
        );
        let left: Vec<i64> = s
            .inbox(None, None, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, [3, 4]);
        s.hook_delivered("portal", 4, T0).await.unwrap();
        assert_eq!(s.purge_inbox(T0 + 100, &both).await.unwrap(), 2);
        let next = incoming(BP2MI, PLACEMENT, 5, T0 + 200, T0 + HOUR);
        assert_eq!(
            s.receive(&[next]).await.unwrap(),
            [Received::New { seq: 5 }],
            "a seq is never given twice"
        );

        // Expiry notices are kept 30 days.
        let day = 86_400_000;
        assert!(
            s.notice_expired(BP2MI, PLACEMENT, "evt-lost", "h", T0)
                .await
                .unwrap()
        );
        s.purge_inbox(T0 + 30 * day, &both).await.unwrap();
        assert!(
            !s.notice_expired(BP2MI, PLACEMENT, "evt-lost", "h", T0)
                .await
                .unwrap(),
            "kept"
        );
        s.purge_inbox(T0 + 30 * day + 1, &both).await.unwrap();
        assert!(
            s.notice_expired(BP2MI, PLACEMENT, "evt-lost", "h", T0)
                .await
                .unwrap(),
            "gone after 30 days"
        );
    }

    /// Two replicas (two pools) ask at once, round after round: every due cursor goes to
    /// exactly one of them.
    pub async fn two_owners_asking_at_once_never_get_the_same_cursor(place: &Place) {
        let a = place.open().await;
        let b = place.open().await;
        let subs: Vec<Subscription> = (0..16)
            .map(|i| sub(&format!("ID:GOV:SUB{i:02}"), PLACEMENT))
            .collect();
        a.subscribe(&subs).await.unwrap();
        emit_new(&a, &event(1, PLACEMENT, None, T0 + HOUR)).await;
        let lease = 1_000;
        for round in 0..8 {
            let now = T0 + round * lease;
            let (got_a, got_b) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    async move { a.due(now, lease, "replica-a").await }
                }),
                tokio::spawn({
                    let b = b.clone();
                    async move { b.due(now, lease, "replica-b").await }
                }),
            );
            let (got_a, got_b) = (got_a.unwrap().unwrap(), got_b.unwrap().unwrap());
            let set_a: BTreeSet<_> = names(&got_a).into_iter().collect();
            let set_b: BTreeSet<_> = names(&got_b).into_iter().collect();
            assert!(
                set_a.is_disjoint(&set_b),
                "round {round}: both got {:?}",
                set_a.intersection(&set_b).collect::<Vec<_>>()
            );
            assert_eq!(
                set_a.len() + set_b.len(),
                subs.len(),
                "round {round}: every cursor leased"
            );
        }
    }

    pub async fn members_sharing_a_database_see_only_their_own_events(place: &Place) {
        let bp2mi = place.open_as(BP2MI).await;
        let kemlu = place.open_as(KEMLU).await;
        bp2mi.subscribe(&[sub(KEMLU, PLACEMENT)]).await.unwrap();
        assert_eq!(
            emit_new(&bp2mi, &event(1, PLACEMENT, Some(1), T0 + HOUR)).await,
            1
        );
        assert_eq!(
            emit_new(&bp2mi, &event(2, PLACEMENT, Some(2), T0 + HOUR)).await,
            2
        );
        assert_eq!(
            emit_new(&kemlu, &event(1, PLACEMENT, Some(1), T0 + HOUR)).await,
            1,
            "the same id and source, another member's outbox"
        );
        assert!(kemlu.cursors().await.unwrap().is_empty());
        assert_eq!(kemlu.outbox_size().await.unwrap(), (1, 1));
        assert_eq!(kemlu.last_source(PLACEMENT).await.unwrap(), Some(1));
        assert_eq!(bp2mi.due(T0, 1000, "a").await.unwrap().len(), 1);
        assert!(kemlu.due(T0, 1000, "a").await.unwrap().is_empty());

        let inc = incoming(BP2MI, PLACEMENT, 1, T0, T0 + HOUR);
        assert_eq!(
            kemlu.receive(std::slice::from_ref(&inc)).await.unwrap(),
            [Received::New { seq: 1 }]
        );
        assert_eq!(
            bp2mi.receive(std::slice::from_ref(&inc)).await.unwrap(),
            [Received::New { seq: 1 }]
        );
        assert_eq!(
            bp2mi.purge(T0 + 2 * HOUR).await.unwrap(),
            0,
            "KEMLU has not passed them"
        );
        assert_eq!(kemlu.purge(T0 + 2 * HOUR).await.unwrap(), 1);
        assert_eq!(bp2mi.outbox_size().await.unwrap(), (2, 2));
    }

    pub async fn an_unknown_cursor_or_hook_is_refused_by_name(place: &Place) {
        let s = place.open().await;
        let is_unknown_cursor = |e: EventStoreError| match e {
            EventStoreError::UnknownCursor {
                subscriber,
                contract,
                ..
            } => {
                assert_eq!((subscriber.as_str(), contract.as_str()), (KEMLU, PLACEMENT));
            }
            other => panic!("not an unknown cursor: {other}"),
        };
        is_unknown_cursor(s.expire(KEMLU, PLACEMENT, T0).await.unwrap_err());
        is_unknown_cursor(
            s.delivered(KEMLU, PLACEMENT, 1, &[], None, T0)
                .await
                .unwrap_err(),
        );
        is_unknown_cursor(s.failed(KEMLU, PLACEMENT, "x", T0).await.unwrap_err());
        for e in [
            s.hook_delivered("nope", 1, T0).await.unwrap_err(),
            s.hook_failed("nope", "x", T0).await.unwrap_err(),
            s.rewind("nope", 0).await.unwrap_err(),
        ] {
            assert!(
                matches!(&e, EventStoreError::UnknownHook { hook, .. } if hook == "nope"),
                "{e}"
            );
            assert!(e.to_string().contains("nope"), "{e}");
        }
    }

    /// Many emissions at once (sharing group commits): each gets its own seq, the seqs are
    /// 1..=n with no gap, the outbox holds each event at the seq its caller was told, and a
    /// caller is answered only once its event is committed (readable by another call).
    pub async fn concurrent_emissions_each_get_a_distinct_seq_in_commit_order(place: &Place) {
        let s = place.open().await;
        let n: u32 = 300;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 1..=n {
            let s = s.clone();
            tasks.spawn(async move {
                let ev = event(i, PLACEMENT, None, T0 + HOUR);
                let seq = emit_new(&s, &ev).await;
                let stored = s.pending(PLACEMENT, seq - 1, 1).await.unwrap();
                assert_eq!(
                    stored.first().map(|e| (e.seq, e.id.as_str())),
                    Some((seq, ev.id.as_str())),
                    "answered before its event was committed"
                );
                (seq, ev.id)
            });
        }
        let mut told = std::collections::BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            let (seq, id) = done.unwrap();
            assert!(told.insert(seq, id).is_none(), "seq {seq} given twice");
        }
        assert_eq!(
            told.keys().copied().collect::<Vec<_>>(),
            (1..=i64::from(n)).collect::<Vec<_>>()
        );
        let stored = s.pending(PLACEMENT, 0, n + 1).await.unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|e| (e.seq, e.id.clone()))
                .collect::<Vec<_>>(),
            told.into_iter().collect::<Vec<_>>(),
            "each event at the seq its caller was told"
        );
        assert_eq!(s.outbox_size().await.unwrap(), (i64::from(n), u64::from(n)));
    }

    /// Two emissions of one source in one batch: the second is the first's event. And many
    /// of one source at once, over however many batches: one event.
    pub async fn emissions_of_one_source_in_one_batch_are_stored_once(place: &Place) {
        let s = place.open().await;
        let first = event(1, PLACEMENT, Some(7), T0 + HOUR);
        let again = event(2, PLACEMENT, Some(7), T0 + HOUR);
        let other = event(3, PLACEMENT, Some(8), T0 + HOUR);
        let same_id = NewEvent {
            source: None,
            ..other.clone()
        };
        assert_eq!(
            s.emit_batch(&[first.clone(), again, other.clone(), same_id])
                .await
                .unwrap(),
            [
                Emitted::New { seq: 1 },
                Emitted::Existing {
                    seq: 1,
                    id: first.id.clone()
                },
                Emitted::New { seq: 2 },
                Emitted::Existing {
                    seq: 2,
                    id: other.id.clone()
                },
            ]
        );
        assert_eq!(s.outbox_size().await.unwrap(), (2, 2));
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), Some(8));

        let mut tasks = tokio::task::JoinSet::new();
        for i in 10..60 {
            let s = s.clone();
            tasks.spawn(async move { s.emit(&event(i, PLACEMENT, Some(9), T0 + HOUR)).await });
        }
        let mut new = Vec::new();
        let mut existing = BTreeSet::new();
        while let Some(done) = tasks.join_next().await {
            match done.unwrap().unwrap() {
                Emitted::New { seq } => new.push(seq),
                Emitted::Existing { seq, id } => {
                    existing.insert((seq, id));
                }
            }
        }
        assert_eq!(new, [3], "one emission of source 9 is new");
        let stored = s.pending(PLACEMENT, 2, 10).await.unwrap();
        assert_eq!(stored.len(), 1, "source 9 stored once");
        assert_eq!(
            existing.into_iter().collect::<Vec<_>>(),
            [(3, stored[0].id.clone())],
            "every other emission of source 9 is told of the stored one"
        );
    }

    /// A batch whose transaction fails stores none of its events and fails every emission
    /// it held: no caller is told its event is kept when it is not.
    pub async fn a_failed_group_commit_fails_every_emission_in_it(place: &Place) {
        let s = place.open().await;
        place.poison().await;
        let poison = NewEvent {
            id: POISON.into(),
            ..event(2, PLACEMENT, Some(2), T0 + HOUR)
        };
        let batch = [
            event(1, PLACEMENT, Some(1), T0 + HOUR),
            poison.clone(),
            event(3, PLACEMENT, Some(3), T0 + HOUR),
        ];
        let e = s.emit_batch(&batch).await.unwrap_err();
        assert!(e.to_string().contains("poisoned by the test"), "{e}");
        assert_eq!(s.outbox_size().await.unwrap(), (0, 0), "nothing of it kept");
        assert_eq!(s.last_source(PLACEMENT).await.unwrap(), None);

        // Through `emit`, at once: the emissions that shared the poisoned transaction all
        // fail, saying how many they were; every other one is stored.
        let mut tasks = tokio::task::JoinSet::new();
        for ev in (10..40)
            .map(|i| event(i, PLACEMENT, None, T0 + HOUR))
            .chain([poison])
        {
            let s = s.clone();
            tasks.spawn(async move { (ev.id.clone(), s.emit(&ev).await) });
        }
        let mut kept = BTreeSet::new();
        let mut failed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done.unwrap() {
                (id, Ok(Emitted::New { seq })) => {
                    kept.insert((seq, id));
                }
                (id, Ok(other)) => panic!("{id}: {other:?}"),
                (id, Err(EventStoreError::GroupCommit { events, source, .. })) => {
                    assert!(
                        source.to_string().contains("poisoned by the test"),
                        "{source}"
                    );
                    failed.push((id, events));
                }
                (id, Err(e)) => panic!("{id}: not a failed group commit: {e}"),
            }
        }
        assert!(
            failed.iter().any(|(id, _)| id == POISON),
            "the poisoned emission failed"
        );
        for (id, events) in &failed {
            assert_eq!(*events, failed.len(), "{id}: one failed batch of {events}");
        }
        let stored = s.pending(PLACEMENT, 0, 100).await.unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|e| (e.seq, e.id.clone()))
                .collect::<BTreeSet<_>>(),
            kept,
            "exactly the emissions answered Ok are stored"
        );
        assert_eq!(kept.len() + failed.len(), 31);

        // The store goes on: the first batch's events, sent again, are kept.
        let again = s.emit_batch(&batch[..1]).await.unwrap();
        assert!(matches!(again[..], [Emitted::New { .. }]), "{again:?}");
    }
}
