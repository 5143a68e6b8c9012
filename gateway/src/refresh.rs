//! The manifest, the CRLs and the gateway's own keys at run time: on every refresh
//! (`federation.refresh_s`, SIGHUP, [`Gateway::reload`]) the gateway reads them again — the
//! manifest and the CRLs from the authority's URLs when configured, else from their files —
//! and, when a peer states a newer manifest serial in [`MANIFEST_SERIAL_HEADER`], fetches
//! that peer's `GET /v1/manifest`. A manifest is adopted only if it verifies under the
//! pinned authority key, has not expired, is not older than the one held, is this
//! federation's, lists this member and lists the signing key this gateway uses under it.
//! Whatever is adopted is built into a new [`Snapshot`] and swapped in at once; exchanges in
//! flight keep the snapshot they loaded. Whatever fails keeps what is held, with an error
//! line and a count in `simpul_refresh_errors_total`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use contracts::envelope::JOSE_MEDIA_TYPE;
use contracts::{Manifest, MemberId};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use tokio::sync::{mpsc, watch};

use crate::escaped::Escaped;
use crate::gateway::Gateway;
use crate::metrics::Labels;
use crate::snapshot::{self, MANIFEST_SERIAL_HEADER, OwnKeys, Snapshot, Sources};
use crate::tls::FederationTrust;

/// The longest a manifest or CRL fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest manifest or CRL body a fetch reads.
pub const MAX_FETCH_BYTES: usize = 1 << 20;
/// How many hints of newer manifests wait for the refresher at most; more are dropped.
const HINTS: usize = 16;

/// What a refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// The serial of the manifest held after it.
    pub serial: u64,
    /// Whether it adopted a new manifest.
    pub adopted: bool,
    /// What it refused or could not read, each kept as it was (also logged as errors).
    pub problems: Vec<String>,
}

/// Where a manifest came from.
#[derive(Clone, Debug)]
enum Origin {
    /// `federation.manifest`.
    File,
    /// `federation.manifest_url`.
    Url,
    /// A peer's `GET /v1/manifest`.
    Peer(MemberId),
    /// [`Gateway::offer_manifest`].
    Offered,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File => f.write_str("file"),
            Origin::Url => f.write_str("url"),
            Origin::Peer(p) => write!(f, "peer {p}"),
            Origin::Offered => f.write_str("offered"),
        }
    }
}

/// A gateway's refreshing: one refresh at a time, the hints of newer manifests from peers,
/// the manifest series.
pub(crate) struct Refresh {
    one_at_a_time: tokio::sync::Mutex<()>,
    /// The highest serial each peer was asked for: at most one fetch per peer and serial.
    asked: Mutex<HashMap<MemberId, u64>>,
    /// The serial each peer last stated, and when: what the command centre shows of it.
    heard: std::sync::RwLock<HashMap<MemberId, Arc<Heard>>>,
    hints: mpsc::Sender<(MemberId, u64)>,
    waiting: Mutex<Option<mpsc::Receiver<(MemberId, u64)>>>,
    serial: metrics::Gauge,
    expires: metrics::Gauge,
    certificate_expires: metrics::Gauge,
    labels: Labels,
}

