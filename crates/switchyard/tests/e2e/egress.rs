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

/// One address inside each special-purpose range of the IANA registries.
fn special_purpose_samples() -> Vec<(String, &'static str)> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use switchyard_core::egress::{SPECIAL_V4, SPECIAL_V6};
    let mut out = Vec::new();
    for (net, len, name) in SPECIAL_V4 {
        let ip = u32::from(*net) + u32::from(*len < 32);
        out.push((Ipv4Addr::from(ip).to_string(), *name));
    }
    for (net, len, name) in SPECIAL_V6 {
        let ip = u128::from(*net) + u128::from(*len < 128);
        out.push((format!("[{}]", Ipv6Addr::from(ip)), *name));
    }
    // Spelled the way an attacker would: IPv4-compatible, 6to4 and Teredo around loopback.
    for (host, name) in [
        ("[::127.0.0.1]", "IPv4-compatible loopback"),
        ("[2002:7f00:1::1]", "6to4 of loopback"),
        ("[2001:0:7f00:1::1]", "Teredo"),
        ("[::ffff:169.254.169.254]", "mapped metadata"),
        ("[64:ff9b::a00:1]", "NAT64 of a private address"),
    ] {
        out.push((host.to_string(), name));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_special_purpose_range_is_refused_on_all_four_channels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(dir.path(), |s| s.allow_destinations.clear()).await;
    let org = app.org("ranges").await;
    let samples = special_purpose_samples();
    let refused = |v: &serde_json::Value| {
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("destination refused")
    };
    for (host, name) in &samples {
        let url = format!("http://{host}/hook");
        // 1. endpoints
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/endpoints", org.id),
                &org.admin,
                json!({"url": url}),
            )
            .await;
        assert!(s == 422 && refused(&v), "endpoint {url} ({name}): {s} {v}");
        // 2. inline subscription URLs
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/subscriptions", org.id),
                &org.admin,
                json!({"event_types": ["*"], "url": url}),
            )
            .await;
        assert!(
            s == 422 && refused(&v),
            "subscription {url} ({name}): {s} {v}"
        );
        // 3. api_call executors
        let (s, v) = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{}/executors/call", org.id),
                &org.admin,
                Some(json!({"type": "api_call", "method": "GET", "url": url})),
            )
            .await;
        assert!(s == 422 && refused(&v), "api_call {url} ({name}): {s} {v}");
    }
    // 4. sdk.http from code, at run time.
    let urls: Vec<String> = samples
        .iter()
        .map(|(h, _)| format!("http://{h}/hook"))
        .collect();
    crate::executors::put_executor(
        &app,
        &org,
        "prober",
        json!({"type": "code", "language": "python", "timeout_ms": 20000, "source":
            "def main(input, sdk):\n    out = []\n    for u in input['urls']:\n        try:\n            sdk.http('GET', u)\n            out.append(u + ': reached')\n        except Exception as e:\n            out.append(u + ': ' + str(e))\n    return out\n"}),
    )
    .await;
    let r = crate::executors::run(&app, &org, "prober", json!({"urls": urls})).await;
    let results = r["output"].as_array().expect("results");
    assert_eq!(results.len(), samples.len(), "{r:#}");
    for line in results {
        let line = line.as_str().expect("text");
        assert!(line.contains("destination refused"), "sdk.http: {line}");
    }
    app.stop().await;
}
