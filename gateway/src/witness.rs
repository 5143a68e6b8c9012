//! Exchange partners as witnesses of each other's logs (PROTOCOL.md §5.4). Every request
//! carries the consumer's newest signed tree head and every answer the provider's, in the
//! `Simpul-Tree-Head` header. The receiver checks the head with the sender's key from the
//! manifest and that it is consistent with the newest head it holds from that member — by
//! an RFC 9162 consistency proof it fetches from the sender once per new head — and keeps
//! the newest. A member whose log forked or shrank cannot prove that: the receiver keeps
//! both heads as evidence, raises `simpul_witness_forked`, and refuses further exchanges
//! with it (409 `log-forked`).
//!
//! Most messages carry the head the last one did: that costs one string comparison. Only a
//! new head is verified, and only one whose tree differs from the held one costs a fetch.

use crate::escaped::Escaped;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use audit::merkle::Hash;
use audit::tree_head::{TREE_HEAD_TYP, TreeHeadPayload};
use audit::{ConsistencyProof, SignedTreeHead, check_consistency_proof, verify_tree_head};
use audit_store::{AuditLog, Fork, Witnessed, now_ms};
use contracts::{Manifest, MemberId, ParsedJws, Problem, ProblemCode};
use http::Method;

use crate::client::PeerClient;
use crate::metrics::Labels;

pub use contracts::envelope::TREE_HEAD_HEADER;

/// The longest header value taken for a head (a head's JWS is about 400 bytes).
const MAX_HEAD_BYTES: usize = 2048;

/// How long fetching one consistency proof may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(2);

/// After a fetch failed (the sender was unreachable), how long its new heads are taken on
/// trust before the next try: a partner's outage must not slow every exchange.
const FETCH_BACKOFF: Duration = Duration::from_secs(30);

/// How many older heads (smaller trees) proven consistent are remembered per member, so
/// that one arriving late is not fetched for again.
const KNOWN_OLDER: usize = 64;

/// Why a head was refused, or a member is.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The header is not a tree head signed by the sender.
    #[error("the tree head in {TREE_HEAD_HEADER} is not valid: {0}")]
    BadHead(String),
    /// The member's log forked or shrank: it signed heads no single append-only log has.
    #[error("the audit log of {member} forked or shrank: {reason}")]
    Forked {
        /// The member.
        member: MemberId,
        /// Why, as first caught.
        reason: String,
    },
    /// The audit store could not keep what was witnessed.
    #[error("the witness could not keep what it saw: {0}")]
    Store(#[from] audit_store::AuditError),
}

impl WitnessError {
    /// The problem code of a refusal for this.
    pub fn code(&self) -> ProblemCode {
        match self {
            WitnessError::BadHead(_) => ProblemCode::BadTreeHead,
            WitnessError::Forked { .. } => ProblemCode::LogForked,
            WitnessError::Store(_) => ProblemCode::ProviderUnavailable,
        }
    }
}

/// A head as held: its signed form and its root.
#[derive(Clone, Debug)]
struct Held {
    head: SignedTreeHead,
    root: Hash,
}

/// What is known of one member's log.
#[derive(Default)]
struct Partner {
    /// The JWS last found consistent: the same head again costs nothing more.
    accepted: RwLock<Option<Arc<str>>>,
    /// Set when its log was caught forked; stays set (it is kept in the store).
    forked: AtomicBool,
    /// Why, as first caught.
    reason: Mutex<Option<String>>,
    /// The slow path, one head at a time.
    slow: tokio::sync::Mutex<Slow>,
}

#[derive(Default)]
struct Slow {
    newest: Option<Held>,
    /// Smaller trees proven consistent with `newest`: (size, root).
    older: VecDeque<(u64, Hash)>,
    /// When a fetch from this member last failed.
    fetch_failed: Option<Instant>,
}

