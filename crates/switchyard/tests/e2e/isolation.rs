//! Tenant isolation and roles: a key of one organization cannot read, list, change or publish
//! into another (404, so ids do not leak), and each role does only what it may.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn keys_of_one_organization_cannot_touch_another() {
    let app = spawn_app().await;
    let rx = TestReceiver::start().await;
    let a = app.org("org-a").await;
    let b = app.org("org-b").await;
    let ep = app.endpoint(&a, json!({"url": rx.url("/")}), &["*"]).await;
    let ep_id = ep["id"].as_str().expect("id");
    app.publish(
        &a,
        json!({"id": "secret-event", "type": "T", "data": {"pii": "x"}}),
    )
    .await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let (_, subs) = app.get("/v1/orgs/org-a/subscriptions", &a.viewer).await;
    let sub_id = subs["data"][0]["id"].as_str().expect("sub").to_string();
    let (_, dl) = app.get("/v1/orgs/org-a/deliveries", &a.viewer).await;
    let dlv_id = dl["data"][0]["id"].as_str().expect("dlv").to_string();

    let attempts: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, "/v1/orgs/org-a".into(), None),
        (Method::GET, "/v1/orgs/org-a/endpoints".into(), None),
        (
            Method::GET,
            format!("/v1/orgs/org-a/endpoints/{ep_id}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/orgs/org-a/endpoints/{ep_id}"),
            Some(json!({"url": "https://evil.example"})),
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/org-a/endpoints/{ep_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/orgs/org-a/endpoints/{ep_id}/rotate-secret"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/orgs/org-a/endpoints/{ep_id}/replay"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        (Method::GET, "/v1/orgs/org-a/subscriptions".into(), None),
        (
            Method::GET,
            format!("/v1/orgs/org-a/subscriptions/{sub_id}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/orgs/org-a/subscriptions/{sub_id}"),
            None,
        ),
        (
            Method::POST,
            "/v1/orgs/org-a/subscriptions".into(),
            Some(json!({"event_types": ["*"], "url": rx.url("/steal")})),
        ),
        (
            Method::POST,
            "/v1/orgs/org-a/events".into(),
            Some(json!({"type": "T", "data": {}})),
        ),
        (
            Method::POST,
            "/v1/orgs/org-a/events/batch".into(),
            Some(json!({"events": [{"type": "T", "data": {}}]})),
        ),
        (Method::GET, "/v1/orgs/org-a/events".into(), None),
        (
            Method::GET,
            "/v1/orgs/org-a/events/secret-event".into(),
            None,
        ),
        (Method::GET, "/v1/orgs/org-a/deliveries".into(), None),
        (
            Method::POST,
            format!("/v1/orgs/org-a/deliveries/{dlv_id}/retry"),
            Some(json!({})),
        ),
        (Method::GET, "/v1/orgs/org-a/event-types".into(), None),
        (
            Method::PUT,
            "/v1/orgs/org-a/event-types/T".into(),
            Some(json!({"description": "x"})),
        ),
        (
            Method::POST,
            "/v1/orgs/org-a/keys".into(),
            Some(json!({"role": "admin"})),
        ),
    ];
    for (m, path, body) in &attempts {
        for key in [&b.admin, &b.publisher, &b.viewer] {
            let (s, v) = app.call(m.clone(), path, key, body.clone()).await;
            assert_eq!(s, 404, "{m} {path} with org-b's key: {v}");
            assert_eq!(v["error"]["code"], "not_found");
        }
    }
    // Ids of org-a under org-b's own path are not found either.
    let (s, _) = app
        .get(&format!("/v1/orgs/org-b/endpoints/{ep_id}"), &b.admin)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .get("/v1/orgs/org-b/events/secret-event", &b.admin)
        .await;
    assert_eq!(s, 404);
    let (s, v) = app
        .post(
            "/v1/orgs/org-b/subscriptions",
            &b.admin,
            json!({"event_types": ["*"], "endpoint_id": ep_id}),
        )
        .await;
    assert_eq!(s, 422, "cannot subscribe another org's endpoint: {v}");
    // Nothing changed in org-a, and nothing more was delivered.
    let (_, e) = app
        .get(&format!("/v1/orgs/org-a/endpoints/{ep_id}"), &a.viewer)
        .await;
    assert_eq!(e["url"], rx.url("/"));
    let (_, list) = app.get("/v1/orgs/org-a/events", &a.viewer).await;
    assert_eq!(list["data"].as_array().expect("list").len(), 1);
    assert!(rx.received().iter().all(|r| r.path == "/"));
    app.stop().await;
}

