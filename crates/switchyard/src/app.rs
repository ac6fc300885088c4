//! Start-up and shutdown: opens the data dir and the store, starts the engine, binds the socket.

use crate::config::{Database, Settings};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::{AppState, Limits};
use switchyard_core::Role;
use switchyard_core::crypto::{MasterKey, api_key_prefix, generate_api_key, hash_api_key};
use switchyard_core::egress::EgressPolicy;
use switchyard_hub::{Hub, HubSettings};
use switchyard_store::prelude::*;
use switchyard_store::{PgStore, SqliteStore};
use tokio::net::TcpListener;

/// A built hub: the socket is bound, the engine runs; [`Application::run`] serves until told
/// to stop.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    hub: Hub,
    store: OpenStore,
    grace: Duration,
    listen_limits: crate::listener::ListenLimits,
    /// Where to write the address listened on once serving.
    addr_file: Option<std::path::PathBuf>,
    /// The admin key generated on first start (none when one was given or already exists).
    pub generated_admin_key: Option<String>,
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The master key: from the environment, else the data dir's `master.key` (made on first start).
/// Replaces every instance admin key of the data dir by a new one and returns it (offline
/// recovery; a running hub keeps accepting the old key until it restarts).
pub async fn reset_admin_key(settings: &Settings) -> anyhow::Result<String> {
    let key_file = settings.data_dir.join("master.key");
    if settings.master_key.is_none() && !key_file.exists() {
        anyhow::bail!(
            "{} holds no Switchyard data (no master.key); nothing to reset",
            settings.data_dir.display()
        );
    }
    if let Database::Sqlite(path) = &settings.database
        && !path.exists()
    {
        anyhow::bail!("no database at {}", path.display());
    }
    let store = open_store(settings).await?;
    let key = generate_api_key();
    store
        .shared()
        .replace_admin_keys(&hash_api_key(&key), &api_key_prefix(&key))
        .await?;
    store.close().await?;
    Ok(key)
}

fn master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    if let Some(k) = &settings.master_key {
        return MasterKey::from_base64(k).context("SWITCHYARD_MASTER_KEY");
    }
    let path = settings.data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} is not a valid master key", path.display()));
    }
    let (key, b64) = MasterKey::generate();
    write_private(&path, &b64)?;
    tracing::info!(path = %path.display(), "generated a master key; back it up: without it stored secrets cannot be read");
    Ok(key)
}

