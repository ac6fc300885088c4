//! Nothing lost: the real binary killed with SIGKILL mid-load, or stopped with SIGTERM, and
//! restarted on the same data dir delivers every event it accepted.

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Hub {
    /// Creates org `o` with an endpoint subscribed to everything; returns the admin key.
    async fn setup(&self, receiver_url: &str) {
        let (s, _) = self
            .post("/v1/orgs", ADMIN_KEY, json!({"id": "o", "name": "O"}))
            .await
            .expect("org");
        assert_eq!(s, 201);
        let (s, ep) = self
            .post(
                "/v1/orgs/o/endpoints",
                ADMIN_KEY,
                json!({"url": receiver_url, "max_in_flight": 4, "retry_schedule_s": [0, 1, 1, 1]}),
            )
            .await
            .expect("endpoint");
        assert_eq!(s, 201);
        let (s, _) = self
            .post(
                "/v1/orgs/o/subscriptions",
                ADMIN_KEY,
                json!({"event_types": ["*"], "endpoint_id": ep["id"]}),
            )
            .await
            .expect("subscription");
        assert_eq!(s, 201);
    }

    /// Publishes events `full-0`, `full-1`, … with `data(i)` until one is refused (at most
    /// `max`); the refusal must be a 503. Returns the ids accepted and the refusal.
    async fn publish_until_refused(
        &self,
        max: u64,
        data: impl Fn(u64) -> Value,
    ) -> (Vec<String>, Value) {
        let mut accepted = Vec::new();
        for i in 0..max {
            let id = format!("full-{i}");
            let (s, v) = self
                .post(
                    "/v1/orgs/o/events",
                    ADMIN_KEY,
                    json!({"id": id, "type": "T", "data": data(i)}),
                )
                .await
                .expect("publish");
            if s != 202 {
                assert_eq!(s, 503, "{v}");
                return (accepted, v);
            }
            accepted.push(id);
        }
        panic!("{max} events accepted: the disk never filled");
    }

    /// `/readyz`'s status and body.
    async fn readyz(&self) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    }

    /// Every event of `accepted` is stored and reaches `rx`.
    async fn kept_and_delivered(&self, rx: &TestReceiver, accepted: &[String]) {
        for id in accepted {
            let trace = self
                .get(&format!("/v1/orgs/o/events/{id}"), ADMIN_KEY)
                .await;
            assert_eq!(trace["id"], json!(id), "{id} lost");
        }
        let want: HashSet<String> = accepted.iter().cloned().collect();
        let got = rx
            .wait_until(Duration::from_secs(30), |g| {
                distinct_ids(g).is_superset(&want)
            })
            .await;
        assert!(distinct_ids(&got).is_superset(&want));
    }
}

