//! Fair shares: each attack of one organization (A) on a capacity the hub shares, replayed
//! against the whole server (real sockets, real sandboxed children, real receivers) while a
//! well-behaved organization (B) is measured; and the limits and quotas that refuse the rest
//! with a clear answer.
//!
//! Bounds: B's work takes milliseconds on an idle hub. Each bound below is far under what A's
//! attack would cost B without fair shares (A's runs and requests hold their slots for 20–30 s)
//! and far over what a busy two-core machine adds, so the tests fail on a hub without shares
//! and pass on a loaded one.

use crate::executors::{code, put_executor, run, run_in_background};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Within this, B's work must be done while A's attack holds its share (A's work holds its
/// slots for 20 s or more).
const B_BOUND: Duration = Duration::from_secs(12);

/// A server that answers every request after `hold`.
async fn slow_server(hold: Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(hold).await;
        "late"
    });
    format!("http://{}/", serve_on_loopback(app).await)
}

/// Processes running as run-slot uids (child-process runs in progress).
fn run_processes() -> usize {
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
                    .is_some_and(|uid| (200_000..200_064).contains(&uid))
            })
        })
        .count()
}

/// Sets `org`'s own limits with the instance admin key.
async fn set_limits(app: &TestApp, org: &Org, limits: Value) -> Value {
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/limits", org.id),
            ADMIN_KEY,
            Some(limits),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn put_hook(app: &TestApp, org: &Org, name: &str, body: Value) {
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/hooks/{name}", org.id),
            &org.admin,
            Some(body),
        )
        .await;
    assert!(s.is_success(), "{v}");
}

