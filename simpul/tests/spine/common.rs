//! A real federation for tests: the demo configuration with ephemeral loopback ports, a dev
//! PKI, a signed manifest and a small synthetic population in a temporary directory, every
//! gateway serving real TLS on its federation, local and admin listeners.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contracts::envelope::{JOSE_MEDIA_TYPE, PROBLEM_MEDIA_TYPE, REQUEST_TYP};
use contracts::{Algorithm, ExchangeRequest, Identity, Manifest, MemberId, Problem, SigningKey};
use gateway::client::{CallError, PeerClient, Reply};
use gateway::config::Config;
use gateway::gateway::Gateway;
use gateway::layout::PkiLayout;
use gateway::tls::FederationTrust;
use http::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const KEMLU: &str = "ID:GOV:KEMLU";
pub const DUKCAPIL: &str = "ID:GOV:DUKCAPIL";
pub const BP2MI: &str = "ID:GOV:BP2MI";
pub const PEDULI: &str = "ID:GOV:KEMLU:PEDULI-WNI";
pub const SISKOP2MI: &str = "ID:GOV:BP2MI:SISKOP2MI";
pub const SIAK: &str = "ID:GOV:DUKCAPIL:SIAK";
pub const BPJSTK: &str = "ID:GOV:BPJSTK";

pub fn id(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

/// What a test does to a prepared federation before its gateways start.
pub type Hook = Box<dyn FnOnce(&Config) + Send>;

/// Options for a test federation.
#[derive(Default)]
pub struct Options {
    /// Members whose database file is removed before their gateway starts.
    pub remove_database_of: Vec<&'static str>,
    /// Text replacements applied to the test's config.toml (after the ports).
    pub edits: Vec<(String, String)>,
    /// Members that get a second replica, on its own port.
    pub replicas_of: Vec<&'static str>,
    /// Run once the federation is prepared (PKI, manifest, data), before any gateway starts.
    pub after_prepare: Option<Hook>,
    /// Members whose gateways the test runs itself (a `simpul serve` process): not started
    /// here, their addresses left free.
    pub not_started: Vec<&'static str>,
}

pub struct Federation {
    /// The federation's files, removed when the test ends.
    _dir: tempfile::TempDir,
    /// The federation's config.toml, written for the CLI to use.
    pub config_file: std::path::PathBuf,
    pub config: Config,
    pub manifest: Manifest,
    pub trust: FederationTrust,
    pub population: demo::population::Population,
    stops: HashMap<MemberId, (watch::Sender<bool>, JoinHandle<()>)>,
    /// Each member's running gateway (the latest started).
    pub gateways: HashMap<MemberId, Arc<Gateway>>,
    /// The URL of each member's second replica.
    pub replicas: HashMap<MemberId, String>,
}

/// The repository's config.toml with each `listen` replaced by a free loopback port, the
/// catalog path made absolute and a small population.
pub fn test_config(ports: &[(String, u16)]) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut text = std::fs::read_to_string(repo.join("config.toml")).unwrap();
    for (old, port) in ports {
        text = text.replace(old.as_str(), &format!("127.0.0.1:{port}"));
    }
    text = text.replace(
        "catalog = \"contracts/catalog\"",
        &format!(
            "catalog = {:?}",
            repo.join("contracts/catalog").display().to_string()
        ),
    );
    text.replace("people = 100000", "people = 3000")
}

/// The edit that gives Dukcapil `limits = { <fields> }` in place of the demo's (a TOML table
/// may not name `limits` twice).
pub fn dukcapil_limits(fields: &str) -> (String, String) {
    let seed = "seed = { dataset = \"residents\", database = \"data/dukcapil.db\" }";
    (
        format!("{seed}\nlimits = {{ max_connections = 256, max_connections_per_address = 64 }}"),
        format!("{seed}\nlimits = {{ {fields} }}"),
    )
}

