//! Operator settings: flags, then environment, then `switchyard.toml`, then defaults, resolved
//! and validated once in [`Settings::resolve`]. The defaults live in one place each: here for
//! the hub's own settings, in `EngineConfig::new` for the delivery engine's tunables.

use anyhow::{Context, bail};
use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The settings of `switchyard serve` as flags and environment variables. Every field is
/// optional here so that a value absent from both can come from the file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8700]
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database, master key and node id [default: ./switchyard-data]
    #[arg(long, env = "SWITCHYARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: SQLite in the data dir]; `sqlite://PATH` or
    /// `postgres://USER@HOST:PORT/DB` (several nodes may share one PostgreSQL database)
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// CIDRs exempt from the private-address guard, comma-separated (e.g. 127.0.0.0/8)
    #[arg(
        long = "allow-destination",
        env = "SWITCHYARD_ALLOW_DESTINATIONS",
        value_delimiter = ','
    )]
    pub allow_destinations: Option<Vec<String>>,
    /// Refuse plain-http webhook destinations
    #[arg(long, env = "SWITCHYARD_REQUIRE_HTTPS")]
    pub require_https: Option<bool>,
    /// Log format: text or json
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Largest event accepted, in bytes [default: 262144]
    #[arg(long, env = "SWITCHYARD_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Seconds to wait for requests in flight at shutdown [default: 10]
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_S")]
    pub shutdown_grace_s: Option<u64>,
    /// Largest private temporary directory of one executor run, in MiB [default: 256]
    #[arg(long, env = "SWITCHYARD_MAX_RUN_TMP_MB")]
    pub max_run_tmp_mb: Option<u32>,
    /// Memory of all executor runs at once, in MiB; runs wait for room [default: half of the
    /// machine's memory]
    #[arg(long, env = "SWITCHYARD_RUN_MEMORY_BUDGET_MB")]
    pub run_memory_budget_mb: Option<u32>,
    /// Run Python, PHP and Node.js executors even where the kernel cannot bound each run's
    /// memory and processes (no cgroups) [default: false]
    #[arg(long, env = "SWITCHYARD_ALLOW_UNBOUNDED_RUNS", num_args = 0..=1, default_missing_value = "true")]
    pub allow_unbounded_runs: Option<bool>,
    /// What this node does: `all` (serve the API and deliver), `api` (serve the API and
    /// publish; deliver nothing) or `worker` (deliver, run retention and schedules; serve only
    /// health and metrics) [default: all]
    #[arg(long, env = "SWITCHYARD_ROLE")]
    pub role: Option<String>,
    /// Settings file [default: ./switchyard.toml if it exists]
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `switchyard.toml`: the same settings, snake_case.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    allow_destinations: Option<Vec<String>>,
    require_https: Option<bool>,
    log_format: Option<String>,
    max_event_bytes: Option<usize>,
    shutdown_grace_s: Option<u64>,
    max_run_tmp_mb: Option<u32>,
    run_memory_budget_mb: Option<u32>,
    allow_unbounded_runs: Option<bool>,
    role: Option<String>,
    admin_key: Option<String>,
    delivery: Option<DeliveryTunables>,
    retention: Option<RetentionFile>,
    schedules: Option<SchedulesFile>,
    postgres: Option<PostgresFile>,
    /// `[limits]`: what each organization may take of the hub (its shares and quotas),
    /// unless the instance admin set its own.
    limits: Option<switchyard_core::limits::OrgLimits>,
}

/// `[postgres]` in `switchyard.toml`: how a node uses a PostgreSQL database.
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresFile {
    /// Connections this node keeps open at most (2–1000, default 16).
    pub pool_size: Option<usize>,
    /// The longest a statement (or a wait for a lock) may take before the server cancels it,
    /// in milliseconds (100–3600000, default 30000).
    pub statement_timeout_ms: Option<u64>,
}

