//! HTTPS (rustls) front end: configuration, TLS material, routes, cookies, admin auth.
//!
//! | method, path | auth | |
//! |---|---|---|
//! | POST `/kbs/v0/auth` | none | `Request` -> `Challenge` + `Set-Cookie: kbs-session-id` |
//! | POST `/kbs/v0/attest` | cookie | `Attestation` -> `{"token": <EdDSA JWT>}` |
//! | GET `/kbs/v0/resource/<repo>/<type>/<tag>` | cookie or bearer token | JWE |
//! | POST `/kbs/v0/resource/<repo>/<type>/<tag>` | admin | raw bytes: set the resource |
//! | POST/GET `/kbs/v0/resource-policy[/<repo>/<type>/<tag>]` | admin | `{"policy": b64url}` |
//! | GET `/kbs/v0/admin/resources` | admin | `{"resources": [...]}` |
//! | GET `/healthz` | none | `ok` |

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use charter_kbs_client::SESSION_COOKIE;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kbs_types::ErrorInformation;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use crate::broker::BrokerOptions;
use crate::broker::{Broker, Credential};
use crate::store::{MasterKey, Store, MASTER_KEY_ENV};
use crate::{ApiError, Error, Result};

/// Where the TLS certificate and key come from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files (certificate chain, private key).
    Pem {
        /// Certificate chain PEM.
        cert: PathBuf,
        /// Private key PEM (PKCS#8, SEC1 or PKCS#1).
        key: PathBuf,
    },
    /// A development CA and a server certificate for `names` (DNS names or IP addresses),
    /// generated on first start next to the database (`tls-ca.pem`, `tls-cert.pem`,
    /// `tls-key.pem`) and reused after. Clients trust `tls-ca.pem`.
    GeneratedNextToDb {
        /// Subject alternative names.
        names: Vec<String>,
    },
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// A key file (created mode 0600 on first start).
    File(PathBuf),
    /// An environment variable holding 64 hex digits.
    Env(String),
}

/// Broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (port 0: any).
    pub listen: SocketAddr,
    /// The SQLite database file.
    pub db_path: PathBuf,
    /// TLS material.
    pub tls: TlsSource,
    /// Master key.
    pub master_key: MasterKeySource,
    /// Protocol settings.
    pub broker: BrokerOptions,
    /// Serve plain HTTP instead of HTTPS (benchmark baseline only; never in production).
    pub insecure_plain_http: bool,
}

impl Config {
    /// Defaults: generated TLS material and master key file (`master.key`) next to the
    /// database, 5-minute sessions, no simulated evidence.
    pub fn new(
        listen: SocketAddr,
        db_path: impl Into<PathBuf>,
        admin_public_key_pem: &str,
    ) -> Config {
        let db_path = db_path.into();
        let dir = db_dir(&db_path);
        Config {
            listen,
            tls: TlsSource::GeneratedNextToDb {
                names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            },
            master_key: if std::env::var_os(MASTER_KEY_ENV).is_some() {
                MasterKeySource::Env(MASTER_KEY_ENV.into())
            } else {
                MasterKeySource::File(dir.join("master.key"))
            },
            db_path,
            broker: BrokerOptions::new(admin_public_key_pem),
            insecure_plain_http: false,
        }
    }
}

