//! The settings' layers and rules: defaults, file, flags; bounds and unknown keys refused by
//! name; the example file is the defaults.

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

/// Settings from `file` (when given) and the flags `args`, as `serve` resolves them.
fn resolve_with(file: Option<&str>, args: ServeArgs) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.toml");
    if let Some(text) = file {
        std::fs::write(&path, text).expect("write");
    }
    Settings::resolve(ServeArgs {
        config: file.map(|_| path.clone()),
        ..args
    })
}

#[test]
fn roles_other_than_all_need_a_shared_database() {
    let resolve = |role: NodeRole, url: Option<&str>| {
        resolve_with(
            None,
            ServeArgs {
                role: Some(role),
                database_url: url.map(str::to_string),
                ..Default::default()
            },
        )
    };
    let pg = Some("postgres://u@localhost:5432/db");
    let api = resolve(NodeRole::Api, pg).expect("api on PostgreSQL");
    assert_eq!(api.role, switchyard_hub::Role::Api);
    assert!(
        !api.engine("n".into()).deliver,
        "an api node delivers nothing"
    );
    let worker = resolve(NodeRole::Worker, pg).expect("worker on PostgreSQL");
    assert!(worker.engine("n".into()).deliver);
    assert!(!worker.role.serves_api());
    let err = resolve(NodeRole::Worker, None)
        .expect_err("worker on SQLite")
        .to_string();
    assert!(err.contains("several nodes share"), "{err}");
    let err = resolve(NodeRole::Worker, Some(" "))
        .expect_err("an empty URL is SQLite")
        .to_string();
    assert!(err.contains("several nodes share"), "{err}");
    let err = resolve_with(Some("role = \"leader\"\n"), ServeArgs::default())
        .expect_err("unknown role")
        .to_string();
    assert!(
        err.contains("leader") && err.contains("`all`, `api`, `worker`"),
        "{err}"
    );
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
    assert_eq!(s.retention, switchyard_hub::RetentionSettings::default());
    match s.database {
        Database::Sqlite(p) => assert_eq!(p, PathBuf::from("./switchyard-data/switchyard.db")),
        other => panic!("{other:?}"),
    }
    let pg = Config::layered(None, &ServeArgs::default(), None)
        .expect("defaults")
        .postgres;
    let options = switchyard_store::PgOptions::default();
    assert_eq!(
        (pg.pool_size, pg.statement_timeout_ms),
        (options.pool_size, options.statement_timeout_ms)
    );
}

#[test]
fn flags_over_the_file_over_the_defaults() {
    let file = "listen = \"127.0.0.1:9999\"\nallow_destinations = [\"10.0.0.0/8\", \"192.0.2.7\"]\nlog_format = \"json\"\nshutdown_grace_s = 3\n";
    // The file over the defaults; what it leaves keeps the default.
    let s = resolve_with(Some(file), ServeArgs::default()).expect("resolve");
    assert_eq!(s.listen.port(), 9999);
    assert_eq!(
        s.allow_destinations,
        vec![
            "10.0.0.0/8".parse::<IpNet>().expect("cidr"),
            "192.0.2.7/32".parse::<IpNet>().expect("cidr")
        ]
    );
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.shutdown_grace, Duration::from_secs(3));
    assert_eq!(s.max_event_bytes, 262_144, "the default");
    // Flags (and the variables clap reads under them) over the file.
    let s = resolve_with(
        Some(file),
        ServeArgs {
            log_format: Some(LogFormat::Text),
            allow_destinations: Some(vec!["127.0.0.0/8".into()]),
            max_event_bytes: Some(4096),
            ..Default::default()
        },
    )
    .expect("resolve");
    assert_eq!(s.log_format, LogFormat::Text, "the flag wins over the file");
    assert_eq!(
        s.allow_destinations,
        vec!["127.0.0.0/8".parse::<IpNet>().expect("cidr")],
        "a list from a flag replaces the file's"
    );
    assert_eq!(s.max_event_bytes, 4096);
    assert_eq!(
        s.listen.port(),
        9999,
        "what the flags leave, the file gives"
    );
    let err = resolve_with(
        None,
        ServeArgs {
            allow_destinations: Some(vec!["10.0.0.0/33".into()]),
            ..Default::default()
        },
    )
    .expect_err("not a CIDR")
    .to_string();
    assert!(err.contains("`10.0.0.0/33` in allow-destination"), "{err}");
}

