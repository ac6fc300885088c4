//! Tenant safety, tried the way an attacker with a tenant's admin key would: hostile executor
//! code hunting for another organization's run in progress, flooding disk, processes and the
//! hub's memory. Real hub, real child processes, real interpreters.

use crate::executors::{code, put_executor, run, run_in_background, secret, seed_balance};
use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;

/// D's run: reads its storage, starts a process with a recognisable command line, waits, and
/// reports its storage again.
const VICTIM: &str = r#"
import subprocess, time
def main(input, sdk):
    before = sdk.storage.get("balance")
    p = subprocess.Popen(["sleep", "7.77"])
    time.sleep(4)
    p.kill()
    return {"before": before, "after": sdk.storage.get("balance"), "token": len(sdk.secret("token"))}
"#;

/// C's run: lists every process it can see, every socket on every path it can find (and those
/// the kernel lists), connects to each and asks for `token`, overwrites `balance`, injects a log.
const ATTACKER: &str = r#"
import os, json, socket, stat
def main(input, sdk):
    cmdlines = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdlines.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace"))
            except Exception:
                pass
    found = []
    for root in ["/tmp", "/var/tmp", "/run", "/dev/shm", "/var/run", "/var/lib"]:
        for dirpath, dirs, files in os.walk(root):
            for f in files + dirs:
                p = os.path.join(dirpath, f)
                try:
                    if stat.S_ISSOCK(os.lstat(p).st_mode):
                        found.append(p)
                except Exception:
                    pass
    try:
        for line in open("/proc/net/unix").read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8:
                found.append(parts[7])
    except Exception:
        pass
    answers = []
    asks = [{"op": "secret", "name": "token"}, {"op": "storage.set", "key": "balance", "value": 0},
            {"op": "log", "message": "injected by C"}]
    for path in found:
        addr = "\0" + path[1:] if path.startswith("@") else path
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1)
            s.connect(addr)
            for a in asks:
                s.sendall((json.dumps(a) + "\n").encode())
                answers.append(s.recv(65536).decode(errors="replace"))
        except Exception as e:
            answers.append(f"{path}: {e}")
    return {"cmdlines": cmdlines, "sockets": found, "answers": answers, "own": len(sdk.secret("token"))}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_run_in_progress_cannot_be_reached() {
    let app = spawn_app().await;
    let d = app.org("victim-d").await;
    let c = app.org("attacker-c").await;
    secret(&app, &d, "token", "d-secret-value-4711").await;
    secret(&app, &c, "token", "c-own-secret").await;
    seed_balance(&app, &d).await;
    let mut victim = code("python", VICTIM);
    victim["timeout_ms"] = json!(15000);
    put_executor(&app, &d, "waiter", victim).await;
    let mut attacker = code("python", ATTACKER);
    attacker["timeout_ms"] = json!(15000);
    put_executor(&app, &c, "hunter", attacker).await;

    // D's run waits in `main` while C's runs.
    let d_run = run_in_background(&app, &d, "waiter", json!({}));
    // Until D's process (`sleep 7.77`) is running: a condition, not a guess at how long.
    wait_until("D's run has started its process", || async {
        std::fs::read_dir("/proc").is_ok_and(|dir| {
            dir.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.starts_with(b"sleep\x007.77"))
            })
        })
    })
    .await;
    let c_run = run(&app, &c, "hunter", json!({})).await;
    assert_eq!(c_run["status"], "succeeded", "{c_run:#}");
    let out = &c_run["output"];
    eprintln!("what C saw: {out}");
    let text = out.to_string();
    assert!(
        !text.contains("d-secret-value-4711"),
        "C read D's secret: {out:#}"
    );
    assert_eq!(out["own"], 12, "C cannot use its own SDK channel");
    let cmdlines: Vec<&str> = out["cmdlines"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !cmdlines.iter().any(|c| c.contains("7.77")),
        "C saw D's processes: {cmdlines:?}"
    );
    // Only its own processes (the interpreter; nothing of the hub or of other runs).
    assert!(
        cmdlines.len() <= 2,
        "C sees processes not its own: {cmdlines:?}"
    );
    assert!(
        !out["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .any(|a| a.as_str().unwrap_or("").contains("\"ok\"")),
        "a socket C found answered like the SDK: {out:#}"
    );

    let d_run = d_run.await.expect("D's run");
    assert_eq!(d_run["status"], "succeeded", "{d_run:#}");
    assert_eq!(
        d_run["output"],
        json!({"before": 100, "after": 100, "token": 19}),
        "D's storage changed under it"
    );
    assert!(
        !d_run["logs"].to_string().contains("injected"),
        "C injected log lines into D's run: {d_run:#}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_disk_and_fork_floods_leave_anothers_run_unharmed() {
    let app = spawn_app().await;
    let a = app.org("flooder").await;
    let b = app.org("neighbour").await;
    let mut disk = code(
        "python",
        r#"
def main(input, sdk):
    total, err, i = 0, "", 0
    chunk = b"x" * (1024 * 1024)
    try:
        while True:
            with open(f"f{i}", "wb") as f:
                for _ in range(8):
                    f.write(chunk)
                    f.flush()
                    total += len(chunk)
            i += 1
    except OSError as e:
        err = str(e)
    return {"total": total, "error": err}
"#,
    );
    disk["timeout_ms"] = json!(20000);
    put_executor(&app, &a, "disk", disk).await;
    let mut forks = code(
        "python",
        r#"
import os, time
def main(input, sdk):
    n = 0
    try:
        for _ in range(200):
            if os.fork() == 0:
                time.sleep(8)
                os._exit(0)
            n += 1
    except OSError:
        pass
    time.sleep(5)
    return n
"#,
    );
    forks["timeout_ms"] = json!(15000);
    put_executor(&app, &a, "forks", forks).await;
    put_executor(&app, &b, "work", code("python", "import subprocess\ndef main(input, sdk):\n    for _ in range(10):\n        subprocess.run(['true'], check=True)\n    open('big', 'wb').write(b'y' * (4 * 1024 * 1024))\n    return {'ok': True}\n")).await;

    let flood = async {
        tokio::join!(
            run(&app, &a, "disk", json!({})),
            run(&app, &a, "forks", json!({}))
        )
    };
    let neighbour = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        run(&app, &b, "work", json!({})).await
    };
    let ((disk, forks), work) = tokio::join!(flood, neighbour);
    assert_eq!(
        work["output"],
        json!({"ok": true}),
        "B was harmed: {work:#}"
    );
    assert_eq!(disk["status"], "succeeded", "{disk:#}");
    let total = disk["output"]["total"].as_u64().expect("total");
    assert!(
        total <= 64 * 1024 * 1024,
        "A wrote {total} bytes, past its 64 MiB temporary directory"
    );
    assert!(
        disk["output"]["error"]
            .as_str()
            .expect("error")
            .contains("No space left"),
        "{disk:#}"
    );
    // A's own process limit bound A.
    let n = forks["output"].as_u64().expect("forks");
    assert!((5..40).contains(&n), "A started {n} processes: {forks:#}");
    app.stop().await;
}