/// This gateway's witness of its partners' logs.
pub struct Witness {
    log: AuditLog,
    partners: Mutex<HashMap<MemberId, Arc<Partner>>>,
    refuse_forked: bool,
    labels: Labels,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Witness(refuse_forked: {})", self.refuse_forked)
    }
}

impl Witness {
    /// The witness of `log`'s gateway, with what it held when it last ran: the newest head
    /// of each member and the forks it caught. A held head that no longer verifies under
    /// `manifest` (a key retired since) is set aside; the member's next head starts anew.
    pub(crate) async fn open(
        log: AuditLog,
        manifest: &Manifest,
        refuse_forked: bool,
        labels: &Labels,
    ) -> Result<Witness, WitnessError> {
        let witness = Witness {
            log,
            partners: Mutex::default(),
            refuse_forked,
            labels: labels.clone(),
        };
        for held in witness.log.witnessed().await? {
            let Ok(member) = MemberId::parse(&held.member) else {
                continue;
            };
            match verified(manifest, &member, &held.head.jws) {
                Ok((head, root)) => {
                    let partner = witness.partner(&member);
                    partner.slow.lock().await.newest = Some(Held { head, root });
                }
                Err(e) => {
                    tracing::warn!(member = %member, error = %Escaped(&e.to_string()), "a witnessed head no longer verifies; set aside")
                }
            }
        }
        for fork in witness.log.forks().await? {
            if let Ok(member) = MemberId::parse(&fork.member) {
                witness.mark_forked(&member, fork.reason);
            }
        }
        Ok(witness)
    }

    fn partner(&self, member: &MemberId) -> Arc<Partner> {
        let mut partners = self
            .partners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        partners.entry(member.clone()).or_default().clone()
    }

    fn mark_forked(&self, member: &MemberId, reason: String) {
        let partner = self.partner(member);
        partner.forked.store(true, Ordering::Release);
        let mut held = partner
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.get_or_insert(reason);
        metrics::gauge!("simpul_witness_forked", "member" => self.labels.member.clone(), "instance" => self.labels.instance.clone(), "peer" => member.to_string()).set(1.0);
    }

