//! The web console and the live stream it follows: served by the real hub, driven in a real
//! headless Chromium (`tests/console/drive.py`, Playwright), and attacked over HTTP.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// Sign in, watch an event published through the API arrive in the live tail, open its trace,
/// retry its failed delivery, read the endpoint's health, preview an executor and save a new
/// version, make a key, and see a viewer's read-only pages; screenshots of each page land in
/// `target/tmp/console-screenshots`.
#[tokio::test]
async fn the_console_in_a_real_browser() {
    let app = spawn_app().await;
    let org = app.org("console").await;
    let rx = TestReceiver::start().await;
    // The first attempt fails and the next is an hour away: only the console's retry sends it.
    rx.script([Reply::status(500)]);
    let ep = app
        .endpoint(
            &org,
            json!({"url": rx.url("/hook"), "description": "the CRM", "retry_schedule_s": [3600]}),
            &["Ticket*"],
        )
        .await;
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{}/executors/double", org.id),
            &org.admin,
            Some(json!({"type": "code", "language": "javascript", "description": "doubles n",
                "source": "function main(input, sdk) { sdk.log('doubling'); return { n: input.n * 2 }; }"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/drive.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("SY_URL", format!("http://{}", app.addr))
        .env("SY_ORG", &org.id)
        .env("SY_ADMIN", &org.admin)
        .env("SY_VIEWER", &org.viewer)
        .env("SY_ENDPOINT", ep["id"].as_str().expect("endpoint id"))
        .env("SY_SHOTS", &shots)
        .env("SY_CHROMIUM", "/usr/bin/chromium")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("python3 runs (scripts/test installs Playwright in its virtual environment)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the console test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every step passed"), "{stdout}\n{stderr}");
    for page in [
        "02-events-live-tail",
        "03-event-trace",
        "06-executor-preview",
    ] {
        let png = std::fs::read(shots.join(format!("{page}.png"))).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{page} is a PNG");
    }
    // What the browser did happened: the receiver got the retry.
    assert_eq!(rx.received().len(), 2);
    app.stop().await;
}

/// The console's files forbid any script but their own, and the API's data never becomes
/// markup there (the browser test checks that; here, the headers that enforce it).
#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/console"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK, "/console leads to the page");
    assert_eq!(r.url().path(), "/console/");
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = r.text().await.expect("body");
    assert!(page.contains("/console/console.js"));
    // The icon, also where browsers look for one.
    for path in ["/console/icon.svg", "/favicon.ico"] {
        let r = app.client.get(app.url(path)).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("image/svg+xml"),
            "{path}"
        );
    }
    assert!(!page.contains("<script>"), "no inline script");
    let js = app
        .client
        .get(app.url("/console/console.js"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        js.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/javascript; charset=utf-8")
    );
    let source = js.text().await.expect("body");
    assert!(
        !source.contains("innerHTML") && !source.contains("insertAdjacentHTML"),
        "the console never turns data into markup"
    );
    app.stop().await;
}

/// Reads server-sent messages from a stream until `n` events arrived, the stream ended, or
/// `within` passed.
async fn read_events(
    mut resp: reqwest::Response,
    n: usize,
    within: Duration,
) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    let mut id = String::new();
    let mut buf = String::new();
    let _ = tokio::time::timeout(within, async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                let line = line.trim_end();
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    got.push((id.clone(), serde_json::from_str(d).expect("event json")));
                    if got.len() >= n {
                        return;
                    }
                }
            }
        }
    })
    .await;
    got
}

async fn open_stream(app: &TestApp, org: &str, key: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/orgs/{org}/events/stream{query}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("stream")
}

