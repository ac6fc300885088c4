//! The sandbox as an allowlist, tried the way an attacker with a tenant's admin key would:
//! hostile Python, Node.js and PHP code hunting the host for sockets (pathname, abstract, the
//! machine's PostgreSQL) and settings files while another organization's run is in flight;
//! memory bombs in every language; more runs than the hub's memory budget; a flood of
//! JavaScript runs waiting on the network; an output that cannot be produced. Real hub, real
//! child processes, real interpreters, real cgroups.

use crate::executors::{code, put_executor, run, run_in_background, secret, seed_balance};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the host holds that a run must never reach: Unix socket servers in the host's `/run`
/// and `/tmp` and on an abstract name (each answers like the SDK and counts who connected), and a
/// world-readable file in the host's `/etc` holding a marker.
struct Bait {
    paths: Vec<String>,
    abstract_name: String,
    etc_file: String,
    marker: String,
    hits: Arc<AtomicUsize>,
}

impl Bait {
    fn lay() -> Bait {
        use std::os::linux::net::SocketAddrExt;
        let id = switchyard_core::ids::new_id("bait");
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = vec![format!("/run/{id}.sock"), format!("/tmp/{id}.sock")];
        let abstract_name = format!("{id}-abstract");
        let mut listeners = Vec::new();
        for p in &paths {
            let l = std::os::unix::net::UnixListener::bind(p).expect("bind a host socket");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            listeners.push(l);
        }
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .expect("abstract address");
        listeners.push(std::os::unix::net::UnixListener::bind_addr(&addr).expect("abstract"));
        for l in listeners {
            let hits = hits.clone();
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    hits.fetch_add(1, Ordering::SeqCst);
                    use std::io::Write;
                    let _ = (&s).write_all(b"{\"ok\": true, \"value\": \"host\"}\n");
                }
            });
        }
        let marker = format!("marker-{id}");
        let etc_file = format!("/etc/{id}.conf");
        std::fs::write(&etc_file, format!("database_url = \"{marker}\"\n")).expect("etc file");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&etc_file, std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        Bait {
            paths,
            abstract_name,
            etc_file,
            marker,
            hits,
        }
    }

    fn input(&self, hub_port: u16) -> Value {
        // The marker reversed: the run's own input file must not count as finding it.
        let hidden: String = self.marker.chars().rev().collect();
        json!({"paths": self.paths, "abstract": self.abstract_name, "etc_file": self.etc_file,
               "marker": hidden, "hub_port": hub_port})
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.etc_file);
    }
}

/// A's Python: walks every directory it can name, lists every socket (on disk and the kernel's
/// list), reads every small file looking for the marker, and connects to everything it found
/// and everything it was told of, as stream, datagram and seqpacket, and to PostgreSQL on TCP.
const PY_HUNTER: &str = r#"
import os, socket, stat
def main(input, sdk):
    seen, sockets, marker_in, connected, errors = [], [], [], [], []
    marker = input["marker"][::-1]
    starts = ["/", "/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm", "/dev", "/home", "/root",
              "/srv", "/opt", "/etc", "/var", "/var/lib/postgresql", "/run/postgresql", "/mnt",
              "/proc/1/root", "/proc/self/root", "/work"]
    for start in starts:
        for dirpath, dirs, files in os.walk(start, onerror=lambda e: None):
            seen.append(dirpath)
            if dirpath in ("/usr", "/proc", "/sys") or dirpath.startswith("/proc/"):
                dirs[:] = []
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    st = os.lstat(p)
                    if stat.S_ISSOCK(st.st_mode):
                        sockets.append(p)
                    elif stat.S_ISREG(st.st_mode) and st.st_size < 1000000:
                        if marker in open(p, errors="replace").read():
                            marker_in.append(p)
                except Exception:
                    pass
    try:
        for line in open("/proc/net/unix").read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8:
                sockets.append(parts[7])
    except Exception as e:
        errors.append(f"/proc/net/unix: {e}")
    targets = sockets + input["paths"] + ["@" + input["abstract"],
               "/run/postgresql/.s.PGSQL.5432", "/var/run/postgresql/.s.PGSQL.5432"]
    for t in targets:
        addr = "\0" + t[1:] if t.startswith("@") else t
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
            try:
                s = socket.socket(socket.AF_UNIX, kind)
                s.settimeout(1)
                s.connect(addr)
                connected.append(t)
                s.close()
            except Exception as e:
                errors.append(f"{t}: {e}")
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(b"x", addr)
            connected.append("sendto " + t)
        except Exception as e:
            errors.append(f"sendto {t}: {e}")
    for host, port in [("127.0.0.1", 5432), ("::1", 5432), ("127.0.0.1", input["hub_port"])]:
        try:
            socket.create_connection((host, port), timeout=1)
            connected.append(f"{host}:{port}")
        except Exception as e:
            errors.append(f"{host}:{port}: {e}")
    try:
        if marker in open(input["etc_file"]).read():
            marker_in.append(input["etc_file"])
    except Exception as e:
        errors.append(f"etc: {e}")
    return {"seen": seen, "sockets": sockets, "marker_in": marker_in, "connected": connected,
            "errors": errors[:40], "own": len(sdk.secret("token"))}