/// Calls hook `name` of `org` in the background: (status, Retry-After, body).
fn call_in_background(
    app: &TestApp,
    org: &Org,
    name: &str,
    input: Value,
) -> tokio::task::JoinHandle<(u16, Option<String>, Value)> {
    let (client, url, key) = (
        app.client.clone(),
        app.url(&format!("/v1/orgs/{}/hooks/{name}/call", org.id)),
        org.publisher.clone(),
    );
    tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth(key)
            .json(&input)
            .send()
            .await
            .expect("hook call");
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, retry, r.json().await.unwrap_or(Value::Null))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organizations_sleeping_runs_leave_anothers_runs_and_hooks_on_time() {
    let app = spawn_app().await;
    let a = app.org("sleepy-a").await;
    let b = app.org("prompt-b").await;
    let mut sleeper = code(
        "python",
        "import time\ndef main(input, sdk):\n    time.sleep(22)\n    return 1\n",
    );
    sleeper["timeout_ms"] = json!(30_000);
    sleeper["memory_mb"] = json!(32);
    sleeper["tmp_mb"] = json!(1);
    put_executor(&app, &a, "sleep", sleeper).await;
    put_executor(
        &app,
        &b,
        "quick",
        code(
            "python",
            "def main(input, sdk):\n    return input['n'] * 2\n",
        ),
    )
    .await;
    put_hook(&app, &b, "twice", json!({"executor": "quick"})).await;
    // B on an idle hub, for the record.
    let idle = Instant::now();
    assert_eq!(run(&app, &b, "quick", json!({"n": 1})).await["output"], 2);
    let idle = idle.elapsed();

    // A: 64 runs at once, as many as the hub has run slots.
    let attack: Vec<_> = (0..64)
        .map(|_| run_in_background(&app, &a, "sleep", json!({})))
        .collect();
    wait_until("A's runs hold their share of the run slots", || async {
        run_processes() >= 8
    })
    .await;
    let started = Instant::now();
    let r = run(&app, &b, "quick", json!({"n": 21})).await;
    let took = started.elapsed();
    assert_eq!(r["status"], "succeeded", "B's run under A's 64 runs: {r:#}");
    assert_eq!(r["output"], 42);
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/hooks/twice/call", b.id),
            &b.publisher,
            json!({"n": 4}),
        )
        .await;
    assert_eq!(s, 200, "B's hook under A's 64 runs: {v}");
    let with_hook = started.elapsed();
    eprintln!("B's Python run: {idle:?} idle, {took:?} beside A; with its hook {with_hook:?}");
    assert!(
        with_hook < B_BOUND,
        "B waited {with_hook:?} behind A's runs"
    );
    // A never holds more than its share (16 runs by default).
    assert!(run_processes() <= 16 * 4, "A's runs passed its share");
    for t in attack {
        t.abort();
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_refused_for_room_says_which_limit_after_how_long() {
    let app = spawn_app().await;
    let a = app.org("narrow-a").await;
    // The organization's admin cannot raise its own limits; the instance admin can set them.
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/limits", a.id),
            &a.admin,
            Some(json!({"runs": 64})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/limits", a.id),
            ADMIN_KEY,
            Some(json!({"rnus": 1})),
        )
        .await;
    assert_eq!(s, 422, "an unknown limit is refused: {v}");
    let set = set_limits(&app, &a, json!({"runs": 1, "js_runs": 1, "hook_calls": 1})).await;
    assert_eq!(set["limits"]["runs"], 1);
    assert_eq!(
        set["own"],
        json!({"runs": 1, "js_runs": 1, "hook_calls": 1})
    );
    assert_eq!(set["limits"]["requests"], 64, "the rest follow the hub's");

    let slow = slow_server(Duration::from_secs(20)).await;
    for (lang, source) in [
        (
            "python",
            "def main(input, sdk):\n    sdk.http('GET', input['url'])\n    return 1\n",
        ),
        (
            "javascript",
            "async function main(input, sdk) { await sdk.http('GET', input.url); return 1; }",
        ),
    ] {
        let mut holder = code(lang, source);
        holder["timeout_ms"] = json!(30_000);
        put_executor(&app, &a, &format!("hold-{lang}"), holder).await;
        let mut quick = code(lang, "def main(input, sdk):\n    return 1\n");
        if lang == "javascript" {
            quick = code(lang, "function main() { return 1; }");
        }
        quick["timeout_ms"] = json!(1500);
        put_executor(&app, &a, &format!("quick-{lang}"), quick).await;
        let holding = run_in_background(&app, &a, &format!("hold-{lang}"), json!({"url": slow}));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut refused = None;
        // Until the first run holds the one slot, the second may still find it free.
        for _ in 0..50 {
            let r = run(&app, &a, &format!("quick-{lang}"), json!({})).await;
            if r["status"] == "failed" {
                refused = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let r = refused.expect("a second run beside the one its share allows is refused");
        let error = r["error"].as_str().unwrap_or_default();
        let limit = if lang == "python" { "runs" } else { "js_runs" };
        assert!(
            error.starts_with("no room:")
                && error.contains(&format!(
                    "this organization's share (1, its limit `{limit}`)"
                ))
                && error.contains("stayed full for 1"),
            "{lang}: {error}"
        );
        assert!(!error.contains("worker died"), "{error}");
        holding.abort();
    }
    // A hook call beyond the organization's share of calls: 429 with Retry-After, at once.
    put_hook(
        &app,
        &a,
        "hold",
        json!({"executor": "hold-javascript", "timeout_ms": 30000}),
    )
    .await;
    // One call holds the share (it waits on the slow server); the next is refused at once.
    let first = call_in_background(&app, &a, "hold", json!({"url": slow}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!first.is_finished(), "the first call ended early");
    let started = Instant::now();
    let (s, retry, v) = call_in_background(&app, &a, "hold", json!({"url": slow}))
        .await
        .expect("call");
    assert_eq!(s, 429, "{v}");
    assert!(
        started.elapsed() < B_BOUND,
        "the refusal took {:?}",
        started.elapsed()
    );
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(v["error"]["code"], "hook_busy", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit `hook_calls`")),
        "{v}"
    );
    first.abort();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_hook_calls_of_one_organization_leave_anothers_hook_answering() {
    let app = spawn_app().await;
    let a = app.org("hooked-a").await;
    let b = app.org("hooked-b").await;
    let slow = slow_server(Duration::from_secs(20)).await;
    let mut holder = code(
        "javascript",
        "async function main(input, sdk) { await sdk.http('GET', input.url); return 1; }",
    );
    holder["timeout_ms"] = json!(30_000);
    holder["memory_mb"] = json!(16);
    put_executor(&app, &a, "hold", holder).await;
    put_hook(
        &app,
        &a,
        "hold",
        json!({"executor": "hold", "timeout_ms": 30000}),
    )
    .await;
    put_executor(
        &app,
        &b,
        "quick",
        code("javascript", "function main(input) { return input.n * 2; }"),
    )
    .await;
    put_hook(&app, &b, "twice", json!({"executor": "quick"})).await;

    // A: 70 slow calls at once, with nothing but a publisher key.
    let calls: Vec<_> = (0..70)
        .map(|_| call_in_background(&app, &a, "hold", json!({"url": slow})))
        .collect();
    // The calls past A's share (32) are refused at once; the others wait on the slow server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.iter().filter(|c| c.is_finished()).count() < 70 - 32 {
        assert!(
            Instant::now() < deadline,
            "A's calls past its share were not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = 0;
    let mut holding = Vec::new();
    for c in calls {
        if c.is_finished() {
            let (s, retry, v) = c.await.expect("call");
            assert_eq!(s, 429, "A's call ended early: {v}");
            assert_eq!(retry.as_deref(), Some("1"));
            refused += 1;
        } else {
            holding.push(c);
        }
    }
    let started = Instant::now();
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/hooks/twice/call", b.id),
            &b.publisher,
            json!({"n": 4}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(s, 200, "B's hook under A's 70 calls: {v}");
    assert_eq!(v["output"], 8);
    assert!(took < B_BOUND, "B's hook took {took:?}");
    eprintln!("B's hook beside A's calls: {took:?}; A refused {refused}");
    for c in holding {
        c.abort();
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_event_hooks_of_one_organization_leave_anothers_on_time() {
    let app = spawn_app().await;
    let a = app.org("hang-a").await;
    let b = app.org("hook-b").await;
    let slow = slow_server(Duration::from_secs(25)).await;
    put_executor(
        &app,
        &a,
        "hang",
        json!({"type": "api_call", "method": "GET", "url": slow, "timeout_ms": 30000}),
    )
    .await;
    put_executor(
        &app,
        &b,
        "quick",
        code("javascript", "function main(input) { return 1; }"),
    )
    .await;
    for (org, executor) in [(&a, "hang"), (&b, "quick")] {
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/subscriptions", org.id),
                &org.admin,
                json!({"event_types": ["T"], "executor": executor}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let events: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("a-{i}"), "type": "T", "data": {}}))
        .collect();
    app.publish_batch(&a, events).await;
    // A's hooks are running (they hang for 25 s).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    app.publish(&b, json!({"id": "b-1", "type": "T", "data": {}}))
        .await;
    app.wait_trace(&b, "b-1", B_BOUND, |t| {
        first_delivery_status(t) == Some("delivered")
    })
    .await;
    let took = started.elapsed();
    eprintln!("B's event hook beside A's 40 hanging ones: {took:?}");
    assert!(took < B_BOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organizations_hanging_endpoints_leave_anothers_webhooks_on_time() {
    let app = spawn_app().await;
    let a = app.org("hang-hooks-a").await;
    let b = app.org("fast-hooks-b").await;
    let slow = slow_server(Duration::from_secs(30)).await;
    for _ in 0..3 {
        app.endpoint(&a, json!({"url": slow, "max_in_flight": 1000}), &["T"])
            .await;
    }
    let rx = TestReceiver::start().await;
    app.endpoint(&b, json!({"url": rx.url("/b")}), &["T"]).await;
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("a-{i}"), "type": "T", "data": {}}))
        .collect();
    app.publish_batch(&a, events).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    app.publish(&b, json!({"id": "b-1", "type": "T", "data": {}}))
        .await;
    rx.wait_for(1, B_BOUND).await;
    let took = started.elapsed();
    eprintln!("B's webhook beside A's 900 hanging requests: {took:?}");
    assert!(took < B_BOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organizations_big_answers_do_not_evict_anothers_cached_answer() {
    let app = spawn_app().await;
    let a = app.org("big-a").await;
    let b = app.org("cached-b").await;
    async fn call(app: &TestApp, org: &Org, hook: &str, n: u64) -> Value {
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/hooks/{hook}/call", org.id),
                &org.publisher,
                json!({"n": n}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
    put_executor(
        &app,
        &a,
        "big",
        code(
            "javascript",
            "function main(input) { return { n: input.n, pad: 'x'.repeat(1000000) }; }",
        ),
    )
    .await;
    put_hook(
        &app,
        &a,
        "big",
        json!({"executor": "big", "cache_ttl_s": 600}),
    )
    .await;
    put_executor(
        &app,
        &b,
        "small",
        code("javascript", "function main(input) { return input.n; }"),
    )
    .await;
    put_hook(
        &app,
        &b,
        "small",
        json!({"executor": "small", "cache_ttl_s": 600}),
    )
    .await;
    assert_eq!(call(&app, &b, "small", 1).await["cache"], "miss");
    assert_eq!(call(&app, &b, "small", 1).await["cache"], "hit");
    // A: 90 answers of 1 MB, more than the whole cache (64 MiB).
    for n in 0..90 {
        call(&app, &a, "big", n).await;
    }
    assert_eq!(
        call(&app, &b, "small", 1).await["cache"],
        "hit",
        "B's answer was evicted by A's"
    );
    // A's first answers stay cached; those past its share are answered, not kept.
    assert_eq!(call(&app, &a, "big", 0).await["cache"], "hit");
    assert_eq!(call(&app, &a, "big", 89).await["cache"], "miss");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_what_would_pass_them_with_a_clear_answer() {
    let app = spawn_app().await;
    let a = app.org("quota-a").await;
    let rx = TestReceiver::start().await;
    set_limits(
        &app,
        &a,
        json!({"endpoints": 2, "subscriptions": 3, "executors": 2, "schedules": 2,
               "schedule_bytes": 300, "kv_bytes": 1000, "events_per_minute": 5,
               "replays_per_hour": 3}),
    )
    .await;
    let quota = |v: &Value, name: &str| {
        assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(&format!("`{name}`")), "{m}");
    };
    // Endpoints and subscriptions.
    let ep = app.endpoint(&a, json!({"url": rx.url("/a")}), &["T"]).await;
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", a.id),
            &a.admin,
            json!({"event_types": ["U"], "endpoint_id": ep["id"]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", a.id),
            &a.admin,
            json!({"event_types": ["V"], "url": rx.url("/inline")}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", a.id),
            &a.admin,
            json!({"event_types": ["W"], "endpoint_id": ep["id"]}),
        )
        .await;
    assert_eq!(s, 403);
    quota(&v, "subscriptions");
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/endpoints", a.id),
            &a.admin,
            json!({"url": rx.url("/third")}),
        )
        .await;
    assert_eq!(s, 403);
    quota(&v, "endpoints");
    // Executors: a new version of one is not another executor.
    let store =
        "def main(input, sdk):\n    sdk.storage.set(input['k'], 'x' * input['n'])\n    return 1\n";
    put_executor(&app, &a, "store", code("python", store)).await;
    put_executor(&app, &a, "store", code("python", store)).await;
    put_executor(
        &app,
        &a,
        "other",
        code("javascript", "function main() { return 1; }"),
    )
    .await;
    let (s, v) = app
        .call(
            Method::PUT,
            &format!("/v1/orgs/{}/executors/third", a.id),
            &a.admin,
            Some(code("javascript", "function main() { return 1; }")),
        )
        .await;
    assert_eq!(s, 403);
    quota(&v, "executors");
    // Key-value bytes: the write that passes them fails the run, naming the quota.
    let r = run(&app, &a, "store", json!({"k": "a", "n": 600})).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    let r = run(&app, &a, "store", json!({"k": "b", "n": 600})).await;
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("`kv_bytes`")),
        "{r:#}"
    );
    // Rewriting a key smaller is allowed.
    let r = run(&app, &a, "store", json!({"k": "a", "n": 10})).await;
    assert_eq!(r["status"], "succeeded", "{r:#}");
    // Schedules: their number and their payloads' bytes.
    let schedule = |pad: usize| json!({"cron": "0 0 * * *", "event_type": "T", "data": {"pad": "x".repeat(pad)}});
    let put_schedule = |name: &'static str, body: Value| {
        let (app, a) = (&app, &a);
        async move {
            app.call(
                Method::PUT,
                &format!("/v1/orgs/{}/schedules/{name}", a.id),
                &a.admin,
                Some(body),
            )
            .await
        }
    };
    let (s, v) = put_schedule("s1", schedule(100)).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = put_schedule("s2", schedule(250)).await;
    assert_eq!(s, 403);
    quota(&v, "schedule_bytes");
    let (s, v) = put_schedule("s2", schedule(10)).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = put_schedule("s3", schedule(10)).await;
    assert_eq!(s, 403);
    quota(&v, "schedules");
    // Publishes per minute: 429 with Retry-After.
    for i in 0..5 {
        app.publish(&a, json!({"id": format!("e-{i}"), "type": "T", "data": {}}))
            .await;
    }
    let r = app
        .client
        .post(app.url(&format!("/v1/orgs/{}/events", a.id)))
        .bearer_auth(&a.publisher)
        .json(&json!({"id": "e-6", "type": "T", "data": {}}))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    // Replays per hour: the call replays what the limit leaves, the next is refused.
    rx.wait_for(5, Duration::from_secs(60)).await;
    let (s, v) = app
        .post(
            &format!(
                "/v1/orgs/{}/endpoints/{}/replay",
                a.id,
                ep["id"].as_str().expect("id")
            ),
            &a.admin,
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    assert_eq!(v["deliveries"], 3, "{v}");
    let (s, v) = app
        .post(
            &format!(
                "/v1/orgs/{}/endpoints/{}/replay",
                a.id,
                ep["id"].as_str().expect("id")
            ),
            &a.admin,
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 429, "{v}");
    // What it uses is in the answer of its limits.
    let (s, v) = app
        .get(&format!("/v1/orgs/{}/limits", a.id), &a.viewer)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["endpoints"], 2);
    assert_eq!(v["usage"]["subscriptions"], 3);
    assert_eq!(v["usage"]["executors"], 2);
    assert_eq!(v["usage"]["schedules"], 2);
    assert_eq!(v["limits"]["events_per_minute"], 5);
    app.stop().await;
}