/// Another organization's key cannot follow this one's stream, this organization's stream
/// never carries another's events, and a stream whose key is revoked ends.
#[tokio::test]
async fn the_live_stream_keeps_tenants_apart_and_ends_with_its_key() {
    let app = spawn_app().await;
    let mine = app.org("tail-mine").await;
    let theirs = app.org("tail-theirs").await;

    let refused = open_stream(&app, &mine.id, &theirs.admin, "").await;
    assert_eq!(
        refused.status(),
        StatusCode::NOT_FOUND,
        "as if it did not exist"
    );
    let anonymous = app
        .client
        .get(app.url(&format!("/v1/orgs/{}/events/stream", mine.id)))
        .send()
        .await
        .expect("stream");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // A viewer key that will be revoked, following the whole stream.
    let (s, k) = app
        .post(
            &format!("/v1/orgs/{}/keys", mine.id),
            &mine.admin,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key = k["key"].as_str().expect("key").to_string();
    let stream = open_stream(&app, &mine.id, &key, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    app.publish(&theirs, json!({"id": "theirs-1", "type": "TicketCreated"}))
        .await;
    app.publish(&mine, json!({"id": "mine-1", "type": "TicketCreated"}))
        .await;
    let reader = tokio::spawn(read_events(stream, 10, Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.publish(&theirs, json!({"id": "theirs-2", "type": "TicketCreated"}))
        .await;
    app.publish(&mine, json!({"id": "mine-2", "type": "TicketCreated"}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!(
                "/v1/orgs/{}/keys/{}",
                mine.id,
                k["id"].as_str().expect("id")
            ),
            &mine.admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The stream ends by itself (within its key re-check), not by the reader's time limit.
    let started = std::time::Instant::now();
    let got = reader.await.expect("reader");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a revoked key's stream ends"
    );
    let ids: Vec<&str> = got.iter().filter_map(|(_, e)| e["id"].as_str()).collect();
    assert_eq!(
        ids,
        vec!["mine-1", "mine-2"],
        "only this organization's events"
    );

    // Resuming after the first one's id gives the second, with the event's fields.
    let stream = open_stream(
        &app,
        &mine.id,
        &mine.viewer,
        &format!("?after={}", got[0].0),
    )
    .await;
    let again = read_events(stream, 1, Duration::from_secs(10)).await;
    assert_eq!(again[0].1["id"], "mine-2");
    assert_eq!(again[0].1["type"], "TicketCreated");
    let bad = open_stream(&app, &mine.id, &mine.viewer, "?type=%3Cscript%3E").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

/// A filtered stream from the start of a long log finds what lies past many windows of
/// non-matching events, and the streams one key or one organization may hold are capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_scan_each_row_once_and_are_capped() {
    let app = spawn_app().await;
    let org = app.org("tail-long").await;
    // 11,000 events of another entity type, then one that matches: past the first window.
    for batch in 0..11 {
        let events: Vec<Value> = (0..1000)
            .map(|i| json!({"id": format!("n-{batch}-{i}"), "type": "T", "entity": {"type": "Other", "id": "x"}, "data": {}}))
            .collect();
        app.publish_batch(&org, events).await;
    }
    app.publish(
        &org,
        json!({"id": "the-one", "type": "T", "entity": {"type": "Match", "id": "1"}, "data": {}}),
    )
    .await;
    let stream = open_stream(&app, &org.id, &org.viewer, "?entity_type=Match&after=0").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let got = read_events(stream, 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "the match past 11,000 others arrived");
    assert_eq!(got[0].1["id"], "the-one");

    // Four streams per key at once; a fifth is refused until one closes.
    let mut open = Vec::new();
    for _ in 0..4 {
        let r = open_stream(&app, &org.id, &org.admin, "").await;
        assert_eq!(r.status(), StatusCode::OK);
        open.push(r);
    }
    let r = open_stream(&app, &org.id, &org.admin, "").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers().get("retry-after").is_some(),
        "a caller may retry"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    drop(open.pop());
    // The closed stream's place frees once the hub notices the reader went away.
    wait_until("a closed stream's place came back", || async {
        open_stream(&app, &org.id, &org.admin, "").await.status() == StatusCode::OK
    })
    .await;
    app.stop().await;
}