impl Federation {
    pub async fn start() -> Federation {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Federation {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        let mut admin_listeners = Vec::new();
        let mut local_listeners = Vec::new();
        let mut ports = Vec::new();
        for (old, admin, local) in [
            ("7441", "7541", "7641"),
            ("7442", "7542", "7642"),
            ("7443", "7543", "7643"),
            ("7444", "7544", "7644"),
        ] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push((format!("127.0.0.1:{old}"), l.local_addr().unwrap().port()));
            listeners.push(l);
            let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push((format!("127.0.0.1:{admin}"), a.local_addr().unwrap().port()));
            admin_listeners.push(a);
            let o = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push((format!("127.0.0.1:{local}"), o.local_addr().unwrap().port()));
            local_listeners.push(o);
        }
        let mut text = test_config(&ports);
        for (old, new) in &options.edits {
            assert!(
                text.contains(old.as_str()),
                "the test config has no `{old}`"
            );
            text = text.replacen(old.as_str(), new, 1);
        }
        let config_file = dir.path().join("config.toml");
        std::fs::write(&config_file, &text).unwrap();
        let config = Config::parse(&text, "test config.toml", dir.path()).unwrap();
        let plan = demo::DemoPlan::from_config(&config).unwrap();
        let population = plan.population();
        demo::prepare(&config, &plan, &population).await.unwrap();
        for m in &options.remove_database_of {
            let target = plan.target(&id(m)).unwrap();
            std::fs::remove_file(&target.database).unwrap();
        }
        if let Some(hook) = options.after_prepare {
            hook(&config);
        }
        let mut stops = HashMap::new();
        let mut gateways = HashMap::new();
        let mut manifest = None;
        for (((m, listener), admin), local) in config
            .members
            .iter()
            .zip(listeners)
            .zip(admin_listeners)
            .zip(local_listeners)
        {
            if options.not_started.contains(&m.id.as_str()) {
                drop((listener, admin, local));
                continue;
            }
            let gw = Arc::new(Gateway::from_config(&config, &m.id).await.unwrap());
            manifest = Some(gw.manifest());
            gateways.insert(m.id.clone(), gw.clone());
            let (tx, rx) = watch::channel(false);
            if let Some(config) = gw.admin.clone() {
                tokio::spawn(gateway::admin::serve(gw.clone(), admin, config, rx.clone()));
            }
            tokio::spawn(gateway::local_server::serve(gw.clone(), local, rx.clone()));
            let task = tokio::spawn(gateway::server::serve(gw, listener, rx));
            stops.insert(m.id.clone(), (tx, task));
        }
        let mut replicas = HashMap::new();
        for m in &options.replicas_of {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!(
                "https://localhost:{}",
                listener.local_addr().unwrap().port()
            );
            // One gateway per SQLite audit store (replicas that share their log share a
            // PostgreSQL store): this replica keeps a log of its own, pinned apart.
            let mut own = config.clone();
            let member = own.members.iter_mut().find(|x| x.id == id(m)).unwrap();
            let stem = id(m).file_stem();
            member.audit.store = format!("data/audit-{stem}-replica.db");
            member.audit.pinned_head = Some(format!("data/audit-{stem}-replica.head.json"));
            let gw = Arc::new(Gateway::from_config(&own, &id(m)).await.unwrap());
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(gateway::server::serve(gw, listener, rx));
            stops.insert(id(&format!("{m}:REPLICA")), (tx, task));
            replicas.insert(id(m), url);
        }
        let manifest = manifest.unwrap();
        let trust = FederationTrust::load(&manifest.doc().ca, &config.federation.crl).unwrap();
        Federation {
            _dir: dir,
            config_file,
            config,
            manifest,
            trust,
            population,
            stops,
            gateways,
            replicas,
        }
    }

    /// Stops one member's gateway and waits until it no longer listens.
    pub async fn stop(&mut self, member: &str) {
        let (tx, task) = self.stops.remove(&id(member)).unwrap();
        tx.send(true).unwrap();
        task.await.unwrap();
        // Dropped, it lets go of its audit store's journal (one gateway per SQLite store).
        self.gateways.remove(&id(member));
    }

    /// Starts a stopped member's gateway again, on its configured addresses, with its admin
    /// and local listeners if it has them.
    pub async fn restart(&mut self, member: &str) {
        // The stopped gateway lets go of its audit store's journal once it is dropped.
        self.gateways.remove(&id(member));
        let mc = self.config.member(&id(member)).unwrap();
        let listener = TcpListener::bind(mc.listen).await.unwrap();
        let gw = Arc::new(
            Gateway::from_config(&self.config, &id(member))
                .await
                .unwrap(),
        );
        let (tx, rx) = watch::channel(false);
        if let Some(config) = gw.admin.clone() {
            let admin = rebind(config.listen).await;
            tokio::spawn(gateway::admin::serve(gw.clone(), admin, config, rx.clone()));
        }
        if let Some(local) = &mc.local {
            let local = rebind(local.listen).await;
            tokio::spawn(gateway::local_server::serve(gw.clone(), local, rx.clone()));
        }
        self.gateways.insert(id(member), gw.clone());
        let task = tokio::spawn(gateway::server::serve(gw, listener, rx));
        self.stops.insert(id(member), (tx, task));
    }