/// A server whose one answer is a 1.5 GB body, sent as fast as the reader takes it.
async fn huge_body_server() -> String {
    use axum::body::Body;
    use futures_util::stream;
    static CHUNK: [u8; 64 * 1024] = [b'z'; 64 * 1024];
    let app = axum::Router::new().route(
        "/huge",
        axum::routing::any(|| async {
            let chunks = stream::iter(
                (0..24_000).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from_static(&CHUNK))),
            );
            Body::from_stream(chunks)
        }),
    );
    let addr = serve_on_loopback(app).await;
    format!("http://{addr}/huge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_bytes_fail_the_run_and_leave_the_hub_small() {
    let dir = tempfile::tempdir().expect("tmp");
    let hub = start_hub(dir.path()).await;
    let huge = huge_body_server().await;
    let (s, _) = hub
        .post("/v1/orgs", ADMIN_KEY, json!({"id": "f", "name": "F"}))
        .await
        .expect("org");
    assert_eq!(s, 201);
    let floods: Vec<(&str, Value, &str)> = vec![
        // One SDK message of 128 MiB, written raw to the channel.
        (
            "py-line",
            json!({"type": "code", "language": "python", "memory_mb": 256, "source":
            "import socket\ns = socket.socket(fileno=3)\nchunk = b'x' * (1 << 20)\nfor _ in range(128):\n    s.sendall(chunk)\n"}),
            "longer than 2 MiB",
        ),
        // Many large but valid SDK messages: the per-run budget ends them.
        (
            "py-budget",
            json!({"type": "code", "language": "python", "memory_mb": 256, "source":
            "def main(input, sdk):\n    for _ in range(60):\n        sdk.log('x' * (1536 * 1024))\n"}),
            "more than 64 MiB",
        ),
        // A 100 MB result through the SDK.
        (
            "py-output",
            json!({"type": "code", "language": "python", "memory_mb": 512, "source":
            "def main(input, sdk):\n    return 'x' * (100 * 1024 * 1024)\n"}),
            "output too large",
        ),
        // JavaScript: a 100 MB log line and a 100 MB result from the worker.
        (
            "js-log",
            json!({"type": "code", "language": "javascript", "memory_mb": 1024, "source":
            "function main(input, sdk) { sdk.log('x'.repeat(100 * 1024 * 1024)); return 1; }"}),
            "output too large",
        ),
        (
            "js-output",
            json!({"type": "code", "language": "javascript", "memory_mb": 1024, "source":
            "function main(input, sdk) { return 'x'.repeat(100 * 1024 * 1024); }"}),
            "output too large",
        ),
        // A 1.5 GB response to sdk.http and to an api_call.
        (
            "py-http",
            json!({"type": "code", "language": "python", "source":
            format!("def main(input, sdk):\n    return sdk.http('GET', {huge:?})['status']\n")}),
            "response too large",
        ),
        (
            "api",
            json!({"type": "api_call", "method": "GET", "url": huge}),
            "response too large",
        ),
    ];
    for (name, mut spec, reason) in floods {
        spec["timeout_ms"] = json!(30000);
        let r = hub
            .client
            .put(format!("{}/v1/orgs/f/executors/{name}", hub.base))
            .bearer_auth(ADMIN_KEY)
            .json(&spec)
            .send()
            .await
            .expect("put");
        let status = r.status();
        assert_eq!(
            status,
            201,
            "{name}: {}",
            r.text().await.unwrap_or_default()
        );
        let (s, run) = hub
            .post(
                &format!("/v1/orgs/f/executors/{name}/run"),
                ADMIN_KEY,
                json!({"input": {}}),
            )
            .await
            .expect("run");
        assert_eq!(s, 200, "{name}: {run}");
        assert_eq!(run["status"], "failed", "{name}: {run}");
        let err = run["error"].as_str().unwrap_or("");
        assert!(err.contains(reason), "{name}: `{reason}` not in `{err}`");
        assert!(
            run.to_string().len() < 12 * 1024 * 1024,
            "{name}: the stored run is too large"
        );
    }
    let rss = hub.peak_rss_mb();
    assert!(rss < 200, "the hub's peak RSS was {rss} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_disabled_events_reach_their_own_organization() {
    let app = spawn_app().await;
    let gone = TestReceiver::start().await;
    // Every receiver answers 410 after the same pause, so the results reach the recorder
    // together and are written in one batch.
    gone.always(Reply::status(410).delay(Duration::from_millis(400)));
    let mut orgs = Vec::new();
    for i in 0..24 {
        let org = app.org(&format!("t{i:02}")).await;
        let ep = app
            .endpoint(&org, json!({"url": gone.url(&format!("/t{i:02}"))}), &["T"])
            .await;
        orgs.push((org, ep["id"].as_str().expect("id").to_string()));
    }
    let publishes = orgs.iter().map(|(org, _)| {
        app.publish(
            org,
            json!({"type": "T", "entity": {"type": "X", "id": "1"}, "data": {}}),
        )
    });
    futures_util::future::join_all(publishes).await;
    gone.wait_for(24, Duration::from_secs(10)).await;
    for (org, ep_id) in &orgs {
        let mut events = Value::Null;
        for _ in 0..100 {
            let (s, v) = app
                .get(
                    &format!(
                        "/v1/orgs/{}/events?type=switchyard.endpoint.disabled",
                        org.id
                    ),
                    &org.viewer,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            if !v["data"].as_array().expect("events").is_empty() {
                events = v["data"].clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let events = events.as_array().cloned().unwrap_or_default();
        let ids: Vec<&Value> = events.iter().map(|e| &e["data"]["endpoint_id"]).collect();
        assert_eq!(
            ids,
            vec![&json!(ep_id)],
            "{} must get exactly its own endpoint's event",
            org.id
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_cannot_stall_the_api() {
    let _timed = TIMING.write().await;
    let app = spawn_app().await;
    let a = app.org("regex-a").await;
    let b = app.org("regex-b").await;
    let put_type = |org: &Org, name: &str, pattern: &str| {
        let path = format!("/v1/orgs/{}/event-types/{name}", org.id);
        let body = json!({"schema": {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}});
        let key = org.admin.clone();
        let app = &app;
        async move {
            app.call(reqwest::Method::PUT, &path, &key, Some(body))
                .await
        }
    };
    // Look-around needs a backtracking engine: refused when registered, naming the pattern.
    let (s, v) = put_type(&a, "Evil", "^(?=.*x)(a+)+$").await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("(?=.*x)"),
        "{v}"
    );
    // Nested quantifiers run on the linear engine.
    let (s, v) = put_type(&a, "Nested", "^(a+)+$").await;
    assert_eq!(s, 200, "{v}");
    let evil = format!("{}!", "a".repeat(50_000));
    let path = format!("/v1/orgs/{}/events", a.id);
    let floods = (0..3).map(|_| {
        app.post(
            &path,
            &a.publisher,
            json!({"type": "Nested", "data": {"s": evil}}),
        )
    });
    let neighbour = async {
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let (s, _) = app
                .post(
                    &format!("/v1/orgs/{}/events", b.id),
                    &b.publisher,
                    json!({"type": "T", "data": {}}),
                )
                .await;
            assert_eq!(s, 202);
            let health = app
                .client
                .get(app.url("/healthz"))
                .send()
                .await
                .expect("healthz");
            assert!(health.status().is_success());
            worst = worst.max(started.elapsed());
        }
        worst
    };
    let (results, worst) = tokio::join!(futures_util::future::join_all(floods), neighbour);
    for (s, v) in results {
        assert_eq!(s, 422, "the flood breaks the schema: {v}");
    }
    assert!(
        // Linear-time matching takes milliseconds; backtracking on this input would take
        // longer than the universe has. The margin is for busy machines.
        worst < Duration::from_secs(5),
        "another organization waited {worst:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_idle_clients_cannot_hold_the_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let app = spawn_app_in(dir.path(), |s| {
        s.listen_limits.max_per_peer = 64;
        s.listen_limits.header_read_timeout = Duration::from_secs(2);
        s.listen_limits.body_read_timeout = Duration::from_secs(2);
    })
    .await;
    let b = app.org("calm-b").await;
    // B's requests come from another address of this machine.
    let b_client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");

    // Anonymous: 300 connections from 127.0.0.1, each a request line and a header, never the
    // blank line that ends the head.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connect");
        let _ = s
            .write_all(b"POST /v1/orgs/calm-b/events HTTP/1.1\r\nHost: x\r\n")
            .await;
        held.push(s);
    }
    let attack_started = std::time::Instant::now();
    // B is served meanwhile (bound: generous for a loaded 2-core machine; idle it takes ms).
    for i in 0..5 {
        let started = std::time::Instant::now();
        let r = b_client
            .post(app.url(&format!("/v1/orgs/{}/events", b.id)))
            .bearer_auth(&b.publisher)
            .json(&json!({"id": format!("b-{i}"), "type": "T", "data": {}}))
            .send()
            .await
            .expect("B's publish");
        assert_eq!(r.status(), 202);
        // API answers are never sniffed nor stored.
        assert_eq!(
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        assert_eq!(
            r.headers().get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
        let h = b_client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert!(h.status().is_success());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B waited {:?}",
            started.elapsed()
        );
    }
    // A body that stops coming: the request fails at the body deadline (2 s), with an answer.
    let mut slow = {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 3], 0)))
            .expect("bind 127.0.0.3");
        socket.connect(app.addr).await.expect("connect")
    };
    let head = format!(
        "POST /v1/orgs/{}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\": ",
        b.id, b.publisher
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), slow.read(&mut answer))
        .await
        .expect("the hub answers a stalled body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    // Every idle connection is closed by the hub: past the per-address cap at once, the others
    // at the header deadline (2 s; the bound adds a margin for a busy machine).
    for mut s in held {
        let mut buf = Vec::new();
        let left = Duration::from_secs(30).saturating_sub(attack_started.elapsed());
        let closed = tokio::time::timeout(left, s.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "an idle connection was still open {:?} after the attack began",
            attack_started.elapsed()
        );
    }
    app.stop().await;
}
