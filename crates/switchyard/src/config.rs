//! Operator settings, declared once: [`Config`] is every setting, read in layers — the
//! defaults (`switchyard.toml.example`, compiled in: the example is the defaults), then
//! `switchyard.toml`, then `SWITCHYARD_*` variables and flags (clap reads both into
//! [`ServeArgs`], a variable under its flag) — merged with `figment` and checked once in
//! [`Config::validate`]. [`Settings`] is what the hub runs with, made from it.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use figment::Figment;
use figment::providers::Serialized;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults of every setting: the example settings file, which documents each.
pub const DEFAULTS: &str = include_str!("../../../switchyard.toml.example");

/// The settings `switchyard serve` takes as flags, each also as a `SWITCHYARD_*` variable. An
/// absent one leaves the file's value (or the default).
#[derive(Args, Serialize, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8700]
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database, master key and node id [default: ./switchyard-data]
    #[arg(long, env = "SWITCHYARD_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: SQLite in the data dir]; `sqlite://PATH` or
    /// `postgres://USER@HOST:PORT/DB` (several nodes may share one PostgreSQL database)
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// CIDRs exempt from the private-address guard, comma-separated (e.g. 127.0.0.0/8)
    #[arg(
        long = "allow-destination",
        env = "SWITCHYARD_ALLOW_DESTINATIONS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_destinations: Option<Vec<String>>,
    /// Refuse plain-http webhook destinations
    #[arg(long, env = "SWITCHYARD_REQUIRE_HTTPS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_https: Option<bool>,
    /// Log format [default: text]
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Largest event accepted, in bytes [default: 262144]
    #[arg(long, env = "SWITCHYARD_MAX_EVENT_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_bytes: Option<usize>,
    /// Seconds to wait for requests in flight at shutdown [default: 10]
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_S")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_s: Option<u64>,
    /// Largest private temporary directory of one executor run, in MiB [default: 256]
    #[arg(long, env = "SWITCHYARD_MAX_RUN_TMP_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_run_tmp_mb: Option<u32>,
    /// Memory of all executor runs at once, in MiB; runs wait for room [default: half of the
    /// machine's memory]
    #[arg(long, env = "SWITCHYARD_RUN_MEMORY_BUDGET_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_memory_budget_mb: Option<u32>,
    /// Run Python, PHP and Node.js executors even where the kernel cannot bound each run's
    /// memory and processes (no cgroups) [default: false]
    #[arg(long, env = "SWITCHYARD_ALLOW_UNBOUNDED_RUNS", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_unbounded_runs: Option<bool>,
    /// Python, PHP and Node.js interpreters kept started ahead of their runs, each in its own
    /// sandbox and used by one run only; 0 starts every run's interpreter when it runs
    /// [default: 4]
    #[arg(long, env = "SWITCHYARD_WARM_INTERPRETERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_interpreters: Option<u32>,
    /// What this node does: `all` (serve the API and deliver), `api` (serve the API and
    /// publish; deliver nothing) or `worker` (deliver, run retention and schedules; serve only
    /// health and metrics) [default: all]
    #[arg(long, env = "SWITCHYARD_ROLE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<NodeRole>,
    /// Settings file [default: ./switchyard.toml if it exists]
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Once serving, write the address listened on to this file (for tools that start a hub
    /// on `--listen 127.0.0.1:0` and need to know its port)
    #[arg(long)]
    #[serde(skip)]
    pub addr_file: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// What a node does (`switchyard_hub::Role`), as the settings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    All,
    Api,
    Worker,
}

impl From<NodeRole> for switchyard_hub::Role {
    fn from(r: NodeRole) -> Self {
        match r {
            NodeRole::All => switchyard_hub::Role::All,
            NodeRole::Api => switchyard_hub::Role::Api,
            NodeRole::Worker => switchyard_hub::Role::Worker,
        }
    }
}