    /// `member`'s running gateway.
    pub fn gateway(&self, member: &str) -> Arc<Gateway> {
        self.gateways[&id(member)].clone()
    }

    /// The federation authority's signing key.
    pub fn authority(&self) -> SigningKey {
        let pem = std::fs::read(self.layout().authority_key()).unwrap();
        SigningKey::from_pem(Algorithm::ES256, "ID:GOV:SIMPUL", &pem).unwrap()
    }

    /// The Prometheus text of `member`'s admin listener, fetched with its OPS operator's
    /// certificate.
    pub async fn metrics(&self, member: &str) -> String {
        let reply = self
            .admin_call(
                member,
                &format!("operator:{member}:OPS"),
                http::Method::GET,
                "/metrics",
                Bytes::new(),
            )
            .await;
        assert_ok(&reply);
        String::from_utf8(reply.body.to_vec()).unwrap()
    }

    /// A GET of `path` on `member`'s auditor face, with its `AUDIT` auditor's certificate.
    pub async fn audit_get(&self, member: &str, path: &str) -> Reply {
        let auditor = format!("auditor:{member}:AUDIT");
        self.admin_call(member, &auditor, http::Method::GET, path, Bytes::new())
            .await
    }

    /// The records `member` holds for `exchange_id`, read through its auditor face.
    pub async fn records(&self, member: &str, exchange_id: &str) -> Vec<Value> {
        let path = format!("/audit/inclusion?exchange_id={exchange_id}");
        let reply = self.audit_get(member, &path).await;
        if reply.status == 404 {
            return Vec::new();
        }
        let body: Value = ok_json(&reply);
        body["proofs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["record"].clone())
            .collect()
    }

    /// The first 1,000 records of `member`'s log, read through its auditor face.
    pub async fn all_records(&self, member: &str) -> Vec<Value> {
        let reply = self
            .audit_get(member, "/audit/records?from=0&to=1000")
            .await;
        let body: Value = ok_json(&reply);
        body["records"].as_array().unwrap().clone()
    }

    /// Peduli WNI asks Kemlu's local face for the citizenship of someone known to all four
    /// ministries; the answer must be a 200.
    pub async fn ask_citizenship(&self) -> contracts::envelope::LocalAnswer {
        ok_json(&self.ask_citizenship_reply().await)
    }

    /// [`Federation::ask_citizenship`], whatever the answer.
    pub async fn ask_citizenship_reply(&self) -> Reply {
        let nik = self.population.sample_in_all_four();
        self.local_query(PEDULI, KEMLU, "citizenship.status", citizen_protection(nik))
            .await
    }

    /// A call to `member`'s admin listener presenting `identity`'s client certificate.
    pub async fn admin_call(
        &self,
        member: &str,
        identity: &str,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Reply {
        self.try_admin_call(member, identity, method, path, body)
            .await
            .unwrap()
    }

    /// [`Federation::admin_call`], with a refused handshake as an error.
    pub async fn try_admin_call(
        &self,
        member: &str,
        identity: &str,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let admin = self
            .config
            .member(&id(member))
            .unwrap()
            .admin
            .clone()
            .unwrap();
        let url = format!("https://localhost:{}{path}", admin.listen.port());
        self.as_identity(identity, member)
            .call(
                method,
                &url,
                "application/json",
                body,
                Duration::from_secs(10),
            )
            .await
    }

    /// A client presenting the certificate of `identity` (a subsystem, an operator or an
    /// auditor, from its member's CA; a member's gateway), talking to `to`'s gateway.
    pub fn as_identity(&self, identity: &str, to: &str) -> PeerClient {
        let l = self.layout();
        let (cert, key) = match Identity::parse(identity).unwrap() {
            Identity::Staff(s) => (l.staff_cert(&s), l.staff_key(&s)),
            Identity::Subsystem(s) => (l.client_cert(&s), l.client_key(&s)),
            Identity::Member(m) => (l.gateway_cert(&m), l.gateway_key(&m)),
        };
        // The metrics recorder is one per test process, so `/metrics` holds the series of
        // every federation the process has started: over 1 MiB in a full run.
        PeerClient::from_files(&self.trust, &cert, &key, id(to), 64 << 20).unwrap()
    }

    /// The URL of `member`'s local listener.
    pub fn local_url(&self, member: &str) -> String {
        self.config
            .member(&id(member))
            .unwrap()
            .local
            .as_ref()
            .unwrap()
            .url()
    }

    /// The value of one counter of `member`'s gateway, summed over series matching `labels`.
    pub async fn counter(&self, member: &str, name: &str, labels: &[&str]) -> f64 {
        let instance = format!(
            "instance=\"{}\"",
            self.config.member(&id(member)).unwrap().listen
        );
        let member_label = format!("member=\"{}\"", id(member));
        self.metrics(member)
            .await
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&instance))
            // The recorder is the test process's: a gateway of an earlier federation that
            // listened on the same port still has its series there, under its own member.
            .filter(|l| !l.contains("member=\"") || l.contains(&member_label))
            .filter(|l| labels.iter().all(|want| l.contains(want)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The directory of the federation's databases, audit stores included.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.config.resolve(Path::new("data"))
    }

    /// `member`'s gateway certificate chain and its key, as a TLS configuration takes them.
    pub fn gateway_identity(
        &self,
        member: &str,
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let l = self.layout();
        tls_identity(&l.gateway_cert(&id(member)), &l.gateway_key(&id(member)))
    }

    /// The federation's CAs as a root store.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.trust.cas {
            roots.add(ca.clone()).unwrap();
        }
        roots
    }