impl Refresh {
    pub(crate) fn new(labels: &Labels) -> Self {
        let (hints, waiting) = mpsc::channel(HINTS);
        Refresh {
            one_at_a_time: tokio::sync::Mutex::new(()),
            asked: Mutex::new(HashMap::new()),
            heard: std::sync::RwLock::new(HashMap::new()),
            hints,
            waiting: Mutex::new(Some(waiting)),
            serial: metrics::gauge!("simpul_manifest_serial", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            expires: metrics::gauge!("simpul_manifest_expires_seconds", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            certificate_expires: metrics::gauge!("simpul_certificate_expires_seconds", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            labels: labels.clone(),
        }
    }

    /// Sets the manifest and certificate series from `snapshot` and warns when its manifest
    /// or this gateway's own certificate expires within `federation.expiry_warning_days`, or
    /// has expired.
    pub(crate) fn publish(&self, snapshot: &Snapshot, src: &Sources) {
        let now = contracts::unix_now();
        if let Some(not_after) = snapshot.chain.first().and_then(not_after) {
            let left = not_after.saturating_sub(now);
            self.certificate_expires.set(left as f64);
            let cert = src.cert.display();
            if left <= 0 {
                tracing::error!(member = %src.member, certificate = %cert, not_after, "this gateway's certificate has expired: every peer refuses it; renew it (`simpul pki renew --member`, or a new request to the authority) and send SIGHUP");
            } else if (left as u64) < src.expiry_warning.as_secs() {
                tracing::warn!(member = %src.member, certificate = %cert, not_after, seconds_left = left, "this gateway's certificate expires soon: renew it (`simpul pki renew --member`, or a new request to the authority) and send SIGHUP");
            }
        }
        let doc = snapshot.manifest.doc();
        let left = doc.expires_at.saturating_sub(now);
        self.serial.set(doc.serial as f64);
        self.expires.set(left as f64);
        if left <= 0 {
            tracing::error!(member = %src.member, serial = doc.serial, expires_at = doc.expires_at, "the manifest has expired: every exchange is refused (manifest-expired) until the authority's next manifest is adopted");
        } else if (left as u64) < src.expiry_warning.as_secs() {
            tracing::warn!(member = %src.member, serial = doc.serial, expires_at = doc.expires_at, seconds_left = left, "the manifest expires soon: the authority must publish the next one");
        }
    }

    fn error(&self, part: &'static str) {
        metrics::counter!("simpul_refresh_errors_total", "member" => self.labels.member.clone(), "instance" => self.labels.instance.clone(), "part" => part).increment(1);
    }

    fn refused(&self, reason: &'static str) {
        metrics::counter!("simpul_manifest_refused_total", "member" => self.labels.member.clone(), "instance" => self.labels.instance.clone(), "reason" => reason).increment(1);
    }
}

/// A certificate's `notAfter`, in Unix seconds; `None` if it does not parse (a certificate
/// the snapshot holds has been parsed and verified already).
fn not_after(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

/// The manifest serial a peer last stated, and when (Unix milliseconds).
#[derive(Default)]
pub(crate) struct Heard {
    serial: AtomicU64,
    at_ms: AtomicI64,
}

impl Refresh {
    /// Notes that `peer` stated `serial` now: on every exchange with it, so without a write
    /// lock once the peer is known.
    fn heard(&self, peer: &MemberId, serial: u64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let known = self
            .heard
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .cloned();
        let heard = match known {
            Some(h) => h,
            None => self
                .heard
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(peer.clone())
                .or_default()
                .clone(),
        };
        heard.serial.store(serial, Ordering::Relaxed);
        heard.at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Each peer heard from, with the serial it last stated and when (Unix milliseconds).
    pub(crate) fn heard_from(&self) -> Vec<(MemberId, u64, i64)> {
        let mut all: Vec<_> = self
            .heard
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(m, h)| {
                (
                    m.clone(),
                    h.serial.load(Ordering::Relaxed),
                    h.at_ms.load(Ordering::Relaxed),
                )
            })
            .collect();
        all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        all
    }
}

/// The serial a peer states in [`MANIFEST_SERIAL_HEADER`]: one header, decimal digits.
pub(crate) fn stated_serial(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(MANIFEST_SERIAL_HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?;
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A problem of one part of a refresh: logged, counted, kept for the caller.
struct Problems<'a> {
    refresh: &'a Refresh,
    member: &'a MemberId,
    out: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, part: &'static str, message: String) {
        tracing::error!(member = %self.member, part, error = %Escaped(&message), "refresh: kept what is held");
        self.refresh.error(part);
        self.out.push(format!("{part}: {message}"));
    }
}

impl Gateway {
    /// Reads the manifest, the CRLs and this gateway's own keys again (from the authority's
    /// URLs, when configured) and adopts what verifies; what does not is logged and the held
    /// one kept. SIGHUP and the refresh interval call this.
    pub async fn reload(&self) -> Refreshed {
        self.refresh_with(None).await
    }

    /// Offers `jws` as a manifest, as a peer's `GET /v1/manifest` would: adopted only if it
    /// verifies and is newer than the held one.
    pub async fn offer_manifest(&self, jws: &str) -> Refreshed {
        match Manifest::verify(jws, &self.sources.authority, contracts::unix_now()) {
            Ok(m) => self.refresh_with(Some((m, Origin::Offered))).await,
            Err(e) => {
                self.refresh.refused("invalid");
                let snap = self.snapshot();
                Refreshed {
                    serial: snap.serial(),
                    adopted: false,
                    problems: vec![format!("manifest: {e}")],
                }
            }
        }
    }

    /// Notes that `peer` states it holds manifest `serial`: if that is newer than the held
    /// one and `peer` was not asked for it yet, the refresher fetches it (never on the
    /// request's own path).
    pub(crate) fn hint(&self, peer: &MemberId, serial: u64, held: u64) {
        self.refresh.heard(peer, serial);
        if serial <= held {
            return;
        }
        {
            let mut asked = self
                .refresh
                .asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = asked.entry(peer.clone()).or_insert(0);
            if *last >= serial {
                return;
            }
            *last = serial;
        }
        if self.refresh.hints.try_send((peer.clone(), serial)).is_err() {
            tracing::debug!(member = %self.member, peer = %peer, serial, "a newer manifest hint was dropped: the refresher is busy");
        }
    }

    /// Fetches `peer`'s manifest (it stated serial `serial`) and adopts it if it verifies
    /// and is newer than the held one.
    async fn adopt_from_peer(&self, peer: &MemberId, serial: u64) {
        let snap = self.snapshot();
        if serial <= snap.serial() {
            return;
        }
        let (Some(client), Some(listed)) = (snap.peers.get(peer), snap.manifest.member(peer))
        else {
            return;
        };
        let url = format!("{}/v1/manifest", listed.gateway.trim_end_matches('/'));
        let fetched = client
            .call(
                Method::GET,
                &url,
                JOSE_MEDIA_TYPE,
                Bytes::new(),
                FETCH_TIMEOUT,
            )
            .await;
        let text = match fetched {
            Ok(reply) if reply.status == StatusCode::OK => {
                String::from_utf8(reply.body.to_vec()).map_err(|_| "not UTF-8".to_owned())
            }
            Ok(reply) => Err(format!("answered {}", reply.status)),
            Err(e) => Err(e.to_string()),
        };
        let manifest = text.and_then(|text| {
            Manifest::verify(&text, &self.sources.authority, contracts::unix_now())
                .map_err(|e| e.to_string())
        });
        match manifest {
            Ok(m) => {
                let done = self
                    .refresh_with(Some((m, Origin::Peer(peer.clone()))))
                    .await;
                tracing::debug!(member = %self.member, peer = %peer, serial = done.serial, adopted = done.adopted, "manifest offered by a peer");
            }
            Err(e) => {
                self.refresh.refused("invalid");
                tracing::warn!(member = %self.member, peer = %peer, stated = serial, error = %Escaped(&e), "a peer's manifest was refused");
            }
        }
    }

    /// Runs the refresher until `shutdown`: a refresh every `federation.refresh_s`, and the
    /// fetch of each newer manifest a peer stated. Runs once per gateway (a second call
    /// returns at once).
    pub async fn refresh_until(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let waiting = self
            .refresh
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut hints) = waiting else {
            return;
        };
        let every = self.sources.refresh;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.reload().await;
                }
                Some((peer, serial)) = hints.recv() => {
                    self.adopt_from_peer(&peer, serial).await;
                }
                _ = shutdown.changed() => break,
            }
        }
    }