fn distinct_ids(got: &[Received]) -> HashSet<String> {
    got.iter().filter_map(|r| r.header("webhook-id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_accepted_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = TestReceiver::start().await;
    // Slow at first: deliveries pile up pending and in flight when the kill comes.
    rx.always(Reply::status(200).delay(Duration::from_millis(200)));
    let mut hub = start_hub(dir.path()).await;
    hub.setup(&rx.url("/")).await;

    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let hub_base = hub.base.clone();
    let mut publishers = Vec::new();
    for p in 0..8 {
        let (accepted, base) = (accepted.clone(), hub_base.clone());
        publishers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let id = format!("k{p}-{i}");
                let r = client
                    .post(format!("{base}/v1/orgs/o/events"))
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"id": id, "type": "T", "data": {"i": i}}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => accepted.lock().expect("lock").push(id),
                    _ => return,
                }
            }
        }));
    }
    // Kill while publishers are still sending and deliveries are in flight.
    while accepted.lock().expect("lock").len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.child.kill().expect("SIGKILL");
    hub.child.wait().expect("wait");
    for p in publishers {
        let _ = p.await;
    }
    let accepted: HashSet<String> = accepted.lock().expect("lock").iter().cloned().collect();
    let before = distinct_ids(&rx.received()).len();
    assert!(
        before < accepted.len(),
        "the kill should leave deliveries outstanding ({before} of {})",
        accepted.len()
    );
    drop(hub);

    rx.always(Reply::status(200));
    let hub = start_hub(dir.path()).await;
    rx.wait_until(Duration::from_secs(60), |got| {
        let ids = distinct_ids(got);
        accepted.iter().all(|a| ids.contains(a))
    })
    .await;
    let sample = accepted.iter().next().expect("one");
    let trace = hub
        .get(&format!("/v1/orgs/o/events/{sample}"), ADMIN_KEY)
        .await;
    assert_eq!(trace["id"], sample.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_deliveries_and_restart_resumes_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = TestReceiver::start().await;
    rx.always(Reply::status(200).delay(Duration::from_millis(1500)));
    let mut hub = start_hub(dir.path()).await;
    hub.setup(&rx.url("/")).await;
    for i in 0..12 {
        let (s, _) = hub
            .post(
                "/v1/orgs/o/events",
                ADMIN_KEY,
                json!({"id": format!("s{i}"), "type": "T", "data": {}}),
            )
            .await
            .expect("publish");
        assert_eq!(s, 202);
    }
    let in_flight = rx.wait_for(4, Duration::from_secs(10)).await;
    let pid = hub.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let started = Instant::now();
    let exit = hub.child.wait().expect("wait");
    assert!(exit.success(), "a clean exit after SIGTERM, got {exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(hub);

    rx.always(Reply::status(200));
    let hub = start_hub(dir.path()).await;
    // The requests in flight at SIGTERM finished and were recorded: not sent again.
    for r in &in_flight[..4] {
        let id = r.header("webhook-id").expect("id");
        let t = hub.get(&format!("/v1/orgs/o/events/{id}"), ADMIN_KEY).await;
        assert_eq!(t["deliveries"][0]["status"], "delivered", "{t}");
        assert_eq!(t["deliveries"][0]["attempt_count"], 1);
    }
    rx.wait_until(Duration::from_secs(30), |got| distinct_ids(got).len() == 12)
        .await;
}

/// A tmpfs of `mb` MiB mounted on a fresh directory (the tests run as root), unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(mb: u32) -> SmallDisk {
        SmallDisk::mount_with(mb, "")
    }

    /// With extra tmpfs options (`,uid=…,mode=…`).
    fn mount_with(mb: u32, options: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tmp");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m{options}"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a small tmpfs needs root (CI runs as root)"
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// A database of the tests' PostgreSQL server in a tablespace of its own; both are dropped when
/// this is (the hub using them stopped first).
struct PgSpace {
    name: String,
}

impl Drop for PgSpace {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = Command::new("psql")
            .arg(test_postgres())
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ])
            .args(["-c", &format!("DROP TABLESPACE IF EXISTS {name}")])
            .status();
    }
}

/// `n` bytes that PostgreSQL cannot compress much (letters and digits from a xorshift).
fn incompressible(n: usize, seed: u64) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            CHARS[(x % CHARS.len() as u64) as usize] as char
        })
        .collect()
}