    pub fn layout(&self) -> PkiLayout {
        self.config.federation.pki.clone()
    }

    pub fn url(&self, member: &str) -> String {
        self.config.member(&id(member)).unwrap().gateway.clone()
    }

    pub fn signing_key(&self, member: &str) -> SigningKey {
        let pem = std::fs::read(self.layout().signing_key(&id(member))).unwrap();
        SigningKey::from_pem(Algorithm::ES256, member, &pem).unwrap()
    }

    /// A client presenting `member`'s gateway certificate, talking to `to`.
    pub fn as_gateway(&self, member: &str, to: &str) -> PeerClient {
        let l = self.layout();
        PeerClient::from_files(
            &self.trust,
            &l.gateway_cert(&id(member)),
            &l.gateway_key(&id(member)),
            id(to),
            1 << 20,
        )
        .unwrap()
    }

    /// A client presenting `subsystem`'s certificate, talking to `to`.
    pub fn as_subsystem(&self, subsystem: &str, to: &str) -> PeerClient {
        let l = self.layout();
        PeerClient::from_files(
            &self.trust,
            &l.client_cert(&id(subsystem)),
            &l.client_key(&id(subsystem)),
            id(to),
            1 << 20,
        )
        .unwrap()
    }

    /// A valid request from `from` to `to`.
    pub fn request(
        &self,
        from: &str,
        to: &str,
        contract: &str,
        purpose: &str,
        query: Value,
    ) -> ExchangeRequest {
        let now = contracts::unix_now();
        ExchangeRequest {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            iss: id(from),
            sub: None,
            aud: id(to),
            contract: contract.to_owned(),
            version: "1".to_owned(),
            purpose: purpose.to_owned(),
            iat: now,
            exp: now + 60,
            query,
        }
    }

    /// `from` asking `to` for `purpose` about someone known to all four ministries.
    pub fn nik_request(
        &self,
        from: &str,
        to: &str,
        contract: &str,
        purpose: &str,
    ) -> ExchangeRequest {
        let nik = self.population.sample_in_all_four();
        self.request(from, to, contract, purpose, json!({ "nik": nik }))
    }

    /// `member`'s gateway sends `request`, signed with its own key.
    pub async fn send_signed(&self, member: &str, request: &ExchangeRequest) -> Reply {
        self.exchange(member, self.sign(member, request), request)
            .await
    }

    /// Kemlu asking Dukcapil about a registered person, for citizen protection.
    pub fn citizenship_request(&self) -> ExchangeRequest {
        self.request(
            KEMLU,
            DUKCAPIL,
            "citizenship.status",
            "citizen-protection",
            json!({"nik": self.population.sample_in_all_four()}),
        )
    }