    async fn refresh_with(&self, offered: Option<(Manifest, Origin)>) -> Refreshed {
        let _one = self.refresh.one_at_a_time.lock().await;
        let src = &self.sources;
        let held = self.snapshot();
        let mut problems = Problems {
            refresh: &self.refresh,
            member: &self.member,
            out: Vec::new(),
        };

        // The manifest.
        let candidate = match offered {
            Some(o) => Some(o),
            None => match self.read_manifest().await {
                Ok(o) => Some(o),
                Err(e) => {
                    self.refresh.refused("invalid");
                    problems.add("manifest", e);
                    None
                }
            },
        };
        let mut manifest = held.manifest.clone();
        let mut origin = Origin::File;
        if let Some((m, from)) = candidate {
            let (offered, holding) = (m.doc().serial, held.serial());
            if offered < holding {
                self.refresh.refused("rollback");
                problems.add(
                    "manifest",
                    format!("{from} offers serial {offered}, older than the held {holding}: refused as a rollback"),
                );
            } else if offered == holding {
                if m.jws() != held.manifest.jws() {
                    self.refresh.refused("same-serial");
                    problems.add(
                        "manifest",
                        format!(
                            "{from} offers another manifest with the held serial {holding}: refused"
                        ),
                    );
                }
            } else {
                manifest = m;
                origin = from;
            }
        }
        let new_manifest = manifest.jws() != held.manifest.jws();

        // The CRLs, against the CAs of the manifest they will be used with.
        let trust = match self.read_crls(&manifest).await {
            Ok(t) => t,
            Err(e) if new_manifest => {
                problems.add(
                    "crl",
                    format!(
                        "{e}; the manifest (serial {}) is not adopted without its CRLs",
                        manifest.doc().serial
                    ),
                );
                manifest = held.manifest.clone();
                match self.read_crls(&manifest).await {
                    Ok(t) => t,
                    Err(_) => held.trust.clone(),
                }
            }
            Err(e) => {
                problems.add("crl", e);
                held.trust.clone()
            }
        };

        // The signing key: a new one only if the manifest lists it under this member.
        let listed = |kid: &str| {
            manifest
                .key_at(kid, contracts::unix_now())
                .is_ok_and(|(owner, _)| owner == &self.member)
        };
        let signing = match snapshot::read_signing_key(src) {
            Ok(k) if k.kid() == held.signing.kid() => held.signing.clone(),
            Ok(k) if listed(k.kid()) => Arc::new(k),
            Ok(k) => {
                problems.add(
                    "signing_key",
                    format!(
                        "{}: the key {} is not among {}'s keys in the manifest (serial {}), or may not sign now: the held key {} stays in use",
                        src.signing,
                        k.kid(),
                        self.member,
                        manifest.doc().serial,
                        held.signing.kid()
                    ),
                );
                held.signing.clone()
            }
            Err(e) => {
                problems.add("signing_key", e.to_string());
                held.signing.clone()
            }
        };

        // The TLS certificate and key; the held ones if the files cannot be used.
        let (chain, key, new_tls) = match snapshot::read_tls_identity(src) {
            Ok((chain, key)) => {
                let changed = chain != held.chain;
                (chain, key, changed)
            }
            Err(e) => {
                problems.add("certificate", e.to_string());
                (held.chain.clone(), held.key.clone_key(), false)
            }
        };

        let build = |manifest: Manifest, trust: FederationTrust, chain, key| {
            snapshot::build(
                src,
                &self.catalog,
                &self.labels,
                manifest,
                trust,
                OwnKeys {
                    signing: signing.clone(),
                    chain,
                    key,
                },
                Some(&held),
            )
        };
        let built = match build(manifest.clone(), trust.clone(), chain, key) {
            Err(e) if new_tls => {
                problems.add(
                    "certificate",
                    format!("{e}; the held certificate stays in use"),
                );
                build(
                    manifest.clone(),
                    trust.clone(),
                    held.chain.clone(),
                    held.key.clone_key(),
                )
            }
            other => other,
        };
        let built = match built {
            Err(e) if new_manifest => {
                self.refresh.refused("inconsistent");
                problems.add("manifest", format!("serial {}: {e}", manifest.doc().serial));
                // The rest (CRLs, keys) may still be adoptable under the held manifest.
                match self.read_crls(&held.manifest).await {
                    Ok(t) => build(
                        held.manifest.clone(),
                        t,
                        held.chain.clone(),
                        held.key.clone_key(),
                    ),
                    Err(e) => Err(crate::assemble::StartError::Inconsistent(e)),
                }
            }
            other => other,
        };
        let next = match built {
            Ok(next) => next,
            Err(e) => {
                problems.add("snapshot", e.to_string());
                self.refresh.publish(&held, src);
                return Refreshed {
                    serial: held.serial(),
                    adopted: false,
                    problems: problems.out,
                };
            }
        };

        // The serial is held before the manifest is used: a restart never goes back.
        let adopted = next.serial() > held.serial();
        if adopted {
            if let Err(e) = crate::assemble::hold_serial(src, &self.audit, next.serial()).await {
                problems.add("serial", format!("{e}; the manifest is not adopted"));
                self.refresh.publish(&held, src);
                return Refreshed {
                    serial: held.serial(),
                    adopted: false,
                    problems: problems.out,
                };
            }
            if !matches!(origin, Origin::File) {
                // The next start begins from it.
                let tmp = src
                    .manifest
                    .with_extension(format!("{}.tmp", self.member.file_stem()));
                if let Err(e) = std::fs::write(&tmp, next.manifest.jws())
                    .and_then(|()| std::fs::rename(&tmp, &src.manifest))
                {
                    tracing::warn!(member = %self.member, file = %src.manifest.display(), error = %e, "the adopted manifest could not be written to its file");
                }
            }
        }
        self.consumer.breakers.add_members(&next.manifest);
        let rotated = next.signing.kid() != held.signing.kid();
        if rotated {
            self.audit.set_signing_key(next.signing.clone());
        }
        let next = Arc::new(next);
        self.snapshot.store(next.clone());
        if rotated {
            tracing::info!(member = %self.member, kid = %next.signing.kid(), previous = %held.signing.kid(), "signing key rotated");
            // The log's newest head under the key now in use.
            if let Err(e) = self.audit.sign_tree_head().await {
                tracing::error!(member = %self.member, error = %e, "no tree head could be signed with the new key");
            }
        }
        if adopted {
            tracing::info!(member = %self.member, serial = next.serial(), previous = held.serial(), origin = %origin, "manifest adopted");
        }
        self.refresh.publish(&next, src);
        Refreshed {
            serial: next.serial(),
            adopted,
            problems: problems.out,
        }
    }

