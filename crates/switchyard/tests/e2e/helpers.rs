//! Test harness: the real application on 127.0.0.1:0 with its own data dir, a recording
//! receiver that answers what a test tells it to, and small HTTP helpers.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::{Application, Settings};
use tokio::sync::{Notify, RwLock, oneshot};

/// Tests that assert how long something took hold this exclusively (`write`); tests that load
/// both cores for seconds hold it shared (`read`). So a timing assertion measures the hub, not
/// a neighbouring test's flood, and the heavy tests still run beside everything else.
pub static TIMING: std::sync::LazyLock<RwLock<()>> = std::sync::LazyLock::new(|| RwLock::new(()));

pub const ADMIN_KEY: &str = "sy_test_admin_key_for_e2e_tests_only";

/// Whether the suite runs on PostgreSQL (`SWITCHYARD_E2E_DATABASE=postgres`, the second leg of
/// the test command's matrix) rather than on a SQLite file in each data dir.
pub fn on_postgres() -> bool {
    std::env::var("SWITCHYARD_E2E_DATABASE").is_ok_and(|v| v == "postgres")
}

/// The PostgreSQL database of data dir `dir` when the suite runs on PostgreSQL: one database
/// per data dir, made on first use on the server of `SWITCHYARD_TEST_POSTGRES`, so that a hub
/// restarted on the same dir finds its data again. `None` on SQLite.
pub async fn database_url(dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let server = test_postgres();
    // FNV-1a of the dir: a stable name of the database within PostgreSQL's 63 bytes.
    let hash = dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let name = format!("sy_e2e_{hash:016x}");
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at `{server}` is not reachable: {e}"));
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("look up the test database")
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
    }
    Some(postgres_url(&name))
}

/// The PostgreSQL server the tests use (`SWITCHYARD_TEST_POSTGRES`, a connection string).
pub fn test_postgres() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into())
}

/// The URL a hub connects with to database `name` on the tests' server.
pub fn postgres_url(name: &str) -> String {
    let server = test_postgres();
    let config: tokio_postgres::Config = server.parse().expect("SWITCHYARD_TEST_POSTGRES");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres").to_string();
    format!("postgres://{user}@{host}:{port}/{name}")
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The app's data dir (database, master key).
    pub data_dir: std::path::PathBuf,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Changes after each write of the app's delivery engine ([`TestApp::wait_trace`]).
    deliveries: tokio::sync::watch::Receiver<u64>,
    _tmp: Option<tempfile::TempDir>,
}

/// Starts the hub in-process with loopback allow-listed.
pub async fn spawn_app() -> TestApp {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut app = spawn_app_in(tmp.path(), |_| {}).await;
    app._tmp = Some(tmp);
    app
}

