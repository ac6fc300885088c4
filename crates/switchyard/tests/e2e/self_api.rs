//! Code calls its hub's own API (`sdk.api`) as its organization, with the role its executor
//! declares: in every language, never outside its organization, never as more than a publisher.

use crate::executors::{put_executor, run};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};

const PY: &str = r#"
def main(input, sdk):
    made = sdk.api("POST", "/events", {"id": input["id"], "type": "code.made", "data": {"by": "python"}})
    trace = sdk.api("GET", "/events/" + input["id"])
    return {"published": made["status"], "trace": trace["status"], "type": trace["body"]["type"]}
"#;

const PHP: &str = r#"<?php
function main($in, $sdk) {
    $made = $sdk->api('POST', '/events', ['id' => $in['id'], 'type' => 'code.made', 'data' => ['by' => 'php']]);
    $trace = $sdk->api('GET', '/events/' . $in['id']);
    return ['published' => $made['status'], 'trace' => $trace['status'], 'type' => $trace['body']['type']];
}
"#;

const JS: &str = r#"
async function main(input, sdk) {
  const made = await sdk.api("POST", "/events", { id: input.id, type: "code.made", data: { by: "js" } });
  const trace = await sdk.api("GET", "/events/" + input.id);
  return { published: made.status, trace: trace.status, type: trace.body.type };
}
"#;