    /// The manifest from `federation.manifest_url`, or else its file, verified.
    async fn read_manifest(&self) -> Result<(Manifest, Origin), String> {
        let src = &self.sources;
        let (text, origin) = match &src.manifest_url {
            Some(url) => {
                let snap = self.snapshot();
                let bytes = fetch(url, &snap.trust).await?;
                let text =
                    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{url}: not UTF-8"))?;
                (text, Origin::Url)
            }
            None => {
                let text = tokio::fs::read_to_string(&src.manifest)
                    .await
                    .map_err(|e| format!("{}: {e}", src.manifest.display()))?;
                (text, Origin::File)
            }
        };
        let where_ = match &origin {
            Origin::Url => src.manifest_url.clone().unwrap_or_default(),
            _ => src.manifest.display().to_string(),
        };
        Manifest::verify(&text, &src.authority, contracts::unix_now())
            .map(|m| (m, origin))
            .map_err(|e| format!("{where_}: {e}"))
    }

    /// The CRLs (from `federation.crl_url`, written to `federation.crl` once they verify,
    /// or else from that file), checked against the CAs of `manifest`.
    async fn read_crls(&self, manifest: &Manifest) -> Result<FederationTrust, String> {
        let src = &self.sources;
        if let Some(url) = &src.crl_url {
            let bytes = fetch(url, &self.snapshot().trust).await?;
            let tmp = src
                .crl
                .with_extension(format!("{}.tmp", self.member.file_stem()));
            std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
            match FederationTrust::load(&manifest.doc().ca, &tmp) {
                Ok(t) => {
                    std::fs::rename(&tmp, &src.crl)
                        .map_err(|e| format!("{}: {e}", src.crl.display()))?;
                    return Ok(t);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!("{url}: {e}"));
                }
            }
        }
        FederationTrust::load(&manifest.doc().ca, &src.crl).map_err(|e| e.to_string())
    }
}

