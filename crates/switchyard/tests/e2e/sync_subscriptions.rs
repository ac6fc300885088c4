//! Synchronous subscriptions on a running hub, set up as the README's recipe for seed 001's
//! "Webhook for Ticket Updates" and "Webhook for new Emails": the publish waits for its sync
//! targets and answers with what they did; a failing one makes the publish answer 502 while
//! the event and its other deliveries stay committed.

use crate::executors::{code, put_executor};
use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The customer's code for new e-mails: files the mail in its CRM and answers with the case;
/// it refuses an internal note without text, as such code would.
const EMAIL_JS: &str = r#"
function main(input, sdk) {
  const mail = input.data;
  if (mail.direction === "internal" && !mail.body) throw new Error("an internal note needs a text");
  return { filed: true, thread: mail.conversationId || "new", direction: mail.direction };
}
"#;

/// The recipe's event types, with seed 001's rule: `conversationId` is set for a reply or an
/// outgoing mail and `null` otherwise.
async fn define_recipe_types(app: &TestApp, org: &Org) {
    let email_schema = json!({
        "type": "object",
        "required": ["ticketId", "direction", "conversationId"],
        "properties": {
            "ticketId": {"type": "integer"},
            "direction": {"enum": ["incoming", "outgoing", "internal"]},
            "conversationId": {"type": ["string", "null"]},
            "subject": {"type": "string"},
            "body": {"type": "string"}
        },
        "if": {"properties": {"direction": {"const": "outgoing"}}},
        "then": {"properties": {"conversationId": {"type": "string"}}}
    });
    let ticket_schema = json!({
        "type": "object",
        "required": ["ticketId", "changes"],
        "properties": {
            "ticketId": {"type": "integer"},
            "changes": {
                "type": "object", "minProperties": 1,
                "propertyNames": {"enum": ["status", "priority", "deadline", "assignedTo"]}
            }
        }
    });
    for (name, schema) in [("Email", email_schema), ("TicketUpdated", ticket_schema)] {
        let (s, v) = app
            .call(
                Method::PUT,
                &format!("/v1/orgs/{}/event-types/{name}", org.id),
                &org.admin,
                Some(json!({"entity_type": "Ticket", "schema": schema})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

async fn subscribe(app: &TestApp, org: &Org, body: Value) -> Value {
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", org.id),
            &org.admin,
            body,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn publish(app: &TestApp, org: &Org, event: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/v1/orgs/{}/events", org.id),
        &org.publisher,
        event,
    )
    .await
}

/// The trace's delivery to `target` (an endpoint id or executor name).
fn delivery_to<'a>(trace: &'a Value, target: &str) -> &'a Value {
    trace["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["endpoint_id"] == target || d["executor"] == target)
        .unwrap_or_else(|| panic!("no delivery to {target}: {trace:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_waits_for_its_sync_targets_and_reports_each() {
    let app = spawn_app().await;
    let org = app.org("sync-recipe").await;
    define_recipe_types(&app, &org).await;
    let crm = TestReceiver::start().await;
    let archive = TestReceiver::start().await;
    put_executor(&app, &org, "file-email", code("javascript", EMAIL_JS)).await;

    // The ticket-update webhook: an endpoint, waited for.
    let (s, ep) = app
        .post(
            &format!("/v1/orgs/{}/endpoints", org.id),
            &org.admin,
            json!({"url": crm.url("/ticket-updated"), "description": "CRM"}),
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    let crm_id = ep["id"].as_str().expect("id").to_string();
    let ticket_sub = subscribe(
        &app,
        &org,
        json!({"event_types": ["TicketUpdated"], "endpoint_id": crm_id, "mode": "sync"}),
    )
    .await;
    assert_eq!(ticket_sub["mode"], "sync");
    // The new-email webhook: the customer's code, waited for.
    let email_sub = subscribe(
        &app,
        &org,
        json!({"event_types": ["Email"], "executor": "file-email", "mode": "sync"}),
    )
    .await;
    // And an archive that takes everything, asynchronously as always.
    let archive_ep = app
        .endpoint(&org, json!({"url": archive.url("/all")}), &["*"])
        .await;
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/subscriptions", org.id),
            &org.admin,
            json!({"event_types": ["Email"], "executor": "file-email", "mode": "later"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`sync`"),
        "{v}"
    );

    // A ticket update: the publish answers once the CRM has answered, with its answer.
    crm.script([Reply::status(200)]);
    let (s, v) = publish(
        &app,
        &org,
        json!({"id": "tu-1", "type": "TicketUpdated", "entity": {"type": "Ticket", "id": 7},
               "data": {"ticketId": 7, "changes": {"status": {"from": "open", "to": "closed"},
                                                   "assignedTo": {"from": null, "to": 12}}}}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(
        crm.received().len(),
        1,
        "the CRM was called before the answer"
    );
    let sync = v["sync"].as_array().expect("sync outcomes");
    assert_eq!(sync.len(), 1, "{v}");
    assert_eq!(sync[0]["status"], "delivered");
    assert_eq!(sync[0]["status_code"], 200);
    assert_eq!(sync[0]["endpoint_id"], crm_id.as_str());
    assert_eq!(sync[0]["subscription_id"], ticket_sub["id"]);
    assert_eq!(sync[0]["output"], "receiver says hi");
    assert_eq!(v["deliveries"], 2, "the CRM's and the archive's");
    // Recorded before the answer: one attempt, delivered.
    let trace = app.trace(&org, "tu-1").await;
    let d = delivery_to(&trace, &crm_id);
    assert_eq!(d["status"], "delivered", "{trace:#}");
    assert_eq!(d["attempt_count"], 1);
    assert_eq!(d["id"], sync[0]["delivery_id"]);
    archive.wait_for(1, Duration::from_secs(10)).await;

    // An incoming mail (no conversation yet) and an outgoing reply: the code's output comes back.
    let (s, v) = publish(
        &app,
        &org,
        json!({"id": "mail-1", "type": "Email", "entity": {"type": "Ticket", "id": 7},
               "data": {"ticketId": 7, "direction": "incoming", "conversationId": null,
                        "subject": "Meter reading", "body": "1234 kWh"}}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["sync"][0]["executor"], "file-email");
    assert_eq!(v["sync"][0]["subscription_id"], email_sub["id"]);
    assert_eq!(
        v["sync"][0]["output"],
        json!({"filed": true, "thread": "new", "direction": "incoming"})
    );
    let run_id = v["sync"][0]["run_id"].as_str().expect("run id").to_string();
    let trace = app.trace(&org, "mail-1").await;
    assert_eq!(trace["runs"][0]["id"], run_id.as_str(), "{trace:#}");
    assert_eq!(delivery_to(&trace, "file-email")["status"], "delivered");
    let (s, v) = publish(
        &app,
        &org,
        json!({"id": "mail-2", "type": "Email", "entity": {"type": "Ticket", "id": 7},
               "data": {"ticketId": 7, "direction": "outgoing", "conversationId": "conv-9",
                        "body": "Thanks!"}}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["sync"][0]["output"]["thread"], "conv-9");
    // Seed 001's rule, held by the event type's schema: an outgoing mail has a conversation.
    let (s, v) = publish(
        &app,
        &org,
        json!({"type": "Email", "data": {"ticketId": 7, "direction": "outgoing", "conversationId": null}}),
    )
    .await;
    assert_eq!(s, 422, "{v}");

    // Publishing an id again answers with the first event and attempts nothing again.
    let before = crm.received().len();
    let (s, v) = publish(
        &app,
        &org,
        json!({"id": "tu-1", "type": "TicketUpdated", "entity": {"type": "Ticket", "id": 7},
               "data": {"ticketId": 7, "changes": {"status": {"from": "open", "to": "closed"},
                                                   "assignedTo": {"from": null, "to": 12}}}}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["duplicate"], true);
    assert!(v.get("sync").is_none(), "{v}");
    assert_eq!(crm.received().len(), before);
    let _ = archive_ep;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sync_target_answers_502_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(tmp.path(), |s| s.delivery.sync_deadline_ms = 1_000).await;
    let org = app.org("sync-fail").await;
    define_recipe_types(&app, &org).await;
    let crm = TestReceiver::start().await;
    let archive = TestReceiver::start().await;
    put_executor(&app, &org, "file-email", code("javascript", EMAIL_JS)).await;
    let (_, ep) = app
        .post(
            &format!("/v1/orgs/{}/endpoints", org.id),
            &org.admin,
            json!({"url": crm.url("/ticket-updated")}),
        )
        .await;
    let crm_id = ep["id"].as_str().expect("id").to_string();
    subscribe(
        &app,
        &org,
        json!({"event_types": ["TicketUpdated"], "endpoint_id": crm_id, "mode": "sync"}),
    )
    .await;
    subscribe(
        &app,
        &org,
        json!({"event_types": ["Email"], "executor": "file-email", "mode": "sync"}),
    )
    .await;
    app.endpoint(&org, json!({"url": archive.url("/all")}), &["*"])
        .await;
    let ticket = |id: &str| {
        json!({"id": id, "type": "TicketUpdated", "entity": {"type": "Ticket", "id": 8},
               "data": {"ticketId": 8, "changes": {"priority": {"from": "low", "to": "high"}}}})
    };

    // The CRM fails: the platform's user sees why, and the event is committed all the same.
    crm.script([Reply::status(500)]);
    let (s, v) = publish(&app, &org, ticket("tu-500")).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "sync_failed", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("committed") && msg.contains("receiver answered 500"),
        "{msg}"
    );
    assert_eq!(v["id"], "tu-500");
    assert_eq!(v["sync"][0]["status"], "failed");
    assert_eq!(v["sync"][0]["status_code"], 500);
    let dlv = v["sync"][0]["delivery_id"]
        .as_str()
        .expect("delivery")
        .to_string();
    // The archive still gets it; the failed sync delivery is failed after one attempt, not
    // retried behind the caller's back.
    archive.wait_for(1, Duration::from_secs(10)).await;
    let trace = app.trace(&org, "tu-500").await;
    let d = delivery_to(&trace, &crm_id);
    assert_eq!(d["status"], "failed", "{trace:#}");
    assert_eq!(d["attempt_count"], 1);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(crm.received().len(), 1, "no automatic retry");
    // Retried by hand, it is delivered like any other.
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/deliveries/{dlv}/retry", org.id),
            &org.admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    app.wait_trace(&org, "tu-500", Duration::from_secs(10), |t| {
        delivery_to(t, &crm_id)["status"] == "delivered"
    })
    .await;

    // The CRM hangs past the deadline: 502 at the deadline, not when the CRM gives up.
    crm.script([Reply::status(200).delay(Duration::from_secs(30))]);
    let started = Instant::now();
    let (s, v) = publish(&app, &org, ticket("tu-slow")).await;
    let took = started.elapsed();
    assert_eq!(s, 502, "{v}");
    assert!(took < Duration::from_secs(15), "answered after {took:?}");
    let err = v["sync"][0]["error"].as_str().unwrap_or("");
    assert!(err.contains("timeout") && err.contains("1000 ms"), "{v}");
    assert_eq!(
        delivery_to(&app.trace(&org, "tu-slow").await, &crm_id)["status"],
        "failed"
    );

    // The customer's code throws: its reason and its run reach the caller.
    let (s, v) = publish(
        &app,
        &org,
        json!({"id": "note-1", "type": "Email",
               "data": {"ticketId": 8, "direction": "internal", "conversationId": null}}),
    )
    .await;
    assert_eq!(s, 502, "{v}");
    assert!(
        v["sync"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("an internal note needs a text"),
        "{v}"
    );
    let run_id = v["sync"][0]["run_id"].as_str().expect("run id");
    let (s, run) = app
        .get(&format!("/v1/orgs/{}/runs/{run_id}", org.id), &org.viewer)
        .await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["status"], "failed");

    // A batch: every event is committed; the answer names the one whose target failed.
    crm.script([Reply::status(200), Reply::status(503)]);
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{}/events/batch", org.id),
            &org.publisher,
            json!([ticket("b-1"), ticket("b-2")]),
        )
        .await;
    assert_eq!(s, 502, "{v}");
    let failed: Vec<_> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["sync"][0]["status"] == "failed")
        .map(|e| e["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("event `{}`", failed[0])),
        "{v}"
    );
    for id in ["b-1", "b-2"] {
        app.trace(&org, id).await;
    }
    app.stop().await;

    // Everything answered before is still there after a restart.
    let app = spawn_app_in(tmp.path(), |_| {}).await;
    for id in ["tu-500", "tu-slow", "note-1", "b-1", "b-2"] {
        app.trace(&org, id).await;
    }
    app.stop().await;
}
