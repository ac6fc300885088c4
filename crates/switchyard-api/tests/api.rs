//! The API on its own router (`router(state).oneshot(…)`), over a real hub on a real SQLite
//! file: authentication and authorization, 404 rather than 403 across organizations, how
//! errors map to answers, pagination, and catalog changes taking effect at once.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard_api::{AppState, Limits, router};
use switchyard_core::crypto::MasterKey;
use switchyard_hub::{Hub, HubSettings};
use switchyard_store::SqliteStore;
use tower::ServiceExt;

const ADMIN: &str = "sy_api_test_admin_key_0123456789";

/// The API of a fresh hub, with the instance admin key [`ADMIN`].
struct Api {
    router: Router,
    hub: Hub,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, _) = MasterKey::generate();
        let store = SqliteStore::open(&dir.path().join("api.db"), key).expect("store");
        let hub = Hub::start(
            std::sync::Arc::new(store),
            HubSettings::defaults("api-test"),
        )
        .await
        .expect("hub");
        let state = AppState::new(hub.clone(), Some(ADMIN), Limits::default(), None);
        Api {
            router: router(state),
            hub,
            _dir: dir,
        }
    }

    /// One request; the answer's status and JSON body (`Null` when empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let res = self.router.clone().oneshot(req).await.expect("answer");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
            .await
            .expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, json)
    }

    /// An organization and one key of each role: (admin, publisher, viewer).
    async fn org(&self, id: &str) -> (String, String, String) {
        let (s, v) = self
            .call(
                Method::POST,
                "/v1/orgs",
                Some(ADMIN),
                Some(json!({"id": id, "name": id})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let mut keys = Vec::new();
        for role in ["admin", "publisher", "viewer"] {
            let (s, v) = self
                .call(
                    Method::POST,
                    &format!("/v1/orgs/{id}/keys"),
                    Some(ADMIN),
                    Some(json!({"role": role})),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            keys.push(v["key"].as_str().expect("key").to_string());
        }
        let viewer = keys.pop().expect("viewer");
        let publisher = keys.pop().expect("publisher");
        let admin = keys.pop().expect("admin");
        (admin, publisher, viewer)
    }

    async fn stop(self) {
        self.hub.shutdown(std::time::Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_and_another_organization_is_not_found() {
    let api = Api::start().await;
    let (a_admin, a_publisher, a_viewer) = api.org("a").await;
    let (b_admin, _, _) = api.org("b").await;
    // No key, a made-up key: 401.
    let (s, v) = api
        .call(Method::GET, "/v1/orgs/a/endpoints", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, _) = api
        .call(
            Method::GET,
            "/v1/orgs/a/endpoints",
            Some("sy_made_up_key_000000000000"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Another organization's key: its resources are not found, never "forbidden" (which
    // would tell that they exist).
    for path in [
        "/v1/orgs/a/endpoints",
        "/v1/orgs/a/events",
        "/v1/orgs/a/limits",
        "/v1/orgs/a/endpoints/ep_00000000000000000000000000000000",
    ] {
        let (s, v) = api.call(Method::GET, path, Some(&b_admin), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    // Within its organization, each role does what it may and no more.
    let (s, _) = api
        .call(Method::GET, "/v1/orgs/a/endpoints", Some(&a_viewer), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let ep = json!({"url": "https://example.com/hook"});
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/orgs/a/endpoints",
            Some(&a_publisher),
            Some(ep.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/orgs/a/endpoints",
            Some(&a_admin),
            Some(ep),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // A revoked key is refused from its next request on, though it was just trusted.
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/orgs/a/keys",
            Some(&a_admin),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (key, id) = (
        v["key"].as_str().expect("key"),
        v["id"].as_str().expect("id"),
    );
    let (s, _) = api
        .call(Method::GET, "/v1/orgs/a/events", Some(key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // Another organization cannot revoke it: not found, and the key still works.
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/orgs/b/keys/{id}"),
            Some(&b_admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .call(Method::GET, "/v1/orgs/a/events", Some(key), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/orgs/a/keys/{id}"),
            Some(&a_admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .call(Method::GET, "/v1/orgs/a/events", Some(key), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // An organization's admin is not the instance's.
    let (s, _) = api
        .call(
            Method::POST,
            "/v1/orgs",
            Some(&a_admin),
            Some(json!({"id": "c", "name": "c"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_names_what_was_not_found() {
    let api = Api::start().await;
    let (admin, _, _) = api.org("n").await;
    let hex = "00000000000000000000000000000000";
    for (method, path, what) in [
        (Method::GET, format!("endpoints/ep_{hex}"), "endpoint"),
        (Method::DELETE, format!("endpoints/ep_{hex}"), "endpoint"),
        (
            Method::GET,
            format!("endpoints/ep_{hex}/health"),
            "endpoint",
        ),
        (
            Method::GET,
            format!("subscriptions/sub_{hex}"),
            "subscription",
        ),
        (
            Method::DELETE,
            format!("subscriptions/sub_{hex}"),
            "subscription",
        ),
        (Method::GET, "event-types/no.such.type".into(), "event type"),
        (Method::GET, "events/evt-none".into(), "event"),
        (Method::GET, format!("deliveries/dlv_{hex}"), "delivery"),
        (Method::GET, "executors/none".into(), "executor"),
        (Method::DELETE, "executors/none".into(), "executor"),
        (Method::GET, format!("runs/run_{hex}"), "run"),
        (Method::GET, "schedules/none".into(), "schedule"),
        (Method::DELETE, "schedules/none".into(), "schedule"),
        (Method::GET, "hooks/none".into(), "hook"),
        (Method::DELETE, "hooks/none".into(), "hook"),
        (Method::DELETE, "secrets/NONE".into(), "secret"),
        (Method::DELETE, format!("keys/key_{hex}"), "key"),
    ] {
        let (s, v) = api
            .call(
                method.clone(),
                &format!("/v1/orgs/n/{path}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found", "{method} {path}: {v}");
        assert_eq!(
            v["error"]["message"],
            format!("{what} not found"),
            "{method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_their_answers() {
    let api = Api::start().await;
    let (admin, publisher, _) = api.org("e").await;
    let publish = |body: Value| {
        api.call(
            Method::POST,
            "/v1/orgs/e/events",
            Some(&publisher),
            Some(body),
        )
    };
    // Malformed JSON: 400; a field of the wrong kind: 422.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/orgs/e/events")
        .header("authorization", format!("Bearer {publisher}"))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    let res = api.router.clone().oneshot(req).await.expect("answer");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (s, v) = publish(json!({"type": 12})).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid")),
        "{v}"
    );
    // The hub's checks, as every front gets them: a type that is no name, a reserved one.
    let (s, v) = publish(json!({"type": "has space", "data": {}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("`type`"),
        "{v}"
    );
    let (s, v) = publish(json!({"type": "switchyard.endpoint.disabled", "data": {}})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("reserved"),
        "{v}"
    );
    // A schema takes effect with the answer that saved it; a batch names the event it refuses.
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/orgs/e/event-types/Order",
            Some(&admin),
            Some(json!({"schema": {"type": "object", "required": ["id"]}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/orgs/e/events/batch",
            Some(&publisher),
            Some(json!({"events": [{"type": "Order", "data": {"id": 1}}, {"type": "Order", "data": {}}]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "schema_violation");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("events[1]: "),
        "{v}"
    );
    let (_, v) = api
        .call(Method::GET, "/v1/orgs/e/events", Some(&admin), None)
        .await;
    assert_eq!(v["data"], json!([]), "a refused batch stores nothing");
    // Loosened again: the next publish passes at once.
    let (s, _) = api
        .call(
            Method::PUT,
            "/v1/orgs/e/event-types/Order",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = publish(json!({"type": "Order", "data": {}})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Missing things are 404 with their kind; a bad id is 404 too (it names nothing).
    let (s, v) = api
        .call(
            Method::GET,
            "/v1/orgs/e/endpoints/ep_00000000000000000000000000000000",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("endpoint"),
        "{v}"
    );
    let (s, _) = api
        .call(
            Method::GET,
            "/v1/orgs/e/endpoints/nonsense",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A quota: 403 naming it.
    let (s, v) = api
        .call(
            Method::PUT,
            "/v1/orgs/e/limits",
            Some(ADMIN),
            Some(json!({"endpoints": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/orgs/e/endpoints",
            Some(&admin),
            Some(json!({"url": "https://example.com"})),
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("quota_exceeded")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("endpoints"),
        "{v}"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_in_pages_that_neither_skip_nor_repeat() {
    let api = Api::start().await;
    let (_, publisher, viewer) = api.org("p").await;
    let events: Vec<Value> = (0..7)
        .map(|i| json!({"id": format!("e{i}"), "type": "T", "data": {"i": i}}))
        .collect();
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/orgs/p/events/batch",
            Some(&publisher),
            Some(json!({"events": events})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut seen = Vec::new();
    let mut path = "/v1/orgs/p/events?limit=3".to_string();
    loop {
        let (s, v) = api.call(Method::GET, &path, Some(&viewer), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = v["data"].as_array().expect("data");
        assert!(page.len() <= 3, "{v}");
        seen.extend(
            page.iter()
                .map(|e| e["id"].as_str().expect("id").to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/orgs/p/events?limit=3&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 7, "pages never end: {seen:?}");
    }
    let want: Vec<String> = (0..7).rev().map(|i| format!("e{i}")).collect();
    assert_eq!(seen, want, "newest first, each once");
    // A cursor this API never gave out is refused, not read as something else.
    let (s, _) = api
        .call(
            Method::GET,
            "/v1/orgs/p/events?cursor=abc",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    api.stop().await;
}