/// GETs `url` over HTTPS, bounded in time and size. The server is trusted if its
/// certificate chains to one of the federation's CAs (`trust`) or to a root of the Mozilla
/// program (webpki-roots), without a client certificate: what it serves is
/// self-authenticating (the manifest by the authority's signature, each CRL by its CA's),
/// so the transport only keeps the fetch private and current.
async fn fetch(url: &str, trust: &FederationTrust) -> Result<Bytes, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for ca in &trust.cas {
        roots
            .add(ca.clone())
            .map_err(|e| format!("{url}: a federation CA cannot be trusted: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("{url}: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(https);
    let request = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {}", crate::client::error_chain(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(format!("{url}: answered {}", response.status()));
        }
        Limited::new(response.into_body(), MAX_FETCH_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("{url}: {e}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("{url}: no answer within {FETCH_TIMEOUT:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(MANIFEST_SERIAL_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_stated_serial_is_one_header_of_decimal_digits() {
        assert_eq!(stated_serial(&HeaderMap::new()), None);
        assert_eq!(stated_serial(&with(&["7"])), Some(7));
        assert_eq!(
            stated_serial(&with(&["18446744073709551615"])),
            Some(u64::MAX)
        );
        for bad in [
            &["7", "8"][..],
            &[""][..],
            &["+7"][..],
            &["-1"][..],
            &["0x10"][..],
            &[" 7"][..],
            &["18446744073709551616"][..],
            &["000000000000000000007"][..],
        ] {
            assert_eq!(stated_serial(&with(bad)), None, "{bad:?}");
        }
    }
}