/// Every setting: the shape of `switchyard.toml`, and of its defaults.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Absent (or empty): SQLite in the data dir.
    #[serde(default)]
    pub database_url: Option<String>,
    #[serde(default, deserialize_with = "cidrs")]
    pub allow_destinations: Vec<IpNet>,
    pub require_https: bool,
    pub log_format: LogFormat,
    pub max_event_bytes: usize,
    pub shutdown_grace_s: u64,
    pub max_run_tmp_mb: u32,
    /// Absent: half of the machine's memory.
    #[serde(default)]
    pub run_memory_budget_mb: Option<u32>,
    pub allow_unbounded_runs: bool,
    pub warm_interpreters: u32,
    pub role: NodeRole,
    /// Best given as `SWITCHYARD_ADMIN_KEY`; absent: one is generated on first start.
    #[serde(default)]
    pub admin_key: Option<String>,
    pub delivery: DeliveryTunables,
    pub retention: RetentionFile,
    pub schedules: SchedulesFile,
    pub packages: PackagesFile,
    pub postgres: PostgresFile,
    /// `[limits]`: what each organization may take of the hub (its shares and quotas),
    /// unless the instance admin set its own.
    pub limits: switchyard_core::limits::OrgLimits,
}

/// CIDRs (or single addresses) as written.
fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("`{s}` in allow-destination is not a CIDR"))
                })
        })
        .collect()
}

/// `[postgres]`: how a node uses a PostgreSQL database.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresFile {
    /// Connections this node keeps open at most (2–1000).
    pub pool_size: usize,
    /// The longest a statement (or a wait for a lock) may take before the server cancels it,
    /// in milliseconds (100–3600000).
    pub statement_timeout_ms: u64,
}

/// Where the hub keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite database file (one node).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database: its connection string, and how this node uses it.
    Postgres {
        url: String,
        options: switchyard_store::PgOptions,
    },
}

/// `[packages]`: executors' packages, installed when a version is saved.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackagesFile {
    /// Install packages at all.
    pub enabled: bool,
    /// pip's index (PEP 503 simple API): the public one, or the operator's mirror.
    pub pip_index_url: String,
    /// npm's registry: the public one, or the operator's mirror.
    pub npm_registry_url: String,
    /// Composer's repository: Packagist, or the operator's mirror.
    pub composer_repository_url: String,
    /// More hosts installs may download from (an index's file host).
    pub file_hosts: Vec<String>,
    /// Let npm run install scripts and Composer plugins (in the installer's sandbox).
    pub install_scripts: bool,
    /// Largest install, MiB.
    pub max_mb: u32,
    /// Longest install, seconds.
    pub timeout_s: u64,
}

/// `[schedules]`.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SchedulesFile {
    /// Accept a sixth, leading cron field for seconds (for tests and development).
    pub seconds_field: bool,
}

/// `[retention]`.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Age in seconds past which finished events, their deliveries, attempts and runs are
    /// deleted; 0 keeps everything.
    pub max_age_s: u64,
    /// Age in seconds past which the payload of an event whose every delivery succeeded is
    /// dropped (`data` becomes `null`), for organizations that set none; 0: payloads live as
    /// long as their events.
    pub payload_max_age_s: u64,
    /// How often retention runs, in seconds (1–86400).
    pub interval_s: u64,
    /// Events deleted per write (1–5000).
    pub batch: u32,
}

impl RetentionFile {
    fn resolve(&self) -> switchyard_hub::RetentionSettings {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        switchyard_hub::RetentionSettings {
            max_age: secs(self.max_age_s),
            payload_max_age: secs(self.payload_max_age_s),
            interval: Duration::from_secs(self.interval_s),
            batch: self.batch,
        }
    }
}

/// `[delivery]`: the delivery engine's tunables.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryTunables {
    /// How often due retries are looked for when nothing wakes the poller (10–60000 ms).
    pub poll_interval_ms: u64,
    /// Deliveries claimed per poll (1–10000).
    pub claim_batch: u32,
    /// How long a claim lasts before another node may take it over (125 s – 1 day: a delivery
    /// is started only while its claim holds for the longest request or run it may take).
    pub lease_s: u64,
    /// How long a node holds an endpoint's lease; a node that dies has its endpoints taken
    /// over this long after its last renewal (1000–600000 ms).
    pub endpoint_lease_ms: u64,
    /// Deliveries one endpoint may hold in memory (1–1000000).
    pub max_queued_per_endpoint: usize,
    /// Deliveries all endpoints together may hold in memory (1–10000000).
    pub max_queued_total: usize,
    /// Requests to endpoints in flight at once, all endpoints together (1–100000).
    pub max_requests_in_flight: usize,
    /// An endpoint whose every attempt has failed this long is disabled (1 h – 1 year).
    pub disable_after_failing_s: u64,
    /// ... if its failures span at least this long (0 – 1 year).
    pub disable_min_span_s: u64,
    /// How long an endpoint's configuration is cached (0–60000 ms).
    pub endpoint_cache_ttl_ms: u64,
    /// Event hooks running at once (1–256).
    pub max_hooks_in_flight: usize,
    /// How long a publish waits for its synchronous targets (100–60000 ms).
    pub sync_deadline_ms: u64,
}