impl PostgresFile {
    fn resolve(&self) -> anyhow::Result<switchyard_store::PgOptions> {
        let mut o = switchyard_store::PgOptions::default();
        if let Some(n) = self.pool_size {
            if !(2..=1000).contains(&n) {
                bail!("[postgres] pool_size must be between 2 and 1000, not {n}");
            }
            o.pool_size = n;
        }
        if let Some(t) = self.statement_timeout_ms {
            if !(100..=3_600_000).contains(&t) {
                bail!("[postgres] statement_timeout_ms must be between 100 and 3600000, not {t}");
            }
            o.statement_timeout_ms = t;
        }
        Ok(o)
    }
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

/// `[schedules]` in `switchyard.toml`.
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SchedulesFile {
    /// Accept a sixth, leading cron field for seconds (for tests and development; default
    /// false: standard five-field lines only).
    pub seconds_field: Option<bool>,
}

/// `[retention]` in `switchyard.toml`.
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    /// Age in seconds past which finished events, their deliveries, attempts and runs are
    /// deleted (default 2592000, 30 days); 0 keeps everything.
    pub max_age_s: Option<u64>,
    /// Age in seconds past which the payload of an event whose every delivery succeeded is
    /// dropped (`data` becomes `null`), for organizations that set none; default 0, payloads
    /// live as long as their events.
    pub payload_max_age_s: Option<u64>,
    /// How often retention runs, in seconds (default 60).
    pub interval_s: Option<u64>,
    /// Events deleted per write (1–5000, default 100).
    pub batch: Option<u32>,
}

impl RetentionFile {
    fn resolve(&self) -> anyhow::Result<switchyard_hub::RetentionSettings> {
        let mut r = switchyard_hub::RetentionSettings::default();
        match self.max_age_s {
            Some(0) => r.max_age = None,
            Some(s) => r.max_age = Some(Duration::from_secs(s)),
            None => {}
        }
        if let Some(s) = self.payload_max_age_s.filter(|s| *s > 0) {
            r.payload_max_age = Some(Duration::from_secs(s));
        }
        if let Some(i) = self.interval_s {
            if !(1..=86_400).contains(&i) {
                bail!("[retention] interval_s must be between 1 and 86400, not {i}");
            }
            r.interval = Duration::from_secs(i);
        }
        if let Some(b) = self.batch {
            if !(1..=5000).contains(&b) {
                bail!("[retention] batch must be between 1 and 5000, not {b}");
            }
            r.batch = b;
        }
        Ok(r)
    }
}

/// `[delivery]` in `switchyard.toml`: the delivery engine's tunables. Absent ones keep the
/// engine's defaults.
#[derive(Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryTunables {
    /// How often due retries are looked for when nothing wakes the poller (10–60000 ms).
    pub poll_interval_ms: Option<u64>,
    /// Deliveries claimed per poll (1–10000).
    pub claim_batch: Option<u32>,
    /// How long a claim lasts before another node may take it over (125 s – 1 day: a delivery
    /// is started only while its claim holds for the longest request or run it may take).
    pub lease_s: Option<u64>,
    /// How long a node holds an endpoint's lease; a node that dies has its endpoints taken
    /// over this long after its last renewal (1000–600000 ms).
    pub endpoint_lease_ms: Option<u64>,
    /// Deliveries one endpoint may hold in memory (1–1000000).
    pub max_queued_per_endpoint: Option<usize>,
    /// Deliveries all endpoints together may hold in memory (1–10000000).
    pub max_queued_total: Option<usize>,
    /// Requests to endpoints in flight at once, all endpoints together (1–100000).
    pub max_requests_in_flight: Option<usize>,
    /// An endpoint whose every attempt has failed this long is disabled (1 h – 1 year).
    pub disable_after_failing_s: Option<u64>,
    /// ... if its failures span at least this long (0 – 1 year).
    pub disable_min_span_s: Option<u64>,
    /// How long an endpoint's configuration is cached (0–60000 ms).
    pub endpoint_cache_ttl_ms: Option<u64>,
    /// Event hooks running at once (1–256).
    pub max_hooks_in_flight: Option<usize>,
    /// How long a publish waits for its synchronous targets (100–60000 ms).
    pub sync_deadline_ms: Option<u64>,
}

/// The shortest `lease_s` the engine runs with, in whole seconds.
fn min_lease_s() -> u64 {
    (switchyard_hub::MIN_LEASE_MS as u64).div_ceil(1000)
}

