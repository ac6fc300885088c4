//! The egress guard: private, loopback, link-local and metadata destinations are refused unless
//! allow-listed, both when an endpoint is written and when a host name resolves to one.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn private_destinations_are_refused_unless_allow_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(dir.path(), |s| s.allow_destinations.clear()).await;
    let rx = TestReceiver::start().await;
    let org = app.org("egress").await;
    let eps = format!("/v1/orgs/{}/endpoints", org.id);
    for url in [
        format!("http://127.0.0.1:{}/", rx.addr.port()),
        "http://10.0.0.1/hook".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/".to_string(),
        "http://0.0.0.0/".to_string(),
    ] {
        let (s, v) = app.post(&eps, &org.admin, json!({"url": url})).await;
        assert_eq!(s, 422, "{url}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("msg")
                .contains("destination refused"),
            "{v}"
        );
    }

    // A host name is checked when it is resolved, and the refusal is in the attempt.
    app.endpoint(
        &org,
        json!({"url": format!("http://localhost:{}/", rx.addr.port()), "retry_schedule_s": []}),
        &["*"],
    )
    .await;
    app.publish(&org, json!({"id": "e1", "type": "T", "data": {}}))
        .await;
    let trace = app
        .wait_trace(&org, "e1", Duration::from_secs(10), |t| {
            first_delivery_status(t) == Some("failed")
        })
        .await;
    let err = trace["deliveries"][0]["attempts"][0]["error"]
        .as_str()
        .expect("error")
        .to_string();
    assert!(
        err.contains("destination refused") && err.contains("loopback"),
        "{err}"
    );
    assert!(
        rx.received().is_empty(),
        "nothing reached the loopback receiver"
    );
    app.stop().await;

    // The same hub with loopback allow-listed delivers.
    let app = spawn_app_in(dir.path(), |s| {
        s.allow_destinations = vec!["127.0.0.0/8".parse().expect("cidr")]
    })
    .await;
    let (s, v) = app
        .post(&eps, &org.admin, json!({"url": rx.url("/")}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = app
        .post(&eps, &org.admin, json!({"url": "http://10.0.0.1/"}))
        .await;
    assert_eq!(s, 422, "only the listed range is exempt: {v}");
    app.stop().await;
}

#[tokio::test]
async fn require_https_refuses_plain_http() {
    let app = spawn_app_in(
        tempfile::tempdir().expect("tempdir").keep().as_path(),
        |s| s.require_https = true,
    )
    .await;
    let org = app.org("https").await;
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/endpoints", org.id),
            &org.admin,
            json!({"url": "http://example.com/"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("https")
    );
    app.stop().await;
}