/// `Err` naming the setting when `v` is outside `lo..=hi`.
fn within<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> anyhow::Result<()> {
    if v < lo || v > hi {
        bail!("{name} must be between {lo} and {hi}, not {v}")
    }
    Ok(())
}

impl Config {
    /// The defaults, then the file `file` (when given), then `args` (flags and variables),
    /// then `admin_key` (`SWITCHYARD_ADMIN_KEY`), merged and checked.
    pub fn layered(
        file: Option<&Path>,
        args: &ServeArgs,
        admin_key: Option<String>,
    ) -> anyhow::Result<Config> {
        let table = |text: &str, from: &str| -> anyhow::Result<toml::Table> {
            toml::from_str(text).with_context(|| format!("parsing {from}"))
        };
        let mut layers = Figment::from(Serialized::defaults(table(DEFAULTS, "the defaults")?));
        if let Some(p) = file {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            layers = layers.merge(Serialized::defaults(table(
                &text,
                &p.display().to_string(),
            )?));
        }
        layers = layers.merge(Serialized::defaults(args));
        if let Some(key) = admin_key.filter(|k| !k.is_empty()) {
            layers = layers.merge(Serialized::default("admin_key", key));
        }
        let config: Config = layers.extract().map_err(|e| {
            let from = file.map_or("the settings".into(), |p| p.display().to_string());
            anyhow::anyhow!("{from}: {e}")
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every rule a setting has, checked once.
    pub fn validate(&self) -> anyhow::Result<()> {
        within(
            "max event bytes",
            self.max_event_bytes,
            1024,
            16 * 1024 * 1024,
        )?;
        within(
            "max run tmp MiB",
            self.max_run_tmp_mb,
            1,
            switchyard_core::executor::MAX_TMP_MB,
        )?;
        within(
            "warm interpreters",
            self.warm_interpreters,
            0,
            switchyard_exec::sandbox::WARM_SLOTS,
        )?;
        if self.run_memory_budget_mb == Some(0) {
            bail!("the run memory budget must be at least 1 MiB");
        }
        if self.role != NodeRole::All && matches!(self.database()?, Database::Sqlite(_)) {
            bail!(
                "role `{}` needs a database that several nodes share (--database-url postgres://…); on SQLite one node does everything",
                if self.role == NodeRole::Api {
                    "api"
                } else {
                    "worker"
                }
            );
        }
        let d = &self.delivery;
        let delivery = |name: &str| format!("[delivery] {name}");
        within(
            &delivery("poll_interval_ms"),
            d.poll_interval_ms,
            10,
            60_000,
        )?;
        within(&delivery("claim_batch"), d.claim_batch, 1, 10_000)?;
        within(&delivery("lease_s"), d.lease_s, min_lease_s(), 86_400)?;
        within(
            &delivery("endpoint_lease_ms"),
            d.endpoint_lease_ms,
            1_000,
            600_000,
        )?;
        within(
            &delivery("max_queued_per_endpoint"),
            d.max_queued_per_endpoint,
            1,
            1_000_000,
        )?;
        within(
            &delivery("max_queued_total"),
            d.max_queued_total,
            1,
            10_000_000,
        )?;
        within(
            &delivery("max_requests_in_flight"),
            d.max_requests_in_flight,
            1,
            100_000,
        )?;
        within(
            &delivery("disable_after_failing_s"),
            d.disable_after_failing_s,
            3600,
            365 * 86_400,
        )?;
        within(
            &delivery("disable_min_span_s"),
            d.disable_min_span_s,
            0,
            365 * 86_400,
        )?;
        within(
            &delivery("endpoint_cache_ttl_ms"),
            d.endpoint_cache_ttl_ms,
            0,
            60_000,
        )?;
        within(
            &delivery("max_hooks_in_flight"),
            d.max_hooks_in_flight,
            1,
            256,
        )?;
        within(
            &delivery("sync_deadline_ms"),
            d.sync_deadline_ms,
            100,
            60_000,
        )?;
        let p = &self.packages;
        within("[packages] max_mb", p.max_mb, 1, 16 * 1024)?;
        within("[packages] timeout_s", p.timeout_s, 10, 3600)?;
        for (name, value) in [
            ("pip_index_url", &p.pip_index_url),
            ("npm_registry_url", &p.npm_registry_url),
            ("composer_repository_url", &p.composer_repository_url),
        ]
        .into_iter()
        .chain(p.file_hosts.iter().map(|h| ("file_hosts", h)))
        {
            let index =
                url::Url::parse(value).map_err(|e| anyhow::anyhow!("[packages] {name}: {e}"))?;
            if !matches!(index.scheme(), "http" | "https") || index.host_str().is_none() {
                bail!("[packages] {name} must be an http(s) URL with a host");
            }
        }
        let r = &self.retention;
        within("[retention] interval_s", r.interval_s, 1, 86_400)?;
        within("[retention] batch", r.batch, 1, 5000)?;
        let p = &self.postgres;
        within("[postgres] pool_size", p.pool_size, 2, 1000)?;
        within(
            "[postgres] statement_timeout_ms",
            p.statement_timeout_ms,
            100,
            3_600_000,
        )?;
        self.limits
            .check()
            .map_err(|e| anyhow::anyhow!("[limits]: {e}"))?;
        Ok(())
    }

    /// Where the data is kept: `database_url`, else SQLite in the data dir. An empty URL
    /// (`SWITCHYARD_DATABASE_URL=`) is none, as for the keys.
    pub fn database(&self) -> anyhow::Result<Database> {
        match self.database_url.as_deref().map(str::trim) {
            None | Some("") => Ok(Database::Sqlite(self.data_dir.join("switchyard.db"))),
            Some(url) => database(
                url,
                switchyard_store::PgOptions {
                    pool_size: self.postgres.pool_size,
                    statement_timeout_ms: self.postgres.statement_timeout_ms,
                },
            ),
        }
    }
}

/// The shortest `lease_s` the engine runs with, in whole seconds.
fn min_lease_s() -> u64 {
    (switchyard_hub::MIN_LEASE_MS as u64).div_ceil(1000)
}

/// The resolved, validated settings the hub runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where the data is kept.
    pub database: Database,
    /// `SWITCHYARD_ADMIN_KEY`; when absent one is generated on first start.
    pub admin_key: Option<String>,
    /// `SWITCHYARD_MASTER_KEY` (base64, 32 bytes); when absent the data dir's key file.
    pub master_key: Option<String>,
    pub allow_destinations: Vec<IpNet>,
    pub require_https: bool,
    pub log_format: LogFormat,
    pub max_event_bytes: usize,
    pub shutdown_grace: Duration,
    /// The program whose `js-worker` subcommand runs JavaScript executors (this binary).
    pub js_worker: Option<PathBuf>,
    /// The largest private temporary directory an executor may ask for (MiB).
    pub max_run_tmp_mb: u32,
    /// Memory of all runs at once (MiB); `None`: half of the machine's.
    pub run_memory_budget_mb: Option<u32>,
    /// Run child-process languages even without per-run cgroups.
    pub allow_unbounded_runs: bool,
    /// Interpreters started ahead of their runs, at most.
    pub warm_interpreters: u32,
    /// Executors' packages: where they come from and where they are kept; `None`: off.
    pub packages: Option<switchyard_exec::packages::PackageSettings>,
    /// The delivery engine's tunables, validated.
    pub delivery: DeliveryTunables,
    /// What is deleted when.
    pub retention: switchyard_hub::RetentionSettings,
    /// How cron lines are read.
    pub schedules: switchyard_hub::ScheduleSettings,
    /// What this node does.
    pub role: switchyard_hub::Role,
    /// What bounds the listener's connections.
    pub listen_limits: crate::listener::ListenLimits,
    /// Where to write the address listened on, once serving (`--addr-file`).
    pub addr_file: Option<PathBuf>,
    /// What each organization may take of the hub, unless the instance admin set its own.
    pub limits: switchyard_core::limits::Limits,
}

impl Settings {
    /// Settings for a test or a benchmark: a data dir, a port chosen by the OS, loopback allowed;
    /// everything else the defaults (no file, no environment).
    pub fn for_local(data_dir: &Path) -> Settings {
        let args = ServeArgs {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: Some(data_dir.to_path_buf()),
            allow_destinations: Some(vec!["127.0.0.0/8".into(), "::1/128".into()]),
            ..ServeArgs::default()
        };
        Config::layered(None, &args, None)
            .and_then(|c| Settings::from_config(c, None))
            .expect("the defaults and loopback are valid settings")
    }

    /// Resolves flags and variables (`args`) over the settings file over the defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
        let file = args.config.clone().or_else(|| {
            let p = PathBuf::from("switchyard.toml");
            p.exists().then_some(p)
        });
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config = Config::layered(file.as_deref(), &args, env("SWITCHYARD_ADMIN_KEY"))?;
        let mut settings = Settings::from_config(config, env("SWITCHYARD_MASTER_KEY"))?;
        settings.addr_file = args.addr_file;
        Ok(settings)
    }

    /// What the hub runs with, from checked settings and the master key (if given).
    fn from_config(c: Config, master_key: Option<String>) -> anyhow::Result<Settings> {
        let limits = switchyard_core::limits::Limits::default().with(&c.limits);
        let packages_root = c.data_dir.join("packages");
        Ok(Settings {
            database: c.database()?,
            listen: c.listen,
            data_dir: c.data_dir,
            admin_key: c.admin_key,
            master_key,
            allow_destinations: c.allow_destinations,
            require_https: c.require_https,
            log_format: c.log_format,
            max_event_bytes: c.max_event_bytes,
            shutdown_grace: Duration::from_secs(c.shutdown_grace_s),
            js_worker: std::env::current_exe().ok(),
            max_run_tmp_mb: c.max_run_tmp_mb,
            run_memory_budget_mb: c.run_memory_budget_mb,
            allow_unbounded_runs: c.allow_unbounded_runs,
            warm_interpreters: c.warm_interpreters,
            packages: c
                .packages
                .enabled
                .then(|| switchyard_exec::packages::PackageSettings {
                    root: packages_root.clone(),
                    pip_index: url::Url::parse(&c.packages.pip_index_url)
                        .expect("checked by Config::validate"),
                    npm_registry: url::Url::parse(&c.packages.npm_registry_url)
                        .expect("checked by Config::validate"),
                    composer_repository: url::Url::parse(&c.packages.composer_repository_url)
                        .expect("checked by Config::validate"),
                    file_hosts: c
                        .packages
                        .file_hosts
                        .iter()
                        .filter_map(|h| url::Url::parse(h).ok())
                        .collect(),
                    install_scripts: c.packages.install_scripts,
                    max_mb: c.packages.max_mb,
                    timeout: Duration::from_secs(c.packages.timeout_s),
                }),
            retention: c.retention.resolve(),
            schedules: switchyard_hub::ScheduleSettings {
                seconds: c.schedules.seconds_field,
            },
            delivery: c.delivery,
            role: c.role.into(),
            listen_limits: crate::listener::ListenLimits::default(),
            addr_file: None,
            limits,
        })
    }

    /// The delivery engine's settings for node `node`, from `[delivery]`.
    pub fn engine(&self, node: String) -> switchyard_hub::EngineConfig {
        let mut c = switchyard_hub::EngineConfig::new(node);
        let t = &self.delivery;
        c.poll_interval = Duration::from_millis(t.poll_interval_ms);
        c.claim_batch = t.claim_batch;
        c.lease_ms = t.lease_s as i64 * 1000;
        c.endpoint_lease_ms = t.endpoint_lease_ms as i64;
        c.deliver = self.role.delivers();
        c.max_queued_per_endpoint = t.max_queued_per_endpoint;
        c.max_queued_total = t.max_queued_total;
        c.max_requests_in_flight = t.max_requests_in_flight;
        c.disable_policy.failing_for_ms = t.disable_after_failing_s as i64 * 1000;
        c.disable_policy.min_span_ms = t.disable_min_span_s as i64 * 1000;
        c.endpoint_cache_ttl = Duration::from_millis(t.endpoint_cache_ttl_ms);
        c.max_hooks_in_flight = t.max_hooks_in_flight;
        c.sync_deadline = Duration::from_millis(t.sync_deadline_ms);
        c
    }
}

fn database(url: &str, options: switchyard_store::PgOptions) -> anyhow::Result<Database> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres {
            url: url.to_string(),
            options,
        });
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() {
        bail!("the database URL names no file");
    }
    Ok(Database::Sqlite(PathBuf::from(path)))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