impl DeliveryTunables {
    fn validate(&self) -> anyhow::Result<()> {
        fn within<T: PartialOrd + std::fmt::Display + Copy>(
            name: &str,
            v: Option<T>,
            lo: T,
            hi: T,
        ) -> anyhow::Result<()> {
            match v {
                Some(v) if v < lo || v > hi => {
                    bail!("[delivery] {name} must be between {lo} and {hi}, not {v}")
                }
                _ => Ok(()),
            }
        }
        within("poll_interval_ms", self.poll_interval_ms, 10, 60_000)?;
        within("claim_batch", self.claim_batch, 1, 10_000)?;
        within("lease_s", self.lease_s, min_lease_s(), 86_400)?;
        within("endpoint_lease_ms", self.endpoint_lease_ms, 1_000, 600_000)?;
        within(
            "max_queued_per_endpoint",
            self.max_queued_per_endpoint,
            1,
            1_000_000,
        )?;
        within("max_queued_total", self.max_queued_total, 1, 10_000_000)?;
        within(
            "max_requests_in_flight",
            self.max_requests_in_flight,
            1,
            100_000,
        )?;
        within(
            "disable_after_failing_s",
            self.disable_after_failing_s,
            3600,
            365 * 86_400,
        )?;
        within(
            "disable_min_span_s",
            self.disable_min_span_s,
            0,
            365 * 86_400,
        )?;
        within(
            "endpoint_cache_ttl_ms",
            self.endpoint_cache_ttl_ms,
            0,
            60_000,
        )?;
        within("max_hooks_in_flight", self.max_hooks_in_flight, 1, 256)?;
        within("sync_deadline_ms", self.sync_deadline_ms, 100, 60_000)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The resolved, validated settings.
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
    /// What each organization may take of the hub, unless the instance admin set its own.
    pub limits: switchyard_core::limits::Limits,
}

/// Default of [`Settings::max_run_tmp_mb`].
pub const DEFAULT_MAX_RUN_TMP_MB: u32 = 256;

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
        Settings::layered(args, FileSettings::default(), |_| None)
            .expect("the defaults and loopback are valid settings")
    }

    /// The delivery engine's settings for node `node`: its defaults, then `[delivery]`.
    pub fn engine(&self, node: String) -> switchyard_hub::EngineConfig {
        let mut c = switchyard_hub::EngineConfig::new(node);
        let t = &self.delivery;
        if let Some(v) = t.poll_interval_ms {
            c.poll_interval = Duration::from_millis(v);
        }
        if let Some(v) = t.claim_batch {
            c.claim_batch = v;
        }
        if let Some(v) = t.lease_s {
            c.lease_ms = v as i64 * 1000;
        }
        if let Some(v) = t.endpoint_lease_ms {
            c.endpoint_lease_ms = v as i64;
        }
        c.deliver = self.role.delivers();
        if let Some(v) = t.max_queued_per_endpoint {
            c.max_queued_per_endpoint = v;
        }
        if let Some(v) = t.max_queued_total {
            c.max_queued_total = v;
        }
        if let Some(v) = t.max_requests_in_flight {
            c.max_requests_in_flight = v;
        }
        if let Some(v) = t.disable_after_failing_s {
            c.disable_policy.failing_for_ms = v as i64 * 1000;
        }
        if let Some(v) = t.disable_min_span_s {
            c.disable_policy.min_span_ms = v as i64 * 1000;
        }
        if let Some(v) = t.endpoint_cache_ttl_ms {
            c.endpoint_cache_ttl = Duration::from_millis(v);
        }
        if let Some(v) = t.max_hooks_in_flight {
            c.max_hooks_in_flight = v;
        }
        if let Some(v) = t.sync_deadline_ms {
            c.sync_deadline = Duration::from_millis(v);
        }
        c
    }

    /// Resolves flags/env (`args`) over the settings file over defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
        let file_path = args.config.clone().or_else(|| {
            let p = PathBuf::from("switchyard.toml");
            p.exists().then_some(p)
        });
        let file: FileSettings = match &file_path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
            }
            None => FileSettings::default(),
        };
        Settings::layered(args, file, |k| std::env::var(k).ok())
    }

    /// Flags and environment (`args`, which clap filled from both) over `file` over defaults;
    /// `env` answers the settings that only the environment gives (keys).
    fn layered(
        args: ServeArgs,
        file: FileSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let delivery = file.delivery.unwrap_or_default();
        delivery.validate()?;
        let limits = file.limits.unwrap_or_default();
        limits
            .check()
            .map_err(|e| anyhow::anyhow!("[limits]: {e}"))?;
        let limits = switchyard_core::limits::Limits::default().with(&limits);
        let retention = file.retention.unwrap_or_default().resolve()?;
        let schedules = switchyard_hub::ScheduleSettings {
            seconds: file
                .schedules
                .unwrap_or_default()
                .seconds_field
                .unwrap_or(false),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("switchyard-data"));
        let pg_options = file.postgres.unwrap_or_default().resolve()?;
        // An empty value (`SWITCHYARD_DATABASE_URL=`) means unset, as for the keys.
        let database_url = args
            .database_url
            .filter(|u| !u.trim().is_empty())
            .or(file.database_url);
        let database = match database_url {
            None => Database::Sqlite(data_dir.join("switchyard.db")),
            Some(url) => database(&url, pg_options)?,
        };
        let allow = args
            .allow_destinations
            .or(file.allow_destinations)
            .unwrap_or_default();
        let allow_destinations = allow
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .with_context(|| format!("`{s}` in allow-destination is not a CIDR"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let log_format = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("log format must be `text` or `json`, not `{other}`"),
        };
        let max_event_bytes = args
            .max_event_bytes
            .or(file.max_event_bytes)
            .unwrap_or(256 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&max_event_bytes) {
            bail!("max event bytes must be between 1 KiB and 16 MiB");
        }
        let max_run_tmp_mb = args
            .max_run_tmp_mb
            .or(file.max_run_tmp_mb)
            .unwrap_or(DEFAULT_MAX_RUN_TMP_MB);
        if !(1..=switchyard_core::executor::MAX_TMP_MB).contains(&max_run_tmp_mb) {
            bail!(
                "max run tmp MiB must be between 1 and {}",
                switchyard_core::executor::MAX_TMP_MB
            );
        }
        let role = match args.role.or(file.role).as_deref() {
            None | Some("all") => switchyard_hub::Role::All,
            Some("api") => switchyard_hub::Role::Api,
            Some("worker") => switchyard_hub::Role::Worker,
            Some(other) => bail!("role must be `all`, `api` or `worker`, not `{other}`"),
        };
        if role != switchyard_hub::Role::All && matches!(database, Database::Sqlite(_)) {
            bail!(
                "role `{}` needs a database that several nodes share (--database-url postgres://…); on SQLite one node does everything",
                if role == switchyard_hub::Role::Api {
                    "api"
                } else {
                    "worker"
                }
            );
        }
        let run_memory_budget_mb = args.run_memory_budget_mb.or(file.run_memory_budget_mb);
        if run_memory_budget_mb == Some(0) {
            bail!("the run memory budget must be at least 1 MiB");
        }
        Ok(Settings {
            listen_limits: crate::listener::ListenLimits::default(),
            limits,
            role,
            max_run_tmp_mb,
            run_memory_budget_mb,
            allow_unbounded_runs: args
                .allow_unbounded_runs
                .or(file.allow_unbounded_runs)
                .unwrap_or(false),
            delivery,
            retention,
            schedules,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8700))),
            database,
            data_dir,
            admin_key: env("SWITCHYARD_ADMIN_KEY")
                .filter(|k| !k.is_empty())
                .or(file.admin_key),
            master_key: env("SWITCHYARD_MASTER_KEY").filter(|k| !k.is_empty()),
            allow_destinations,
            require_https: args.require_https.or(file.require_https).unwrap_or(false),
            log_format,
            max_event_bytes,
            shutdown_grace: Duration::from_secs(
                args.shutdown_grace_s
                    .or(file.shutdown_grace_s)
                    .unwrap_or(10),
            ),
            js_worker: std::env::current_exe().ok(),
        })
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
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        let sqlite = |url: &str| match database(url, Default::default()).expect("ok") {
            Database::Sqlite(p) => p,
            other => panic!("{url} is not SQLite: {other:?}"),
        };
        assert_eq!(sqlite("sqlite:///tmp/x.db"), PathBuf::from("/tmp/x.db"));
        assert_eq!(sqlite("sqlite:x.db"), PathBuf::from("x.db"));
        assert!(matches!(
            database("postgres://u@localhost:5432/db", Default::default()).expect("ok"),
            Database::Postgres { url, .. } if url == "postgres://u@localhost:5432/db"
        ));
    }

    #[test]
    fn roles_other_than_all_need_a_shared_database() {
        let resolve = |role: &str, url: Option<&str>| {
            Settings::layered(
                ServeArgs {
                    role: Some(role.into()),
                    database_url: url.map(str::to_string),
                    ..Default::default()
                },
                FileSettings::default(),
                |_| None,
            )
        };
        let pg = Some("postgres://u@localhost:5432/db");
        let api = resolve("api", pg).expect("api on PostgreSQL");
        assert_eq!(api.role, switchyard_hub::Role::Api);
        assert!(
            !api.engine("n".into()).deliver,
            "an api node delivers nothing"
        );
        let worker = resolve("worker", pg).expect("worker on PostgreSQL");
        assert!(worker.engine("n".into()).deliver);
        assert!(!worker.role.serves_api());
        let err = resolve("worker", None)
            .expect_err("worker on SQLite")
            .to_string();
        assert!(err.contains("several nodes share"), "{err}");
        let err = resolve("worker", Some(" "))
            .expect_err("an empty URL is SQLite")
            .to_string();
        assert!(err.contains("several nodes share"), "{err}");
        let err = resolve("leader", pg).expect_err("unknown role").to_string();
        assert!(err.contains("`all`, `api` or `worker`"), "{err}");
    }

    #[test]
    fn the_example_settings_file_is_valid_and_matches_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../switchyard.toml.example");
        let s = Settings::resolve(ServeArgs {
            config: Some(example),
            ..Default::default()
        })
        .expect("the example resolves");
        let from_example = s.engine("n".into());
        let defaults = switchyard_hub::EngineConfig::new("n");
        assert_eq!(from_example.poll_interval, defaults.poll_interval);
        assert_eq!(from_example.claim_batch, defaults.claim_batch);
        assert_eq!(from_example.lease_ms, defaults.lease_ms);
        assert_eq!(from_example.endpoint_lease_ms, defaults.endpoint_lease_ms);
        assert_eq!(from_example.deliver, defaults.deliver);
        assert_eq!(s.role, switchyard_hub::Role::All);
        assert_eq!(
            from_example.max_queued_per_endpoint,
            defaults.max_queued_per_endpoint
        );
        assert_eq!(from_example.max_queued_total, defaults.max_queued_total);
        assert_eq!(
            from_example.max_requests_in_flight,
            defaults.max_requests_in_flight
        );
        assert_eq!(from_example.disable_policy, defaults.disable_policy);
        assert_eq!(from_example.endpoint_cache_ttl, defaults.endpoint_cache_ttl);
        assert_eq!(
            from_example.max_hooks_in_flight,
            defaults.max_hooks_in_flight
        );
        assert_eq!(from_example.sync_deadline, defaults.sync_deadline);
        assert!(!s.schedules.seconds);
        assert_eq!(s.limits, switchyard_core::limits::Limits::default());
    }

    #[test]
    fn file_settings_fill_what_flags_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nallow_destinations = [\"10.0.0.0/8\"]\nlog_format = \"json\"\n").expect("write");
        let s = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            log_format: Some("text".into()),
            ..Default::default()
        })
        .expect("resolve");
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(
            s.allow_destinations,
            vec!["10.0.0.0/8".parse::<IpNet>().expect("cidr")]
        );
        assert_eq!(s.log_format, LogFormat::Text, "the flag wins over the file");
        std::fs::write(
            &file,
            "[delivery]\nclaim_batch = 50\npoll_interval_ms = 20\n",
        )
        .expect("write");
        let s = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .expect("resolve");
        let engine = s.engine("n".into());
        assert_eq!(engine.claim_batch, 50);
        assert_eq!(engine.poll_interval, Duration::from_millis(20));
        assert_eq!(
            engine.lease_ms,
            switchyard_hub::EngineConfig::new("n").lease_ms,
            "an absent tunable keeps the engine's default"
        );
        std::fs::write(&file, "[schedules]\nseconds_field = true\n").expect("write");
        let s = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .expect("resolve");
        assert!(s.schedules.seconds);
        std::fs::write(&file, "[delivery]\nsync_deadline_ms = 50\n").expect("write");
        let err = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("sync_deadline_ms"), "{err}");
        std::fs::write(&file, "[delivery]\nclaim_batch = 0\n").expect("write");
        let err = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("claim_batch"), "{err}");
        // A lease under the longest request or run is refused at start, naming the bound; the
        // shortest one allowed runs.
        std::fs::write(&file, "[delivery]\nlease_s = 10\n").expect("write");
        let err = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("lease_s must be between 125 and 86400, not 10"),
            "{err}"
        );
        std::fs::write(&file, "[delivery]\nlease_s = 125\n").expect("write");
        let s = Settings::resolve(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .expect("the shortest lease");
        assert!(s.engine("n".into()).check().is_ok());
        std::fs::write(&file, "lissen = 1\n").expect("write");
        assert!(
            Settings::resolve(ServeArgs {
                config: Some(file),
                ..Default::default()
            })
            .is_err()
        );
    }
}