"#;

/// A's Node.js: the same hunt with Node's own modules.
const NODE_HUNTER: &str = r#"
const fs = require("fs"), net = require("net");
async function main(input, sdk) {
  const seen = [], connected = [], errors = [], markerIn = [];
  input.marker = input.marker.split("").reverse().join("");
  const targets = [...input.paths, "\0" + input.abstract,
    "/run/postgresql/.s.PGSQL.5432", "/var/run/postgresql/.s.PGSQL.5432"];
  const walk = (d, depth) => {
    if (depth > 8) return;
    let ents;
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch (e) { return; }
    seen.push(d);
    for (const e of ents) {
      const p = (d === "/" ? "" : d) + "/" + e.name;
      if (e.isDirectory()) { if (!["/proc", "/sys", "/usr"].includes(p)) walk(p, depth + 1); }
      else if (e.isSocket()) targets.push(p);
      else if (e.isFile()) {
        try { if (fs.readFileSync(p, "utf8").includes(input.marker)) markerIn.push(p); } catch (_) {}
      }
    }
  };
  for (const s of ["/", "/run", "/var/run", "/tmp", "/var/tmp", "/home", "/root", "/etc", "/var", "/dev"]) walk(s, 0);
  const attempt = (opts, label) => new Promise((resolve) => {
    let s;
    try { s = net.connect(opts); } catch (e) { errors.push(label + ": " + e.code); return resolve(); }
    const t = setTimeout(() => { s.destroy(); errors.push(label + ": timeout"); resolve(); }, 1000);
    s.on("connect", () => { clearTimeout(t); connected.push(label); s.destroy(); resolve(); });
    s.on("error", (e) => { clearTimeout(t); errors.push(label + ": " + e.code); resolve(); });
  });
  for (const p of targets) await attempt({ path: p }, p);
  await attempt({ host: "127.0.0.1", port: 5432 }, "tcp 5432");
  await attempt({ host: "127.0.0.1", port: input.hub_port }, "the hub");
  try { if (fs.readFileSync(input.etc_file, "utf8").includes(input.marker)) markerIn.push(input.etc_file); }
  catch (e) { errors.push("etc: " + e.code); }
  return { seen, connected, markerIn, errors: errors.slice(0, 40) };
}
"#;

/// A's PHP: the same hunt with PHP's streams.
const PHP_HUNTER: &str = r#"<?php
function main($input, $sdk) {
    $seen = []; $connected = []; $errors = []; $markerIn = [];
    $input['marker'] = strrev($input['marker']);
    $targets = array_merge($input['paths'], ['/run/postgresql/.s.PGSQL.5432', '/var/run/postgresql/.s.PGSQL.5432']);
    foreach (['/', '/run', '/var/run', '/tmp', '/var/tmp', '/etc', '/home', '/root', '/var', '/dev'] as $d) {
        $list = @scandir($d);
        if ($list === false) continue;
        $seen[] = $d;
        foreach ($list as $f) {
            $p = rtrim($d, '/') . '/' . $f;
            if (@filetype($p) === 'socket') $targets[] = $p;
            if (@is_file($p) && @filesize($p) < 1000000) {
                $c = @file_get_contents($p);
                if ($c !== false && strpos($c, $input['marker']) !== false) $markerIn[] = $p;
            }
        }
    }
    foreach ($targets as $t) {
        $s = @stream_socket_client('unix://' . $t, $en, $es, 1);
        if ($s) { $connected[] = $t; fclose($s); } else { $errors[] = "$t: $es"; }
    }
    foreach (['tcp://127.0.0.1:5432', 'tcp://127.0.0.1:' . $input['hub_port']] as $u) {
        $s = @stream_socket_client($u, $en, $es, 1);
        if ($s) { $connected[] = $u; fclose($s); } else { $errors[] = "$u: $es"; }
    }
    $c = @file_get_contents($input['etc_file']);
    if ($c !== false && strpos($c, $input['marker']) !== false) $markerIn[] = $input['etc_file'];
    return ['seen' => $seen, 'connected' => $connected, 'markerIn' => $markerIn, 'errors' => array_slice($errors, 0, 40)];
}
"#;