fn db_dir(db: &FsPath) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn write_private(path: &FsPath, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// Load or generate the TLS material; returns (certificate chain PEM, key PEM, CA PEM for
/// clients).
fn tls_material(config: &Config) -> Result<(Vec<u8>, Vec<u8>, String)> {
    match &config.tls {
        TlsSource::Pem { cert, key } => {
            let c = std::fs::read(cert).map_err(|e| Error::io(cert, e))?;
            let k = std::fs::read(key).map_err(|e| Error::io(key, e))?;
            let ca = String::from_utf8_lossy(&c).into_owned();
            Ok((c, k, ca))
        }
        TlsSource::GeneratedNextToDb { names } => {
            let dir = db_dir(&config.db_path);
            let (ca_p, cert_p, key_p) = (
                dir.join("tls-ca.pem"),
                dir.join("tls-cert.pem"),
                dir.join("tls-key.pem"),
            );
            if let (Ok(ca), Ok(c), Ok(k)) = (
                std::fs::read_to_string(&ca_p),
                std::fs::read(&cert_p),
                std::fs::read(&key_p),
            ) {
                return Ok((c, k, ca));
            }
            let err = |e: rcgen::Error| Error::Tls(format!("certificate generation: {e}"));
            let ca_key = rcgen::KeyPair::generate().map_err(err)?;
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "charter-broker development CA");
            ca_params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
            let leaf_key = rcgen::KeyPair::generate().map_err(err)?;
            let mut leaf = rcgen::CertificateParams::new(names.clone()).map_err(err)?;
            leaf.distinguished_name
                .push(rcgen::DnType::CommonName, "charter-broker");
            let leaf_cert = leaf.signed_by(&leaf_key, &ca).map_err(err)?;
            let ca_pem = ca.pem();
            let chain = format!("{}{}", leaf_cert.pem(), ca_pem);
            let key_pem = leaf_key.serialize_pem();
            write_private(&key_p, key_pem.as_bytes())?;
            std::fs::write(&cert_p, &chain).map_err(|e| Error::io(&cert_p, e))?;
            std::fs::write(&ca_p, &ca_pem).map_err(|e| Error::io(&ca_p, e))?;
            Ok((chain.into_bytes(), key_pem.into_bytes(), ca_pem))
        }
    }
}

fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("certificate PEM: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Tls(format!("key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// A bound, not yet running, broker.
pub struct Server {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    broker: Arc<Broker>,
    app: Router,
    ca_pem: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Open the database, load keys and TLS material, bind the address.
    pub async fn bind(config: Config) -> Result<Server> {
        let master = match &config.master_key {
            MasterKeySource::File(p) => MasterKey::load_or_create(p)?,
            MasterKeySource::Env(v) => MasterKey::from_env(v)?,
        };
        let store = Arc::new(Store::open(&config.db_path, &master)?);
        let broker = Arc::new(Broker::new(store, &config.broker)?);
        let (acceptor, ca_pem) = if config.insecure_plain_http {
            warn!(target: "charter_broker", "INSECURE: serving plain HTTP");
            (None, String::new())
        } else {
            let (cert, key, ca) = tls_material(&config)?;
            (Some(tls_acceptor(&cert, &key)?), ca)
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Config(format!("bind {}: {e}", config.listen)))?;
        let app = router(Arc::clone(&broker), config.broker.session_ttl);
        Ok(Server {
            listener,
            acceptor,
            broker,
            app,
            ca_pem,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The PEM clients should trust (empty with plain HTTP).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The protocol logic.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serve until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Server {
            listener,
            acceptor,
            app,
            ..
        } = self;
        info!(target: "charter_broker", "listening on {:?}", listener.local_addr().ok());
        tokio::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(target: "charter_broker", "accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let svc = TowerToHyperService::new(app.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                let r = match acceptor {
                    Some(a) => {
                        match tokio::time::timeout(Duration::from_secs(10), a.accept(tcp)).await {
                            Ok(Ok(tls)) => http.serve_connection(TokioIo::new(tls), svc).await,
                            Ok(Err(e)) => {
                                warn!(target: "charter_broker", "tls handshake: {e}");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => http.serve_connection(TokioIo::new(tcp), svc).await,
                };
                if let Err(e) = r {
                    tracing::debug!(target: "charter_broker", "connection: {e}");
                }
            });
        }
    }
}

/// A broker running on its own runtime thread (for tests, benchmarks and simple embedding).
pub struct RunningBroker {
    addr: SocketAddr,
    ca_pem: String,
    broker: Arc<Broker>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBroker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningBroker {
    /// `https://127.0.0.1:<port>` (or `http://` with plain HTTP).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_empty() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.addr)
    }
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The PEM clients should trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    /// The protocol logic.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
    /// Stop serving and join the runtime thread.
    pub fn shutdown(mut self) {
        self.stop();
    }
    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start a broker on a new multi-threaded runtime (`workers` threads, 0 = one per core).
pub fn spawn(config: Config, workers: usize) -> Result<RunningBroker> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        rt.worker_threads(workers);
    }
    let rt = rt
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("runtime: {e}")))?;
    let server = rt.block_on(Server::bind(config))?;
    let addr = server.local_addr()?;
    let ca_pem = server.ca_pem().to_owned();
    let broker = Arc::clone(server.broker());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("charter-broker".into())
        .spawn(move || {
            let r = rt.block_on(server.run(async {
                let _ = rx.await;
            }));
            if let Err(e) = r {
                warn!(target: "charter_broker", "server: {e}");
            }
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| Error::Config(format!("thread: {e}")))?;
    Ok(RunningBroker {
        addr,
        ca_pem,
        broker,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// What a standalone server (the `charter-broker` binary, `charter broker serve`) is started
/// with: the files named on its command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The SQLite database file.
    pub db: PathBuf,
    /// The admin's Ed25519 `PUBLIC KEY` PEM file.
    pub admin_public_key: PathBuf,
    /// Address to bind.
    pub listen: SocketAddr,
    /// TLS certificate chain and key PEM files (default: generated next to the database).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Session and attestation token lifetime (default 5 minutes).
    pub session_ttl: Option<Duration>,
    /// Where to write the bound address (atomically) once listening.
    pub addr_file: Option<PathBuf>,
    /// INSECURE: accept simulated SNP evidence signed under this ARK+ASK PEM file.
    pub insecure_simulated_root: Option<PathBuf>,
}

impl ServeOptions {
    /// Read the files and build the [`Config`].
    pub fn config(&self) -> Result<Config> {
        let admin_pem = std::fs::read_to_string(&self.admin_public_key)
            .map_err(|e| Error::io(&self.admin_public_key, e))?;
        crate::jwt::ed25519_public_key_from_pem(&admin_pem).map_err(|e| {
            Error::Config(format!(
                "admin public key {}: {e}",
                self.admin_public_key.display()
            ))
        })?;
        let mut config = Config::new(self.listen, &self.db, &admin_pem);
        if let Some((cert, key)) = &self.tls {
            config.tls = TlsSource::Pem {
                cert: cert.clone(),
                key: key.clone(),
            };
        }
        if let Some(t) = self.session_ttl {
            config.broker.session_ttl = t;
            config.broker.token_ttl = t;
        }
        if let Some(root) = &self.insecure_simulated_root {
            config.broker.insecure_allow_simulated = true;
            config.broker.insecure_simulated_root_pem =
                Some(std::fs::read_to_string(root).map_err(|e| Error::io(root, e))?);
        }
        Ok(config)
    }
}

/// Run a standalone server until Ctrl-C (SIGINT): bind, write `addr_file` (if any), call
/// `on_listening` with the bound address, serve.
pub fn serve_until_ctrl_c(
    opts: &ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    let config = opts.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("runtime: {e}")))?;
    rt.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        if let Some(f) = &opts.addr_file {
            let mut tmp = f.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, format!("{addr}\n")).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, f).map_err(|e| Error::io(f, e))?;
        }
        on_listening(addr);
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

// --- Routes ----------------------------------------------------------------------------------

#[derive(Clone)]
struct AppState {
    broker: Arc<Broker>,
    session_ttl: Duration,
}

fn router(broker: Arc<Broker>, session_ttl: Duration) -> Router {
    let state = AppState {
        broker,
        session_ttl,
    };
    Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route(
            "/kbs/v0/resource/{repo}/{kind}/{tag}",
            get(get_resource).post(set_resource),
        )
        .route(
            "/kbs/v0/resource-policy",
            post(set_default_policy).get(get_default_policy),
        )
        .route(
            "/kbs/v0/resource-policy/{repo}/{kind}/{tag}",
            post(set_policy).get(get_policy),
        )
        .route("/kbs/v0/admin/resources", get(list_resources))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { error(ApiError::NotFound) })
        .layer(DefaultBodyLimit::max(2 << 20))
        .with_state(state)
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(ErrorInformation {
            error_type: format!(
                "https://github.com/confidential-containers/kbs/errors/{}",
                e.kind()
            ),
            detail: e.detail().to_owned(),
        }),
    )
        .into_response()
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE && !v.is_empty()).then(|| v.to_owned())
        })
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn set_cookie(id: &str, ttl: Duration) -> String {
    format!(
        "{SESSION_COOKIE}={id}; Path=/kbs; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        ttl.as_secs()
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(ApiError::Internal))
}