/// Starts the hub in-process on `dir`, letting the test adjust the settings first.
pub async fn spawn_app_in(dir: &Path, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    switchyard_egress::install_crypto_provider();
    let mut settings = Settings::for_local(dir);
    settings.admin_key = Some(ADMIN_KEY.to_string());
    settings.shutdown_grace = Duration::from_secs(5);
    // In tests the current program is the test binary: point at the real one.
    settings.js_worker = Some(env!("CARGO_BIN_EXE_switchyard").into());
    if let Some(url) = database_url(dir).await {
        settings.database = switchyard::Database::Postgres {
            url,
            options: Default::default(),
        };
    }
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("build app");
    let addr = app.local_addr();
    let deliveries = app.hub().watch_deliveries();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        data_dir: dir.to_path_buf(),
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
        deliveries,
        _tmp: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }
    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    /// Posts raw JSON text and returns the status and the raw answer.
    pub async fn post_raw(&self, path: &str, key: &str, body: &str) -> (u16, String) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), r.text().await.expect("text"))
    }

    /// The trace of an event as the API's text, exactly as sent.
    pub async fn trace_text(&self, org: &Org, id: &str) -> String {
        self.client
            .get(self.url(&format!("/v1/orgs/{}/events/{id}", org.id)))
            .bearer_auth(&org.viewer)
            .send()
            .await
            .expect("trace")
            .text()
            .await
            .expect("text")
    }

    /// Creates an organization with an admin and a publisher key.
    pub async fn org(&self, id: &str) -> Org {
        let (s, _) = self
            .post("/v1/orgs", ADMIN_KEY, json!({"id": id, "name": id}))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let key = |role: &'static str| async move {
            let (s, v) = self
                .post(
                    &format!("/v1/orgs/{id}/keys"),
                    ADMIN_KEY,
                    json!({"role": role}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["key"].as_str().expect("key").to_string()
        };
        Org {
            id: id.to_string(),
            admin: key("admin").await,
            publisher: key("publisher").await,
            viewer: key("viewer").await,
        }
    }

    /// Creates an endpoint and a subscription to it; returns the endpoint.
    pub async fn endpoint(&self, org: &Org, settings: Value, types: &[&str]) -> Value {
        let (s, ep) = self
            .post(
                &format!("/v1/orgs/{}/endpoints", org.id),
                &org.admin,
                settings,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{ep}");
        let (s, sub) = self
            .post(
                &format!("/v1/orgs/{}/subscriptions", org.id),
                &org.admin,
                json!({"event_types": types, "endpoint_id": ep["id"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{sub}");
        ep
    }

    pub async fn publish(&self, org: &Org, event: Value) -> Value {
        let (s, v) = self
            .post(
                &format!("/v1/orgs/{}/events", org.id),
                &org.publisher,
                event,
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v
    }

    /// Publishes `events` as one batch (at most 1,000) and checks it was accepted.
    pub async fn publish_batch(&self, org: &Org, events: Vec<Value>) -> Value {
        let (s, v) = self
            .post(
                &format!("/v1/orgs/{}/events/batch", org.id),
                &org.publisher,
                Value::Array(events),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v
    }

    pub async fn trace(&self, org: &Org, id: &str) -> Value {
        let (s, v) = self
            .get(&format!("/v1/orgs/{}/events/{id}", org.id), &org.viewer)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    /// Waits until the event's deliveries satisfy `pred`, returning the trace. A delivery
    /// changes only when the engine writes, so the trace is read again after each of its
    /// writes (a retry due later comes with the write of its attempt), never on a timer.
    pub async fn wait_trace(
        &self,
        org: &Org,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut writes = self.deliveries.clone();
        loop {
            // Marked seen before the read: a write after it wakes the wait below.
            writes.borrow_and_update();
            let t = self.trace(org, id).await;
            if pred(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "trace of {id} never reached the expected state: {t:#}"
            );
            let _ = tokio::time::timeout_at(deadline.into(), writes.changed()).await;
        }
    }

    /// Stops the app as SIGTERM would and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("join").expect("clean shutdown");
        }
    }
}

pub fn first_delivery_status(trace: &Value) -> Option<&str> {
    trace["deliveries"][0]["status"].as_str()
}

pub struct Org {
    pub id: String,
    pub admin: String,
    pub publisher: String,
    pub viewer: String,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &'static str, v: &str) -> Reply {
        self.headers.push((k, v.to_string()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Replies for the next requests, in order; then `default`.
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    notify: Notify,
}

/// A webhook receiver on 127.0.0.1:0 recording everything it gets.
#[derive(Clone)]
pub struct TestReceiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn handle(
    State(s): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = s
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .or_else(|| s.default.lock().expect("lock").clone())
        .unwrap_or_else(|| Reply::status(200));
    s.got.lock().expect("lock").push(Received {
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    s.notify.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).expect("status"),
        "receiver says hi",
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut()
            .insert(k, v.parse().expect("header value"));
    }
    resp
}

/// Serves `app` on a free port of 127.0.0.1 until the test ends; returns its address.
pub async fn serve_on_loopback(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let addr = serve_on_loopback(app).await;
        TestReceiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next requests get these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().expect("lock").extend(replies);
    }

    /// Requests beyond the script get this reply (default 200).
    pub fn always(&self, reply: Reply) {
        *self.state.default.lock().expect("lock") = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.got.lock().expect("lock").clone()
    }

    /// Waits until `pred` holds for what arrived so far.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.state.notify.notified();
            {
                let got = self.state.got.lock().expect("lock");
                if pred(&got) {
                    return got.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let got = self.received();
                panic!(
                    "receiver condition not met within {timeout:?}; got {} requests: {:?}",
                    got.len(),
                    got.iter()
                        .map(|r| r.header("webhook-id"))
                        .collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, |got| got.len() >= n).await
    }
}

/// A receiver answering JSON: `{"path", "query"}` for 2xx paths, 404 for `/404`, an empty 204
/// for `/204`.
pub struct JsonReceiver {
    pub addr: SocketAddr,
}

impl JsonReceiver {
    pub async fn start() -> JsonReceiver {
        async fn answer(uri: Uri) -> Response {
            if uri.path() == "/404" {
                return (StatusCode::NOT_FOUND, "no such contract").into_response();
            }
            if uri.path() == "/204" {
                return StatusCode::NO_CONTENT.into_response();
            }
            axum::Json(json!({"path": uri.path(), "query": uri.query().unwrap_or("")}))
                .into_response()
        }
        let app = axum::Router::new().fallback(answer);
        let addr = serve_on_loopback(app).await;
        JsonReceiver { addr }
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// The real `switchyard` binary serving on a free port, killed when dropped.
pub struct Hub {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real binary on `dir` with loopback allow-listed and waits until it is ready.
pub async fn start_hub(dir: &Path) -> Hub {
    start_hub_with(dir, &[]).await
}

/// [`start_hub`] with extra `serve` flags.
pub async fn start_hub_with(dir: &Path, extra: &[&str]) -> Hub {
    let database: Vec<String> = database_url(dir)
        .await
        .map(|url| ["--database-url".to_string(), url])
        .into_iter()
        .flatten()
        .collect();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(database.iter().map(String::as_str));
    launch_hub(dir, &args, &[]).await
}

/// The real binary serving on a free port of 127.0.0.1 from data dir `dir`, loopback allowed,
/// with extra `serve` flags and environment; waits until it is ready.
pub async fn launch_hub(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Hub {
    launch_hub_wrapped(&[], dir, extra, env).await
}

/// [`launch_hub`] started through `wrapper` (a command that ends by executing its arguments,
/// e.g. one that changes the namespace the hub sees).
pub async fn launch_hub_wrapped(
    wrapper: &[&str],
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Hub {
    switchyard_egress::install_crypto_provider();
    let program = env!("CARGO_BIN_EXE_switchyard");
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    };
    command
        .args([
            "serve",
            "--allow-destination",
            "127.0.0.0/8",
            "--shutdown-grace-s",
            "5",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("SWITCHYARD_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    let client = reqwest::Client::new();
    // A minute: a loaded machine starting several hubs at once (the cluster tests) is slow.
    let (child, base) = switchyard::local_hub::launch(command, &client, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("the hub in {}: {e:#}", dir.display()));
    Hub {
        child,
        base,
        client,
    }
}

impl Hub {
    /// The hub process's peak resident memory (VmHWM), in MiB.
    pub fn peak_rss_mb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("status of the hub");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb / 1024
    }
    pub async fn post(
        &self,
        path: &str,
        key: &str,
        body: Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        self.send(reqwest::Method::POST, path, key, body).await
    }
    pub async fn put(
        &self,
        path: &str,
        key: &str,
        body: Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        self.send(reqwest::Method::PUT, path, key, body).await
    }
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }
    pub async fn get(&self, path: &str, key: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }
}

/// A child process killed when the guard is dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `check` answers true, asking every 100 ms for up to a minute (a generous bound:
/// the suite runs on busy two-core machines); past it, fails naming `what`.
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "not within a minute: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