/// B's run: reads its storage, says it started, waits until the test releases it (in flight the
/// whole time A hunts), reads its storage again.
const VICTIM: &str = r#"
import time
def main(input, sdk):
    before = sdk.storage.get("balance")
    sdk.storage.set("started", True)
    until = time.time() + 55
    while not sdk.storage.get("release") and time.time() < until:
        time.sleep(0.1)
    return {"before": before, "after": sdk.storage.get("balance"), "token": len(sdk.secret("token"))}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_code_reaches_nothing_of_the_host_but_what_it_is_granted() {
    let bait = Bait::lay();
    let app = spawn_app().await;
    let a = app.org("hunter-a").await;
    let b = app.org("victim-b").await;
    secret(&app, &a, "token", "a-own").await;
    secret(&app, &b, "token", "b-secret-value-0815").await;
    seed_balance(&app, &b).await;
    // B's data at rest: an event in B's log.
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{}/events", b.id),
            &b.publisher,
            json!({"id": "b-evt-1", "type": "ticket.created", "data": {"secret": "b-data"}}),
        )
        .await;
    assert_eq!(s, 202);
    let mut victim = code("python", VICTIM);
    victim["timeout_ms"] = json!(60000);
    put_executor(&app, &b, "waiter", victim).await;
    put_executor(
        &app,
        &b,
        "peek",
        code(
            "python",
            "def main(input, sdk):\n    return bool(sdk.storage.get('started'))\n",
        ),
    )
    .await;
    put_executor(
        &app,
        &b,
        "release",
        code(
            "python",
            "def main(input, sdk):\n    sdk.storage.set('release', True)\n    return sdk.storage.get('started')\n",
        ),
    )
    .await;
    for (name, language, source) in [
        ("py", "python", PY_HUNTER),
        ("node", "node", NODE_HUNTER),
        ("php", "php", PHP_HUNTER),
    ] {
        let mut ex = code(language, source);
        ex["timeout_ms"] = json!(60000);
        put_executor(&app, &a, name, ex).await;
    }

    // B's run is in flight while A's code hunts: started before, released after.
    let b_run = run_in_background(&app, &b, "waiter", json!({}));
    wait_until("B's run has started", || async {
        run(&app, &b, "peek", json!({})).await["output"] == json!(true)
    })
    .await;
    let input = bait.input(app.addr.port());
    for name in ["py", "node", "php"] {
        let r = run(&app, &a, name, input.clone()).await;
        assert_eq!(r["status"], "succeeded", "{name}: {r:#}");
        let out = &r["output"];
        eprintln!("what A's {name} saw: {out}");
        assert_eq!(
            out["connected"],
            json!([]),
            "A's {name} connected to something outside its run: {out:#}"
        );
        let marker = out.get("marker_in").or(out.get("markerIn"));
        assert_eq!(
            marker,
            Some(&json!([])),
            "A's {name} read the marker: {out:#}"
        );
        let text = out.to_string();
        assert!(!text.contains(&bait.marker), "{name}: {out:#}");
        assert!(!text.contains("b-secret-value"), "{name}: {out:#}");
        // Nothing of the host but the granted trees has a name in the run.
        for d in out["seen"].as_array().expect("seen") {
            let d = d.as_str().expect("dir");
            for forbidden in [
                "/run", "/var", "/home", "/root", "/srv", "/opt", "/mnt", "/work",
            ] {
                assert!(
                    !(d == forbidden || d.starts_with(&format!("{forbidden}/"))),
                    "A's {name} listed {d}: {out:#}"
                );
            }
            assert!(
                !(d == "/etc" || d == "/" || d.starts_with("/proc/1/root")),
                "A's {name} listed {d}: {out:#}"
            );
        }
        if name == "py" {
            assert_eq!(out["own"], 5, "A's own SDK channel still works");
            // The only socket the kernel lists is in the run's own network namespace.
            for s in out["sockets"].as_array().expect("sockets") {
                assert!(
                    !s.as_str().unwrap_or("").contains("bait"),
                    "A saw a host socket: {out:#}"
                );
            }
        }
    }
    assert_eq!(
        bait.hits.load(Ordering::SeqCst),
        0,
        "a host socket was connected to"
    );

    let released = run(&app, &b, "release", json!({})).await;
    assert_eq!(
        released["output"], true,
        "B's run was in flight: {released:#}"
    );
    let b_run = b_run.await.expect("B's run");
    assert_eq!(b_run["status"], "succeeded", "{b_run:#}");
    assert_eq!(
        b_run["output"],
        json!({"before": 100, "after": 100, "token": 19}),
        "B's storage changed under it"
    );
    let (s, evt) = app
        .get(&format!("/v1/orgs/{}/events/b-evt-1", b.id), &b.viewer)
        .await;
    assert_eq!(s, 200, "{evt}");
    assert_eq!(evt["data"], json!({"secret": "b-data"}));
    app.stop().await;
}