#[test]
fn a_section_in_the_file_changes_only_what_it_names() {
    let s = resolve_with(
        Some("[delivery]\nclaim_batch = 50\npoll_interval_ms = 20\n"),
        ServeArgs::default(),
    )
    .expect("resolve");
    let engine = s.engine("n".into());
    assert_eq!(engine.claim_batch, 50);
    assert_eq!(engine.poll_interval, Duration::from_millis(20));
    assert_eq!(
        engine.lease_ms,
        switchyard_hub::EngineConfig::new("n").lease_ms,
        "an absent tunable keeps its default"
    );
    let s = resolve_with(
        Some("[schedules]\nseconds_field = true\n"),
        ServeArgs::default(),
    )
    .expect("resolve");
    assert!(s.schedules.seconds);
    let s = resolve_with(
        Some("[retention]\nmax_age_s = 0\npayload_max_age_s = 60\n"),
        ServeArgs::default(),
    )
    .expect("resolve");
    assert_eq!(s.retention.max_age, None, "0 keeps everything");
    assert_eq!(s.retention.payload_max_age, Some(Duration::from_secs(60)));
    assert_eq!(s.retention.batch, 100);
    let s = resolve_with(Some("[limits]\nruns = 3\n"), ServeArgs::default()).expect("limits");
    assert_eq!(s.limits.runs, 3);
    assert_eq!(
        s.limits.js_runs,
        switchyard_core::limits::Limits::default().js_runs
    );
}

#[test]
fn a_setting_out_of_bounds_or_unknown_is_refused_by_name() {
    let refused = |file: &str, says: &str| {
        let err = resolve_with(Some(file), ServeArgs::default())
            .expect_err(file)
            .to_string();
        assert!(err.contains(says), "{file}: {err}");
    };
    refused("[delivery]\nsync_deadline_ms = 50\n", "sync_deadline_ms");
    refused("[delivery]\nclaim_batch = 0\n", "claim_batch");
    // A lease under the longest request or run is refused at start, naming the bound.
    refused(
        "[delivery]\nlease_s = 10\n",
        "lease_s must be between 125 and 86400, not 10",
    );
    refused("[retention]\nbatch = 0\n", "[retention] batch");
    refused("[postgres]\npool_size = 1\n", "[postgres] pool_size");
    refused("max_event_bytes = 10\n", "max event bytes");
    refused("run_memory_budget_mb = 0\n", "at least 1 MiB");
    refused("lissen = 1\n", "lissen");
    refused("[delivery]\nclaim_bach = 1\n", "claim_bach");
    refused("listen = 5\n", "listen");
    refused("listen = ", "parsing");
    let s = resolve_with(Some("[delivery]\nlease_s = 125\n"), ServeArgs::default())
        .expect("the shortest lease");
    assert!(s.engine("n".into()).check().is_ok());
}

#[test]
fn the_admin_key_comes_from_the_environment_over_the_file() {
    let config = |file: Option<&str>, env: Option<&str>| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("switchyard.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write");
        }
        Config::layered(
            file.map(|_| path.as_path()),
            &ServeArgs::default(),
            env.map(str::to_string),
        )
        .expect("resolve")
        .admin_key
    };
    assert_eq!(config(None, None), None);
    let file = Some("admin_key = \"sy_from_file\"\n");
    assert_eq!(config(file, None).as_deref(), Some("sy_from_file"));
    assert_eq!(
        config(file, Some("sy_from_env")).as_deref(),
        Some("sy_from_env")
    );
    assert_eq!(
        config(file, Some("")).as_deref(),
        Some("sy_from_file"),
        "an empty variable is none"
    );
}