    /// Whether exchanges with `member` are refused: its log was caught forked and this
    /// gateway refuses forked members (the default).
    pub fn refuses(&self, member: &MemberId) -> Result<(), WitnessError> {
        if !self.refuse_forked {
            return Ok(());
        }
        let partners = self
            .partners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match partners.get(member) {
            Some(p) if p.forked.load(Ordering::Acquire) => Err(WitnessError::Forked {
                member: member.clone(),
                reason: p
                    .reason
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
                    .unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }

    /// Witnesses the head `member` sent in [`TREE_HEAD_HEADER`] (`None` when it sent none,
    /// which is taken as it is). `peer` is the client that reaches `member`'s gateway for a
    /// consistency proof. Err when the head is not `member`'s, or `member`'s log is caught
    /// forked and this gateway refuses forked members.
    pub async fn observe(
        &self,
        manifest: &Manifest,
        peer: Option<&PeerClient>,
        member: &MemberId,
        header: Option<&http::HeaderValue>,
    ) -> Result<(), WitnessError> {
        self.refuses(member)?;
        let Some(value) = header else {
            return Ok(());
        };
        if value.len() > MAX_HEAD_BYTES {
            return Err(WitnessError::BadHead(format!(
                "longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
        let jws = value
            .to_str()
            .map_err(|_| WitnessError::BadHead("not visible ASCII".into()))?;
        let partner = self.partner(member);
        let seen = partner
            .accepted
            .read()
            .ok()
            .is_some_and(|a| a.as_deref() == Some(jws));
        if seen {
            return Ok(());
        }
        let (head, root) = verified(manifest, member, jws)?;
        let mut slow = partner.slow.lock().await;
        match self
            .compare(manifest, peer, member, &mut slow, head, root)
            .await
        {
            Ok(()) => {
                if let Ok(mut accepted) = partner.accepted.write() {
                    *accepted = Some(Arc::from(jws));
                }
                Ok(())
            }
            Err(e @ WitnessError::Forked { .. }) if !self.refuse_forked => {
                tracing::error!(member = %member, error = %Escaped(&e.to_string()), "a partner's audit log forked; exchanges go on (witness.refuse_forked = false)");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Holds `head` against the newest held from `member`.
    async fn compare(
        &self,
        manifest: &Manifest,
        peer: Option<&PeerClient>,
        member: &MemberId,
        slow: &mut Slow,
        head: SignedTreeHead,
        root: Hash,
    ) -> Result<(), WitnessError> {
        let Some(held) = slow.newest.clone() else {
            return self.keep(member, slow, head, root).await;
        };
        let (small, large) = if head.tree_size <= held.head.tree_size {
            ((&head, root), (&held.head, held.root))
        } else {
            ((&held.head, held.root), (&head, root))
        };
        let known = (small.0.tree_size == large.0.tree_size && small.1 == large.1)
            || (head.tree_size < held.head.tree_size
                && slow.older.contains(&(head.tree_size, root)));
        if known {
            return Ok(());
        }
        let verdict = if small.0.tree_size == large.0.tree_size {
            Err(format!(
                "two heads of tree size {} with different roots",
                small.0.tree_size
            ))
        } else if small.0.tree_size == 0 {
            // Every tree extends the empty one.
            Ok(())
        } else {
            if slow
                .fetch_failed
                .is_some_and(|at| at.elapsed() < FETCH_BACKOFF)
            {
                return Ok(());
            }
            match fetch_proof(manifest, peer, member, small.0.tree_size, large.0.tree_size).await {
                Fetched::Proof(proof) => check_consistency_proof(&proof, &small.1, &large.1)
                    .map_err(|e| {
                        format!(
                            "the consistency proof from tree size {} to {} does not hold: {e}",
                            small.0.tree_size, large.0.tree_size
                        )
                    }),
                Fetched::Refused(why) => Err(format!(
                    "it cannot prove that its tree of size {} extends its tree of size {}: {why}",
                    large.0.tree_size, small.0.tree_size
                )),
                Fetched::Unreachable(why) => {
                    slow.fetch_failed = Some(Instant::now());
                    tracing::warn!(member = %member, reason = %Escaped(&why), "no consistency proof from a partner; its new head is taken on trust for now");
                    return Ok(());
                }
            }
        };
        slow.fetch_failed = None;
        match verdict {
            Ok(()) if head.tree_size > held.head.tree_size => {
                self.keep(member, slow, head, root).await
            }
            Ok(()) => {
                if slow.older.len() == KNOWN_OLDER {
                    slow.older.pop_front();
                }
                slow.older.push_back((head.tree_size, root));
                Ok(())
            }
            Err(reason) => {
                let fork = Fork {
                    member: member.to_string(),
                    detected_at: now_ms(),
                    reason: reason.clone(),
                    held: held.head.jws.clone(),
                    offered: head.jws.clone(),
                };
                tracing::error!(member = %member, reason = %Escaped(&reason), held_size = held.head.tree_size, offered_size = head.tree_size, "a partner's audit log forked or shrank: both heads kept as evidence");
                self.log.record_fork(&fork).await?;
                self.mark_forked(member, reason.clone());
                Err(WitnessError::Forked {
                    member: member.clone(),
                    reason,
                })
            }
        }
    }

    /// Keeps `head` as the newest from `member`: the older ones proven so far were proven
    /// against the previous newest, which `head` extends, so they stay.
    async fn keep(
        &self,
        member: &MemberId,
        slow: &mut Slow,
        head: SignedTreeHead,
        root: Hash,
    ) -> Result<(), WitnessError> {
        self.log
            .keep_witnessed(&Witnessed {
                member: member.to_string(),
                head: head.clone(),
                received_at: now_ms(),
            })
            .await?;
        if let Some(previous) = slow.newest.take() {
            if slow.older.len() == KNOWN_OLDER {
                slow.older.pop_front();
            }
            slow.older
                .push_back((previous.head.tree_size, previous.root));
        }
        metrics::gauge!("simpul_witness_tree_size", "member" => self.labels.member.clone(), "instance" => self.labels.instance.clone(), "peer" => member.to_string())
            .set(head.tree_size as f64);
        slow.newest = Some(Held { head, root });
        Ok(())
    }
}

/// `jws` as a tree head `member` signed with a key the manifest lists for it, inside the
/// key's window at the head's timestamp, naming its log; with its root.
pub(crate) fn verified(
    manifest: &Manifest,
    member: &MemberId,
    jws: &str,
) -> Result<(SignedTreeHead, Hash), WitnessError> {
    let bad = |why: String| WitnessError::BadHead(why);
    let parsed = ParsedJws::parse(jws, TREE_HEAD_TYP).map_err(|e| bad(e.to_string()))?;
    let kid = parsed.header.kid.as_deref().unwrap_or_default();
    let (owner, key) = manifest
        .key(kid)
        .ok_or_else(|| bad(format!("`{kid}` is not a key of the manifest")))?;
    if owner != member {
        return Err(bad(format!("signed by {owner}'s key, sent by {member}")));
    }
    let payload: TreeHeadPayload =
        contracts::json::from_slice(&parsed.payload).map_err(|e| bad(e.to_string()))?;
    // Signed inside the key's window: the head's timestamp, in seconds (PROTOCOL.md §1.5).
    manifest
        .key_at(kid, payload.timestamp.div_euclid(1000))
        .map_err(|e| bad(e.to_string()))?;
    let head = SignedTreeHead {
        member: payload.member,
        log: payload.log,
        tree_size: payload.tree_size,
        root_hash: payload.root_hash,
        timestamp: payload.timestamp,
        jws: jws.to_owned(),
    };
    let (_, root) = verify_tree_head(&head, key).map_err(|e| bad(e.to_string()))?;
    Ok((head, root))
}

enum Fetched {
    Proof(ConsistencyProof),
    /// The sender answered, and not with a proof.
    Refused(String),
    /// It could not be asked.
    Unreachable(String),
}

/// Asks `member`'s gateway for the consistency proof between two of its tree sizes.
async fn fetch_proof(
    manifest: &Manifest,
    peer: Option<&PeerClient>,
    member: &MemberId,
    first: u64,
    second: u64,
) -> Fetched {
    let (Some(peer), Some(listed)) = (peer, manifest.member(member)) else {
        return Fetched::Unreachable(format!("no client for {member}"));
    };
    let url = format!(
        "{}/v1/audit/consistency?first={first}&second={second}",
        listed.gateway.trim_end_matches('/')
    );
    let reply = match peer
        .call(
            Method::GET,
            &url,
            "application/json",
            bytes::Bytes::new(),
            FETCH_DEADLINE,
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return Fetched::Unreachable(e.to_string()),
    };
    if reply.status != http::StatusCode::OK {
        // Only "these sizes are not in my log" says anything about the log; a refusal of
        // any other kind (a limit, an outage) says nothing, and is tried again later.
        return match contracts::json::from_slice::<Problem>(&reply.body) {
            Ok(p) if p.code() == Some(ProblemCode::Malformed) && reply.status == 400 => {
                Fetched::Refused(p.detail)
            }
            _ => Fetched::Unreachable(format!("it answered {}", reply.status)),
        };
    }
    match contracts::json::from_slice::<ConsistencyProof>(&reply.body) {
        Ok(p) if p.first == first && p.second == second => Fetched::Proof(p),
        Ok(p) => Fetched::Refused(format!(
            "it answered a proof from {} to {}",
            p.first, p.second
        )),
        Err(e) => Fetched::Refused(format!("its answer is not a consistency proof: {e}")),
    }
}