/// The readiness document's sandbox layers.
async fn layers(app: &TestApp) -> Value {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_bounded_by_the_kernel_in_every_language() {
    let app = spawn_app().await;
    let org = app.org("bombs").await;
    let ready = layers(&app).await;
    assert!(
        ready["isolation"]["cgroups"].is_string(),
        "this machine has cgroups: {ready}"
    );
    let cases = [
        // Buffers live outside V8's heap: only the kernel bounds them.
        (
            "node-buffers",
            "node",
            "function main() { const keep = []; for (let i = 0; i < 64; i++) keep.push(Buffer.alloc(8 * 1024 * 1024, 1)); return keep.length; }",
        ),
        (
            "python-bytes",
            "python",
            "def main(input, sdk):\n    keep = [b'x' * (8 << 20) for _ in range(64)]\n    return len(keep)\n",
        ),
        // Each child stays under its address-space limit; together they pass the run's memory.
        (
            "python-forks",
            "python",
            "import os, time\ndef main(input, sdk):\n    kids = []\n    for _ in range(4):\n        pid = os.fork()\n        if pid == 0:\n            keep = b'x' * (150 << 20)\n            time.sleep(20)\n            os._exit(0)\n        kids.append(pid)\n    for k in kids:\n        os.waitpid(k, 0)\n    return 'all four lived'\n",
        ),
        (
            "php-strings",
            "php",
            "<?php\nfunction main($in, $sdk) { $keep = []; for ($i = 0; $i < 64; $i++) $keep[] = str_repeat('x', 8 << 20); return count($keep); }\n",
        ),
    ];
    for (name, language, source) in cases {
        let mut ex = code(language, source);
        ex["memory_mb"] = json!(128);
        ex["timeout_ms"] = json!(40000);
        put_executor(&app, &org, name, ex).await;
        let r = run(&app, &org, name, json!({})).await;
        assert_eq!(r["status"], "failed", "{name} held 512 MB: {r:#}");
        let err = r["error"].as_str().expect("error");
        assert!(
            err.contains("memory limit") && (err.contains("128") || err.contains("MB")),
            "{name}: the failure names the memory limit: {err}"
        );
        assert_eq!(
            r["failure"], "memory",
            "{name}: its kind is stored with the run"
        );
    }
    app.stop().await;
}

/// Peak of `MemAvailable` drop, sampled while `work` runs.
async fn lowest_available_during<F: std::future::Future>(work: F) -> (F::Output, u64, u64) {
    fn available_mb() -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .expect("meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("MemAvailable")
            / 1024
    }
    let before = available_mb();
    let lowest = Arc::new(AtomicUsize::new(before as usize));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (lowest, done) = (lowest.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                lowest.fetch_min(available_mb() as usize, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = work.await;
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("sampler");
    (out, before, lowest.load(Ordering::SeqCst) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_wait_for_room_in_the_memory_budget_instead_of_overcommitting() {
    // Alone: the machine's available memory is what this test measures.
    let _timed = TIMING.write().await;
    let dir = tempfile::tempdir().expect("dir");
    // Each run's kernel limit is 200 + 16 + 32 = 248 MB: two fit in 500 MB, three do not.
    // The one organization here may take the whole budget (its share is a quarter otherwise).
    let app = spawn_app_in(dir.path(), |s| {
        s.run_memory_budget_mb = Some(500);
        s.limits.run_memory_mb = 500;
    })
    .await;
    let org = app.org("budget").await;
    assert_eq!(layers(&app).await["run_memory_budget_mb"], 500);
    let mut ex = code(
        "python",
        "import time\ndef main(input, sdk):\n    start = time.time()\n    keep = b'x' * (180 << 20)\n    time.sleep(1.5)\n    return [start, time.time(), len(keep)]\n",
    );
    ex["memory_mb"] = json!(200);
    ex["tmp_mb"] = json!(16);
    ex["timeout_ms"] = json!(60_000);
    put_executor(&app, &org, "hold", ex).await;
    let (runs, before, lowest) = lowest_available_during(futures_util::future::join_all(
        (0..10).map(|_| run(&app, &org, "hold", json!({}))),
    ))
    .await;
    let mut spans = Vec::new();
    for r in &runs {
        assert_eq!(
            r["status"], "succeeded",
            "a run within its own limit failed: {r:#}"
        );
        spans.push((
            r["output"][0].as_f64().expect("start"),
            r["output"][1].as_f64().expect("end"),
        ));
    }
    // At no moment were more than two runs holding their memory.
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(s2, e2)| s2 <= s && s < e2).count())
        .max()
        .unwrap_or(0);
    assert!(
        most <= 2,
        "{most} runs at once in a budget for two: {spans:?}"
    );
    // The host never lost more than the budget (plus the hub's own and the interpreters'
    // pages outside runs: generous, far below the 1.8 GB ten unbounded runs would take).
    let dropped = before.saturating_sub(lowest);
    eprintln!("MemAvailable {before} MB before, lowest {lowest} MB: dropped {dropped} MB");
    assert!(
        dropped < 500 + 700,
        "available memory dropped {dropped} MB with a 500 MB budget"
    );
    app.stop().await;
}

/// A server that answers every request after `hold`.
async fn slow_server(hold: Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(hold).await;
        "late"
    });
    format!("http://{}/", serve_on_loopback(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_javascript_flood_leaves_anothers_runs_and_hooks_working() {
    let app = spawn_app().await;
    let a = app.org("js-flood-a").await;
    let b = app.org("js-calm-b").await;
    let slow = slow_server(Duration::from_secs(20)).await;
    let mut waiter = code(
        "javascript",
        "async function main(input, sdk) { await sdk.http('GET', input.url); return 'late'; }",
    );
    waiter["timeout_ms"] = json!(30000);
    waiter["memory_mb"] = json!(32);
    put_executor(&app, &a, "wait", waiter).await;
    put_executor(
        &app,
        &b,
        "quick",
        code(
            "javascript",
            "function main(input) { return { twice: input.n * 2 }; }",
        ),
    )
    .await;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/hooks/twice", b.id),
            &b.admin,
            Some(json!({"executor": "quick"})),
        )
        .await;
    assert!(s.is_success(), "{v}");

    let flood: Vec<_> = (0..70)
        .map(|_| {
            let (client, url, key, slow) = (
                app.client.clone(),
                app.url(&format!("/v1/orgs/{}/executors/wait/run", a.id)),
                a.admin.clone(),
                slow.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"input": {"url": slow}}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Wait until A's runs hold their share (at most 64 JavaScript runs, within a quarter of
    // the memory budget) and wait on the network; the rest wait in A's own queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let workers = std::fs::read_dir("/proc")
            .expect("proc")
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.ends_with(b"js-worker\0"))
            })
            .count();
        if workers >= 16 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's runs did not start ({workers} workers)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = run(&app, &b, "quick", json!({"n": 21})).await;
    assert_eq!(
        r["status"], "succeeded",
        "B's run failed under A's flood: {r:#}"
    );
    assert_eq!(r["output"], json!({"twice": 42}));
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/hooks/twice/call", b.id),
            &b.publisher,
            json!({"n": 4}),
        )
        .await;
    assert_eq!(s, 200, "B's hook failed under A's flood: {v}");
    assert_eq!(v["output"], json!({"twice": 8}));
    for f in flood {
        f.abort();
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_cannot_be_produced_fails_and_is_never_cached() {
    let app = spawn_app().await;
    let org = app.org("huge-output").await;
    let mut ex = code(
        "javascript",
        "function main() { return 'x'.repeat(120 * 1024 * 1024); }",
    );
    ex["memory_mb"] = json!(256);
    ex["timeout_ms"] = json!(60000);
    put_executor(&app, &org, "huge", ex).await;
    let r = run(&app, &org, "huge", json!({})).await;
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(r["output"], Value::Null);
    let err = r["error"].as_str().expect("error");
    assert!(
        err.contains("memory limit") || err.contains("output too large"),
        "the failure names the limit: {err}"
    );
    assert!(
        r["failure"] == "memory" || r["failure"] == "output_limit",
        "its kind says the same: {r:#}"
    );
    // A function has no JSON form: a failure too, never a `null` that looks like an answer.
    put_executor(
        &app,
        &org,
        "fn",
        code("javascript", "function main() { return function () {}; }"),
    )
    .await;
    let r = run(&app, &org, "fn", json!({})).await;
    assert_eq!(r["status"], "failed", "{r:#}");
    // Behind a cached hook, the failure is answered each time and never cached.
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/hooks/huge", org.id),
            &org.admin,
            Some(json!({"executor": "huge", "cache_ttl_s": 300})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    for _ in 0..2 {
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/hooks/huge/call", org.id),
                &org.publisher,
                json!({}),
            )
            .await;
        assert!(!s.is_success(), "a failed run answered {s}: {v}");
        assert_ne!(v["cache"], "hit", "a failure was cached: {v}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_unbounded_languages_are_refused_unless_the_operator_allows_them() {
    // The real binary in a mount namespace of its own where no cgroup hierarchy is mounted: what
    // a host without cgroups looks like to the hub.
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "umount -R /sys/fs/cgroup && exec \"$0\" \"$@\"",
    ];
    for allowed in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        let database: Vec<String> = database_url(dir.path())
            .await
            .map(|url| ["--database-url".to_string(), url])
            .into_iter()
            .flatten()
            .collect();
        let mut extra: Vec<&str> = database.iter().map(String::as_str).collect();
        if allowed {
            extra.push("--allow-unbounded-runs");
        }
        let hub = launch_hub_wrapped(&wrapper, dir.path(), &extra, &[]).await;
        let ready: Value = hub
            .client
            .get(format!("{}/readyz", hub.base))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        assert_eq!(ready["isolation"]["cgroups"], Value::Null, "{ready}");
        assert!(
            ready["isolation"]["cgroups_unavailable"].is_string(),
            "the reason is reported: {ready}"
        );
        assert!(
            !ready["sandbox"]
                .as_str()
                .expect("level")
                .contains("cgroups")
        );
        let (s, v) = hub
            .post("/v1/orgs", ADMIN_KEY, json!({"id": "nocg", "name": "nocg"}))
            .await
            .expect("org");
        assert!(s < 300, "{v}");
        let put = |language: &str, source: &str| {
            hub.client
                .put(format!("{}/v1/orgs/nocg/executors/{language}", hub.base))
                .bearer_auth(ADMIN_KEY)
                .json(&code(language, source))
                .send()
        };
        let r = put("python", "def main(input, sdk):\n    return 7\n")
            .await
            .expect("put");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        if allowed {
            assert_eq!(status, 201, "{body}");
            let (s, run) = hub
                .post(
                    "/v1/orgs/nocg/executors/python/run",
                    ADMIN_KEY,
                    json!({"input": {}}),
                )
                .await
                .expect("run");
            assert_eq!(s, 200, "{run}");
            assert_eq!(run["output"], 7, "{run}");
        } else {
            assert_eq!(status, 422, "{body}");
            let msg = body["error"]["message"].as_str().expect("message");
            assert!(
                msg.contains("cgroups") && msg.contains("--allow-unbounded-runs"),
                "{msg}"
            );
        }
        // JavaScript needs no cgroup to be bounded: one worker that cannot fork.
        let r = put("javascript", "function main() { return 8; }")
            .await
            .expect("put");
        assert_eq!(r.status().as_u16(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_runs_whereever_the_worker_binary_lives_even_under_tmp() {
    // An installed copy under the host's /tmp, which a run's own /tmp hides.
    let bin = tempfile::Builder::new()
        .prefix("switchyard-bin-")
        .tempdir_in("/tmp")
        .expect("dir");
    let copy = bin.path().join("switchyard");
    std::fs::copy(env!("CARGO_BIN_EXE_switchyard"), &copy).expect("copy the binary");
    let dir = tempfile::tempdir().expect("dir");
    let worker = copy.clone();
    let app = spawn_app_in(dir.path(), move |s| s.js_worker = Some(worker)).await;
    let org = app.org("bin-in-tmp").await;
    put_executor(
        &app,
        &org,
        "js",
        code("javascript", "function main(input) { return input.n + 1; }"),
    )
    .await;
    let r = run(&app, &org, "js", json!({"n": 41})).await;
    assert_eq!(r["output"], 42, "{r:#}");
    app.stop().await;
}