/// PostgreSQL's side of a full disk: the hub's database lives in a tablespace on a small tmpfs
/// (the server's write-ahead log stays on its own disk, as on a server whose data volume fills).
/// Publishes are refused whole with a clear 503, readiness says why, and once space is freed
/// the hub takes events again without a restart; everything accepted is kept and delivered.
/// The server must be on this machine (the tablespace is a directory of it).
///
/// It runs alone (the test command runs it after the PostgreSQL leg, with `--ignored`): while
/// the tablespace is full, any backend of the server that evicts one of its dirty pages from
/// the shared buffers fails to write it, whichever database that backend was working on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fills a tablespace of the shared server: the test command runs it alone"]
async fn a_full_postgresql_disk_is_a_clear_recoverable_state() {
    if !on_postgres() {
        eprintln!("a PostgreSQL tablespace's disk: this runs in the PostgreSQL leg");
        return;
    }
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    assert!(
        !uid.is_empty(),
        "the PostgreSQL server's user `postgres` is not on this machine"
    );
    let disk = SmallDisk::mount_with(40, &format!(",uid={uid},gid={gid},mode=0755"));
    // The mount point is open to the server's user (mode 0755); the tablespace is its own.
    let space = disk.0.path().join("space");
    std::fs::create_dir(&space).expect("space dir");
    std::os::unix::fs::chown(&space, uid.parse().ok(), gid.parse().ok()).expect("chown");
    let ballast = disk.0.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 6 * 1024 * 1024]).expect("ballast");

    let name = format!("sy_e2e_full_{}", std::process::id());
    let pg = PgSpace { name: name.clone() };
    let (client, connection) = tokio_postgres::connect(&test_postgres(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL is reachable");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE TABLESPACE {name} LOCATION '{}'",
            space.display()
        ))
        .await
        .expect("create the tablespace");
    client
        .batch_execute(&format!("CREATE DATABASE {name} TABLESPACE {name}"))
        .await
        .expect("create the database");

    let data = tempfile::tempdir().expect("data dir");
    let rx = TestReceiver::start().await;
    let url = postgres_url(&name);
    let hub = launch_hub(data.path(), &["--database-url", &url], &[]).await;
    hub.setup(&rx.url("/full")).await;
    let (mut accepted, refusal) = hub
        .publish_until_refused(
            2000,
            |i| json!({"filler": incompressible(150 * 1024, i + 1)}),
        )
        .await;
    assert_eq!(refusal["error"]["code"], "storage_full", "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("PostgreSQL"), "{refusal}");
    assert!(accepted.len() > 5, "only {} accepted", accepted.len());
    // The refused event was not stored, even in part.
    let refused = format!("full-{}", accepted.len());
    let r = hub
        .client
        .get(format!("{}/v1/orgs/o/events/{refused}", hub.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404, "a refused event was stored");
    // Readiness says so (its probe needs new space, as a publish does), so that a load balancer
    // sends publishers elsewhere.
    let (s, ready) = hub.readyz().await;
    assert_eq!(s, 503, "{ready}");
    assert_eq!(ready["code"], "storage_full", "{ready}");

    // The operator frees space: the hub recovers without a restart.
    std::fs::remove_file(&ballast).expect("free space");
    let (s, v) = hub
        .post(
            "/v1/orgs/o/events",
            ADMIN_KEY,
            json!({"id": "after", "type": "T", "data": {"filler": incompressible(150 * 1024, 7)}}),
        )
        .await
        .expect("publish");
    assert_eq!(s, 202, "{v}");
    accepted.push("after".into());
    assert_eq!(hub.readyz().await.0, 200);

    // Nothing that got a 202 is lost: stored, and delivered.
    hub.kept_and_delivered(&rx, &accepted).await;
    drop(hub);
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_recoverable_state() {
    if on_postgres() {
        // The disk filled here is the data dir's, which holds a SQLite database; a PostgreSQL
        // server's disk is the next test's.
        eprintln!("the SQLite data dir's disk: not a PostgreSQL check");
        return;
    }
    let disk = SmallDisk::mount(24);
    let data = disk.0.path().join("data");
    std::fs::create_dir(&data).expect("dir");
    // Ballast the operator deletes to recover.
    let ballast = disk.0.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 6 * 1024 * 1024]).expect("ballast");
    let rx = TestReceiver::start().await;
    let hub = start_hub(&data).await;
    hub.setup(&rx.url("/full")).await;
    let filler = "x".repeat(150 * 1024);
    let (mut accepted, refusal) = hub
        .publish_until_refused(400, |_| json!({"filler": filler}))
        .await;
    assert_eq!(refusal["error"]["code"], "storage_full", "{refusal}");
    assert!(accepted.len() > 10, "only {} accepted", accepted.len());
    let (s, ready) = hub.readyz().await;
    assert_eq!(s, 503);
    assert_eq!(ready["code"], "storage_full", "{ready}");

    // The operator frees space: the hub recovers without a restart.
    std::fs::remove_file(&ballast).expect("free space");
    assert_eq!(hub.readyz().await.0, 200);
    let (s, v) = hub
        .post(
            "/v1/orgs/o/events",
            ADMIN_KEY,
            json!({"id": "after", "type": "T", "data": {}}),
        )
        .await
        .expect("publish");
    assert_eq!(s, 202, "{v}");
    accepted.push("after".into());

    // Nothing that got a 202 is lost: stored, and delivered.
    hub.kept_and_delivered(&rx, &accepted).await;
    drop(hub);
}
