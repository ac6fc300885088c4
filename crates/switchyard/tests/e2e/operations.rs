//! Operations: health, readiness, Prometheus metrics, OpenAPI, listings with cursors.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let org = app.org("ops").await;
    app.endpoint(&org, json!({"url": rx.url("/")}), &["*"])
        .await;
    app.publish(&org, json!({"id": "m1", "type": "T", "data": {}}))
        .await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    app.wait_trace(&org, "m1", Duration::from_secs(5), |t| {
        first_delivery_status(t) == Some("delivered")
    })
    .await;

    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "switchyard_events_published_total",
        "switchyard_deliveries_total",
        "switchyard_attempt_duration_seconds_bucket",
        "switchyard_queue_depth",
        "# HELP switchyard_events_published_total Events committed",
        "# HELP switchyard_http_requests_total",
        "# TYPE switchyard_attempt_duration_seconds histogram",
        "switchyard_build_info{version=\"",
        "switchyard_http_requests_total{method=\"POST\",route=\"/v1/orgs/{org}/events\",status=\"202\"}",
        "switchyard_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/orgs/{org}/events\"",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let doc: serde_json::Value = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for p in [
        "/v1/orgs/{org}/events",
        "/v1/orgs/{org}/endpoints/{id}/rotate-secret",
        "/v1/orgs/{org}/deliveries",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
    assert!(doc["components"]["schemas"].get("EndpointIn").is_some());
    app.stop().await;
}

#[tokio::test]
async fn event_listing_filters_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    let org = app.org("list").await;
    for i in 0..7 {
        let t = if i % 2 == 0 { "Even" } else { "Odd" };
        app.publish(&org, json!({"id": format!("e{i}"), "type": t, "entity": {"type": "Ticket", "id": i}, "data": {}})).await;
    }
    let base = format!("/v1/orgs/{}/events", org.id);
    let (_, p1) = app.get(&format!("{base}?limit=3"), &org.viewer).await;
    let ids = |v: &serde_json::Value| {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), vec!["e6", "e5", "e4"]);
    let cursor = p1["next_cursor"].as_str().expect("cursor");
    let (_, p2) = app
        .get(&format!("{base}?limit=3&cursor={cursor}"), &org.viewer)
        .await;
    assert_eq!(ids(&p2), vec!["e3", "e2", "e1"]);
    let (_, odd) = app.get(&format!("{base}?type=Odd"), &org.viewer).await;
    assert_eq!(ids(&odd), vec!["e5", "e3", "e1"]);
    let (_, one) = app.get(&format!("{base}?entity_id=4"), &org.viewer).await;
    assert_eq!(ids(&one), vec!["e4"]);
    let (_, none) = app
        .get(&format!("{base}?since=2999-01-01T00:00:00Z"), &org.viewer)
        .await;
    assert!(ids(&none).is_empty());
    let (s, v) = app
        .get(&format!("{base}?cursor=garbage"), &org.viewer)
        .await;
    assert_eq!(s, 400, "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_the_hub_cannot_run_is_refused_when_saved() {
    // The real binary in a mount namespace where `php` is not a program.
    switchyard_egress::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let script = format!(
        "mount --bind /dev/null \"$(readlink -f /usr/bin/php)\" && exec {} serve --listen 127.0.0.1:{port} --data-dir {}",
        env!("CARGO_BIN_EXE_switchyard"),
        dir.path().display()
    );
    let _hub = KillOnDrop(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("SWITCHYARD_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = serde_json::Value::Null;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            ready = r.json().await.expect("json");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let languages = ready["languages"].as_array().expect("languages").clone();
    assert!(languages.contains(&json!("python")), "{ready}");
    assert!(languages.contains(&json!("javascript")), "{ready}");
    assert!(!languages.contains(&json!("php")), "{ready}");
    let put = |lang: &str| {
        client
            .put(format!("{base}/v1/orgs/l/executors/x-{lang}"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"type": "code", "language": lang,
                "source": if lang == "php" { "<?php echo 1;" } else { "print(1)" }}))
            .send()
    };
    client
        .post(format!("{base}/v1/orgs"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"id": "l", "name": "L"}))
        .send()
        .await
        .expect("org");
    let r = put("php").await.expect("put");
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.expect("json");
    let msg = v["error"]["message"].as_str().expect("msg");
    assert!(
        msg.contains("php") && msg.contains("not installed"),
        "{msg}"
    );
    assert_eq!(put("python").await.expect("put").status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_for_an_independent_validator() {
    let app = spawn_app().await;
    let text = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .text()
        .await
        .expect("text");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    // Unique operationIds (client generators name methods after them), a bearer scheme.
    let mut ids = std::collections::HashSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(
                ids.insert(id.to_string()),
                "{method} {path}: `{id}` is used twice"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The reference validator from PyPI (scripts/test installs it beside standardwebhooks).
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), &text).expect("write");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
        ])
        .arg(file.path())
        .output()
        .expect("python3 with openapi-spec-validator (scripts/test installs it)");
    assert!(
        out.status.success(),
        "the OpenAPI document is invalid:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}