async fn auth(State(s): State<AppState>, body: Bytes) -> Response {
    match s.broker.auth(&body) {
        Ok((id, challenge)) => (
            [(header::SET_COOKIE, set_cookie(&id, s.session_ttl))],
            Json(challenge),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

async fn attest(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(id) = cookie(&headers) else {
        return error(ApiError::Unauthorized);
    };
    let b = Arc::clone(&s.broker);
    let id2 = id.clone();
    match blocking(move || b.attest(&id2, &body)).await {
        Ok(token) => (
            [(header::SET_COOKIE, set_cookie(&id, s.session_ttl))],
            Json(json!({ "token": token })),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

fn resource_path(repo: &str, kind: &str, tag: &str) -> String {
    format!("{repo}/{kind}/{tag}")
}

async fn get_resource(
    State(s): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let cred = match (bearer(&headers), cookie(&headers)) {
        (Some(t), _) => Credential::Bearer(t),
        (None, Some(c)) => Credential::Session(c),
        (None, None) => return error(ApiError::Unauthorized),
    };
    let b = Arc::clone(&s.broker);
    let path = resource_path(&repo, &kind, &tag);
    match blocking(move || b.resource(&cred, &path)).await {
        Ok(jwe) => Json(jwe).into_response(),
        Err(e) => error(e),
    }
}

async fn set_resource(
    State(s): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = s.broker.check_admin(bearer(&headers).as_deref()) {
        return error(e);
    }
    let b = Arc::clone(&s.broker);
    let path = resource_path(&repo, &kind, &tag);
    match blocking(move || b.set_resource(&path, &body)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct PolicyBody {
    policy: String,
}

fn decode_policy(body: &[u8]) -> Result<String, ApiError> {
    let p: PolicyBody = serde_json::from_slice(body).map_err(|_| ApiError::BadRequest)?;
    let raw = URL_SAFE_NO_PAD
        .decode(p.policy.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(&p.policy))
        .map_err(|_| ApiError::BadRequest)?;
    String::from_utf8(raw).map_err(|_| ApiError::BadRequest)
}

async fn put_policy(
    s: AppState,
    headers: HeaderMap,
    path: Option<String>,
    body: Bytes,
) -> Response {
    if let Err(e) = s.broker.check_admin(bearer(&headers).as_deref()) {
        return error(e);
    }
    let rego = match decode_policy(&body) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let b = Arc::clone(&s.broker);
    match blocking(move || b.set_policy(path.as_deref(), &rego)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(e),
    }
}

async fn read_policy(s: AppState, headers: HeaderMap, path: Option<String>) -> Response {
    if let Err(e) = s.broker.check_admin(bearer(&headers).as_deref()) {
        return error(e);
    }
    let b = Arc::clone(&s.broker);
    match blocking(move || b.get_policy(path.as_deref())).await {
        Ok(Some(p)) => Json(json!({"policy": URL_SAFE_NO_PAD.encode(p)})).into_response(),
        Ok(None) => error(ApiError::NotFound),
        Err(e) => error(e),
    }
}

async fn set_policy(
    State(s): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    put_policy(s, headers, Some(resource_path(&repo, &kind, &tag)), body).await
}

async fn set_default_policy(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    put_policy(s, headers, None, body).await
}

async fn get_policy(
    State(s): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    read_policy(s, headers, Some(resource_path(&repo, &kind, &tag))).await
}

async fn get_default_policy(State(s): State<AppState>, headers: HeaderMap) -> Response {
    read_policy(s, headers, None).await
}

async fn list_resources(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = s.broker.check_admin(bearer(&headers).as_deref()) {
        return error(e);
    }
    let b = Arc::clone(&s.broker);
    match blocking(move || b.list_resources()).await {
        Ok(list) => Json(json!({ "resources": list })).into_response(),
        Err(e) => error(e),
    }
}