#[tokio::test]
async fn roles_limit_what_a_key_may_do() {
    let app = spawn_app().await;
    let o = app.org("roles").await;
    let (s, v) = app
        .post(
            "/v1/orgs/roles/events",
            &o.viewer,
            json!({"type": "T", "data": {}}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    let (s, _) = app
        .post(
            "/v1/orgs/roles/endpoints",
            &o.publisher,
            json!({"url": "https://example.com"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post(
            "/v1/orgs/roles/keys",
            &o.publisher,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post("/v1/orgs", &o.admin, json!({"id": "x", "name": "x"}))
        .await;
    assert_eq!(s, 403, "only the instance admin creates organizations");
    let (s, _) = app.get("/v1/orgs", &o.admin).await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post(
            "/v1/orgs/roles/events",
            &o.publisher,
            json!({"type": "T", "data": {}}),
        )
        .await;
    assert_eq!(s, 202);
    let (s, _) = app.get("/v1/orgs/roles/events", &o.viewer).await;
    assert_eq!(s, 200);
    let (s, v) = app.get("/v1/orgs/roles/events", "sy_not_a_key").await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let r = app
        .client
        .get(app.url("/v1/orgs/roles/events"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 401);
    let (s, _) = app.get("/v1/orgs/nope/events", ADMIN_KEY).await;
    assert_eq!(s, 404, "the instance admin gets 404 for a missing org");
    app.stop().await;
}

#[tokio::test]
async fn an_id_of_the_wrong_kind_or_shape_names_nothing() {
    let app = spawn_app().await;
    let org = app.org("ids").await;
    let rx = TestReceiver::start().await;
    let ep = app
        .endpoint(&org, json!({"url": rx.url("/")}), &["T"])
        .await;
    let ep_id = ep["id"].as_str().expect("id").to_string();
    let o = &org.id;
    // Another kind's id, an id cut short, upper case, and text that is no id at all: 404 naming
    // the kind asked for, never a look-up that could match something else.
    let sub_shaped = ep_id.replacen("ep_", "sub_", 1);
    for (method, path, what) in [
        (
            reqwest::Method::GET,
            format!("/v1/orgs/{o}/endpoints/{sub_shaped}"),
            "endpoint",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/orgs/{o}/endpoints/{}", &ep_id[..20]),
            "endpoint",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/orgs/{o}/endpoints/{}", ep_id.to_uppercase()),
            "endpoint",
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/orgs/{o}/endpoints/ep_not-hex"),
            "endpoint",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/orgs/{o}/subscriptions/{ep_id}"),
            "subscription",
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/orgs/{o}/subscriptions/nope"),
            "subscription",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/orgs/{o}/deliveries/{ep_id}"),
            "delivery",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/orgs/{o}/deliveries/x/retry"),
            "delivery",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/orgs/{o}/runs/{ep_id}"),
            "run",
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/orgs/{o}/keys/{ep_id}"),
            "key",
        ),
    ] {
        let (status, v) = app.call(method.clone(), &path, &org.admin, None).await;
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(what)),
            "{method} {path}: {v}"
        );
    }
    // An organization id that no organization can have: 404 for any key, the operator's too.
    for bad in ["x".repeat(65), "a%20b".to_string(), "%2E%2E%2E".to_string()] {
        let (status, v) = app
            .get(&format!("/v1/orgs/{bad}/endpoints"), ADMIN_KEY)
            .await;
        assert_eq!(status, 404, "{bad}: {v}");
    }
    // A subscription to an id that is not an endpoint's is refused when it is made.
    let (status, v) = app
        .post(
            &format!("/v1/orgs/{o}/subscriptions"),
            &org.admin,
            json!({"event_types": ["T"], "endpoint_id": sub_shaped}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    // The real id still works.
    let (status, _) = app
        .get(&format!("/v1/orgs/{o}/endpoints/{ep_id}"), &org.admin)
        .await;
    assert_eq!(status, 200);
    app.stop().await;
}