fn publisher(language: &str, source: &str) -> Value {
    json!({"type": "code", "language": language, "source": source, "timeout_ms": 10000,
           "api_role": "publisher"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_calls_the_hubs_own_api_as_its_organization_in_every_language() {
    let app = spawn_app().await;
    let org = app.org("selfapi").await;
    let other = app.org("selfapi-other").await;
    for (lang, source) in [
        ("python", PY),
        ("php", PHP),
        ("node", JS),
        ("javascript", JS),
    ] {
        let name = format!("pub-{lang}");
        put_executor(&app, &org, &name, publisher(lang, source)).await;
        let id = format!("from-{lang}");
        let out = run(&app, &org, &name, json!({"id": id})).await;
        assert_eq!(out["status"], "succeeded", "{lang}: {out:#}");
        assert_eq!(
            out["output"],
            json!({"published": 202, "trace": 200, "type": "code.made"}),
            "{lang}: {out:#}"
        );
        // Committed in its own organization, invisible to another.
        assert_eq!(app.trace(&org, &id).await["type"], "code.made");
        let (s, _) = app
            .get(&format!("/v1/orgs/{}/events/{id}", other.id), &other.viewer)
            .await;
        assert_eq!(s, 404, "{lang}: another organization sees nothing");
    }
    // The role is part of the executor's definition.
    let (s, v) = app
        .get(
            &format!("/v1/orgs/{}/executors/pub-python", org.id),
            &org.viewer,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["spec"]["api_role"], "publisher", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_never_acts_beyond_its_role_or_its_organization() {
    let app = spawn_app().await;
    let org = app.org("selfapi-v").await;
    let other = app.org("selfapi-w").await;
    app.publish(
        &other,
        json!({"id": "secret-event", "type": "t", "data": {"card": "4111"}}),
    )
    .await;
    // The default role reads but does not publish.
    put_executor(
        &app,
        &org,
        "viewer",
        json!({"type": "code", "language": "python", "timeout_ms": 10000, "source":
            "def main(input, sdk):\n    made = sdk.api('POST', '/events', {'id': 'v1', 'type': 't', 'data': {}})\n    listed = sdk.api('GET', '/events?limit=5')\n    theirs = sdk.api('GET', '/events/secret-event')\n    return {'made': made['status'], 'listed': listed['status'], 'theirs': theirs['status']}\n"}),
    )
    .await;
    let out = run(&app, &org, "viewer", json!({})).await;
    assert_eq!(
        out["output"],
        json!({"made": 403, "listed": 200, "theirs": 404}),
        "{out:#}"
    );
    let (s, _) = app
        .get(&format!("/v1/orgs/{}/events/v1", org.id), &org.viewer)
        .await;
    assert_eq!(s, 404, "a viewer's code published nothing");

    // A path that climbs out of the organization is refused before any request.
    for path in [
        "/../selfapi-w/events/secret-event",
        "/events/..%2f..%2fselfapi-w",
        "//selfapi-w/events",
    ] {
        let source = format!(
            "def main(input, sdk):\n    return sdk.api('GET', {})\n",
            serde_json::to_string(path).expect("json")
        );
        put_executor(
            &app,
            &org,
            "climb",
            json!({"type": "code", "language": "python",
            "timeout_ms": 10000, "api_role": "publisher", "source": source}),
        )
        .await;
        let out = run(&app, &org, "climb", json!({})).await;
        assert_eq!(out["status"], "failed", "{path}: {out:#}");
        assert!(
            out["error"]
                .as_str()
                .unwrap_or("")
                .contains("only a resource of this organization"),
            "{path}: {out:#}"
        );
    }
    // Admin operations stay out of reach even as a publisher: keys, executors, the org itself.
    put_executor(
        &app,
        &org,
        "grab",
        json!({"type": "code", "language": "python", "timeout_ms": 10000, "api_role": "publisher",
            "source": "def main(input, sdk):\n    k = sdk.api('POST', '/keys', {'role': 'admin'})\n    e = sdk.api('PUT', '/executors/evil', {'type': 'code', 'language': 'python', 'source': 'x'})\n    return {'keys': k['status'], 'executors': e['status']}\n"}),
    )
    .await;
    let out = run(&app, &org, "grab", json!({})).await;
    assert_eq!(
        out["output"],
        json!({"keys": 403, "executors": 403}),
        "{out:#}"
    );

    // No role above publisher, and none for executors that run no code.
    for (body, why) in [
        (
            json!({"type": "code", "language": "python", "source": "x", "api_role": "admin"}),
            "`api_role` must be `viewer` or `publisher`",
        ),
        (
            json!({"type": "api_call", "method": "GET", "url": "https://example.com/x", "api_role": "viewer"}),
            "belong to `code` executors",
        ),
    ] {
        let (s, v) = app
            .call(
                Method::PUT,
                &format!("/v1/orgs/{}/executors/bad", org.id),
                &org.admin,
                Some(body),
            )
            .await;
        assert_eq!(s, 422, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(why),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organizations_storage_is_one_for_code_and_the_api() {
    let app = spawn_app().await;
    let org = app.org("kv-a").await;
    let other = app.org("kv-b").await;
    let path = |o: &Org, key: &str| format!("/v1/orgs/{}/storage/{key}", o.id);
    // Code keeps a value with `sdk.storage`; the API reads it.
    put_executor(
        &app,
        &org,
        "keep",
        json!({"type": "code", "language": "python", "timeout_ms": 10000, "api_role": "publisher",
            "source": "def main(input, sdk):\n    sdk.storage.set('balance', {'amount': 12.5})\n    sdk.api('PUT', '/storage/from-api', {'value': [1, 2]})\n    return {'read': sdk.api('GET', '/storage/balance')['body'], 'other': sdk.storage.get('from-api')}\n"}),
    )
    .await;
    let out = run(&app, &org, "keep", json!({})).await;
    assert_eq!(
        out["output"],
        json!({"read": {"key": "balance", "value": {"amount": 12.5}}, "other": [1, 2]}),
        "{out:#}"
    );
    let (s, v) = app.get(&path(&org, "balance"), &org.viewer).await;
    assert_eq!(
        (s.as_u16(), &v["value"]),
        (200, &json!({"amount": 12.5})),
        "{v}"
    );
    // Viewers read, publishers write; another organization sees nothing.
    let put = |key: String, who: String, value: Value| {
        let app = &app;
        async move {
            app.call(Method::PUT, &key, &who, Some(json!({"value": value})))
                .await
        }
    };
    let (s, _) = put(path(&org, "x"), org.viewer.clone(), json!(1)).await;
    assert_eq!(s, 403);
    let (s, v) = put(path(&org, "x"), org.publisher.clone(), json!({"n": 1})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = app.get(&path(&org, "x"), &other.admin).await;
    assert_eq!(s, 404, "another organization's key is 404");
    let (s, _) = app.get(&path(&other, "x"), &other.viewer).await;
    assert_eq!(s, 404, "its own storage does not have it");
    // The same bounds as code's: a value over 256 KiB, a key over 512 bytes.
    let (s, v) = put(
        path(&org, "big"),
        org.publisher.clone(),
        json!("x".repeat(300_000)),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = put(
        path(&org, &"k".repeat(600)),
        org.publisher.clone(),
        json!(1),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = app
        .call(Method::DELETE, &path(&org, "x"), &org.publisher, None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call(Method::DELETE, &path(&org, "x"), &org.publisher, None)
        .await;
    assert_eq!(s, 404);
}