/// The store a hub runs on.
#[derive(Clone)]
enum OpenStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl OpenStore {
    fn shared(&self) -> Arc<dyn Store> {
        match self {
            OpenStore::Sqlite(s) => Arc::new(s.clone()),
            OpenStore::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// Waits until every write it accepted is committed, then closes.
    async fn close(self) -> anyhow::Result<()> {
        match self {
            OpenStore::Sqlite(s) => tokio::task::spawn_blocking(move || s.close())
                .await
                .context("closing the store")?,
            OpenStore::Postgres(s) => s.close(),
        }
        Ok(())
    }
}

/// The configured database, opened with the master key (made on first start).
async fn open_store(settings: &Settings) -> anyhow::Result<OpenStore> {
    let key = master_key(settings)?;
    match &settings.database {
        Database::Sqlite(path) => Ok(OpenStore::Sqlite(
            SqliteStore::open(path, key).with_context(|| format!("opening {}", path.display()))?,
        )),
        Database::Postgres { url, options } => Ok(OpenStore::Postgres(
            PgStore::connect(url, key, options)
                .await
                .with_context(|| format!("opening the PostgreSQL database {}", redact(url)))?,
        )),
    }
}

/// A connection URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// This node's id, kept across restarts so that it can take back its own claims at once.
fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = switchyard_core::ids::new_id("node");
    write_private(&path, &id)?;
    Ok(id)
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // The port first: a hub that cannot serve writes nothing (no database, no key shown).
        let listener = bind(settings.listen).await?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&settings.data_dir)
                .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
            // Only the hub may enter its data dir, whoever created it: executors run as
            // another user and must not reach the database or the master key.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&settings.data_dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting data dir {}", settings.data_dir.display()))?;
        }
        let node = node_id(&settings.data_dir)?;
        let opened = open_store(&settings).await?;
        let store = opened.shared();
        let resumed = store.release(&node, None).await?;
        if resumed > 0 {
            tracing::info!(
                resumed,
                "resuming deliveries that were pending or in flight at the last stop"
            );
        }
        let mut generated_admin_key = None;
        if settings.admin_key.is_none() && store.count_admin_keys().await? == 0 {
            let key = generate_api_key();
            // Shown before it is stored: a start that fails later (a taken port) never leaves a
            // stored key that nobody has seen. Lost anyway? `switchyard reset-admin-key`.
            println!("Generated the instance admin key (shown once, store it now):\n{key}");
            store
                .create_api_key(
                    None,
                    Role::Admin,
                    &hash_api_key(&key),
                    &api_key_prefix(&key),
                )
                .await?;
            generated_admin_key = Some(key);
        }
        let hub = Hub::start(
            store,
            HubSettings {
                engine: settings.engine(node),
                egress: EgressPolicy {
                    allow: settings.allow_destinations.clone(),
                    require_https: settings.require_https,
                },
                js_worker: settings.js_worker.clone(),
                runs: switchyard_hub::RunnerLimits {
                    max_tmp_mb: settings.max_run_tmp_mb,
                    memory_budget_mb: settings.run_memory_budget_mb,
                    allow_unbounded_runs: settings.allow_unbounded_runs,
                    warm_interpreters: settings.warm_interpreters,
                    packages: settings.packages.clone(),
                },
                retention: settings.retention.clone(),
                schedules: settings.schedules,
                limits: settings.limits,
                role: settings.role,
                // Code calls the API where this node serves it (`sdk.api`).
                api_address: settings
                    .role
                    .serves_api()
                    .then(|| listener.local_addr().ok())
                    .flatten(),
            },
        )
        .await?;
        let state = AppState::new(
            hub.clone(),
            settings.admin_key.as_deref(),
            Limits {
                max_event_bytes: settings.max_event_bytes,
                ..Limits::default()
            },
            Some(switchyard_api::metrics_handle()),
        );
        let router = if settings.role.serves_api() {
            switchyard_api::router(state)
        } else {
            switchyard_api::ops_router(state)
        };
        let router = router.layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::DEBUG),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        );
        Ok(Application {
            listener,
            router,
            hub,
            store: opened,
            grace: settings.shutdown_grace,
            listen_limits: settings.listen_limits,
            addr_file: settings.addr_file.clone(),
            generated_admin_key,
        })
    }

    /// The hub this application serves (for an embedding program or a test: its deliveries'
    /// progress, [`Hub::watch_deliveries`]).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains: requests in progress finish, deliveries
    /// in flight get the grace period, queued ones are handed back to the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "switchyard listening");
        if let Some(path) = &self.addr_file {
            // Whole or not at all: written beside, then renamed into place.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, self.local_addr().to_string())
                .and_then(|()| std::fs::rename(&partial, path))
                .with_context(|| format!("writing the address to {}", path.display()))?;
        }
        crate::listener::serve(
            self.listener,
            self.router,
            self.listen_limits,
            shutdown,
            self.grace,
        )
        .await;
        tracing::info!("stopping: draining deliveries");
        self.hub.shutdown(self.grace).await;
        self.store.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The listener on `addr`; when the address is taken, the error names it and, when this
/// machine tells, the process that holds it.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let holder = port_holder(addr.port())
                .map(|(pid, name)| format!(" by `{name}` (pid {pid})"))
                .unwrap_or_default();
            anyhow::bail!(
                "cannot listen on {addr}: the port is already in use{holder}; stop that process or choose another address with --listen"
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// The process listening on TCP port `port`, from `/proc` (`None` where it cannot be seen).
fn port_holder(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let local_port = f.get(1)?.rsplit(':').next()?;
                    // State 0A is LISTEN.
                    (u16::from_str_radix(local_port, 16).ok()? == port && *f.get(3)? == "0A")
                        .then(|| format!("socket:[{}]", f.get(9).copied().unwrap_or_default()))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                let name = std::fs::read_to_string(proc_entry.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                return Some((pid, name));
            }
        }
    }
    None
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