    /// Signs a request with `member`'s key.
    pub fn sign(&self, member: &str, request: &ExchangeRequest) -> String {
        self.signing_key(member)
            .sign(REQUEST_TYP, &serde_json::to_vec(request).unwrap())
            .unwrap()
    }

    /// POSTs `body` to `to`'s exchange endpoint for `path_contract`, presenting `cert_of`'s
    /// gateway certificate.
    pub async fn post_exchange(
        &self,
        cert_of: &str,
        to: &str,
        path_contract: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Reply {
        let url = format!("{}/v1/exchange/{path_contract}/1", self.url(to));
        self.as_gateway(cert_of, to)
            .call(
                Method::POST,
                &url,
                content_type,
                body.into(),
                Duration::from_secs(10),
            )
            .await
            .unwrap()
    }

    /// Sends a signed request the normal way: Kemlu's certificate, the request's own contract.
    pub async fn exchange(&self, cert_of: &str, jws: String, request: &ExchangeRequest) -> Reply {
        self.post_exchange(
            cert_of,
            request.aud.as_str(),
            &request.contract,
            JOSE_MEDIA_TYPE,
            jws,
        )
        .await
    }

    /// POSTs a local-face query to `member`'s local listener presenting `subsystem`'s
    /// certificate.
    pub async fn local_query(
        &self,
        subsystem: &str,
        member: &str,
        contract: &str,
        body: Value,
    ) -> Reply {
        self.local_query_with(subsystem, member, contract, &[], body)
            .await
    }

    /// [`Federation::local_query`] with further request headers.
    pub async fn local_query_with(
        &self,
        subsystem: &str,
        member: &str,
        contract: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Reply {
        self.try_local_query_with(subsystem, member, contract, headers, body)
            .await
            .unwrap()
    }

    /// [`Federation::local_query`] as any identity, with a refused handshake as an error.
    pub async fn try_local_query(
        &self,
        identity: &str,
        member: &str,
        contract: &str,
        body: Value,
    ) -> Result<Reply, CallError> {
        self.try_local_query_with(identity, member, contract, &[], body)
            .await
    }

    /// [`Federation::try_local_query`] with further request headers.
    pub async fn try_local_query_with(
        &self,
        identity: &str,
        member: &str,
        contract: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Result<Reply, CallError> {
        let url = format!("{}/v1/query/{contract}/1", self.local_url(member));
        self.as_identity(identity, member)
            .call_with(
                Method::POST,
                &url,
                "application/json",
                headers,
                serde_json::to_vec(&body).unwrap().into(),
                Duration::from_secs(10),
            )
            .await
    }
}

/// Binds `addr` again once a stopped listener has let go of it (as it finishes draining).
async fn rebind(addr: std::net::SocketAddr) -> TcpListener {
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("{addr} is not free again")
}

/// Asserts `reply` is a 200, showing its body otherwise.
pub fn assert_ok(reply: &Reply) {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// The JSON body of a 200 reply.
pub fn ok_json<T: serde::de::DeserializeOwned>(reply: &Reply) -> T {
    assert_ok(reply);
    serde_json::from_slice(&reply.body).unwrap()
}

/// A local-face body asking about `nik` for citizen protection.
pub fn citizen_protection(nik: &str) -> Value {
    json!({"purpose": "citizen-protection", "query": {"nik": nik}})
}

/// The problem document of a refusal, after checking its media type, status and code.
#[track_caller]
pub fn assert_problem(reply: &Reply, status: u16, code: &str) -> Problem {
    let ct = reply
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status.as_u16(), status, "status; body: {body}");
    assert_eq!(ct, PROBLEM_MEDIA_TYPE, "content type; body: {body}");
    let p: Problem = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        p.type_uri,
        format!("urn:simpul:error:{code}"),
        "problem type; detail: {}",
        p.detail
    );
    assert_eq!(p.status, status);
    assert!(!p.title.is_empty() && !p.detail.is_empty());
    p
}

/// True when the error is the connection being refused or broken (a TLS refusal).
pub fn is_refused(e: &CallError) -> bool {
    matches!(e, CallError::Unreachable { .. })
}

/// A PEM certificate chain and its PEM private key, as a TLS configuration takes them.
pub fn tls_identity(
    cert: &Path,
    key: &Path,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (
        chain,
        rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap(),
    )
}
