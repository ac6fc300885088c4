//! Every answer type reads back what it writes: for each `…Out`, a sample with every member
//! set goes JSON → type → JSON unchanged, from text (as the CLI reads an answer) and from a
//! parsed value. Numbers in payloads keep their digits (`arbitrary_precision`), also beside a
//! flattened event.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchyard_wire::List;
use switchyard_wire::catalogs::*;
use switchyard_wire::compat::*;
use switchyard_wire::deliveries::DeliveryPage;
use switchyard_wire::endpoints::*;
use switchyard_wire::event_types::*;
use switchyard_wire::events::*;
use switchyard_wire::executors::*;
use switchyard_wire::orgs::*;
use switchyard_wire::runs::*;
use switchyard_wire::schedules::*;
use switchyard_wire::secrets::*;
use switchyard_wire::subscriptions::*;
use switchyard_wire::sync_hooks::*;

fn round_trips<T: Serialize + DeserializeOwned>(sample: Value) {
    let name = std::any::type_name::<T>();
    let from_text: T = serde_json::from_str(&sample.to_string())
        .unwrap_or_else(|e| panic!("{name} does not read its own JSON: {e}\n{sample:#}"));
    assert_eq!(
        serde_json::to_value(&from_text).expect("writes"),
        sample,
        "{name}, read from text"
    );
    let from_value: T = serde_json::from_value(sample.clone())
        .unwrap_or_else(|e| panic!("{name} does not read its own value: {e}"));
    assert_eq!(
        serde_json::to_value(&from_value).expect("writes"),
        sample,
        "{name}, read from a value"
    );
}

/// A payload with numbers no `f64` or `u64` holds.
fn data() -> Value {
    serde_json::from_str(
        r#"{"ticketId": 123456789012345678901234567890, "price": 0.1000000000000000055511151231257827, "n": -7, "tags": ["a", 1.5], "nested": {"ok": true, "none": null}}"#,
    )
    .expect("sample data")
}

fn event() -> Value {
    json!({
        "id": "evt_1", "type": "ticket.created", "timestamp": "2026-12-07T10:00:00.000Z",
        "entity": {"type": "Ticket", "id": "7"}, "data": data(),
        "received_at": "2026-12-07T10:00:00.001Z", "payload_dropped_at": "2026-12-08T10:00:00.000Z"
    })
}

fn attempt() -> Value {
    json!({
        "id": "att_1", "at": "2026-12-07T10:00:01.000Z", "status_code": 503, "duration_ms": 12.5,
        "error": "HTTP 503", "response_body": "busy", "waited": "120 ms: max_rps",
        "retry_reason": "step 2 of 8", "request_headers": {"content-type": "application/json", "x-token": "[redacted]"},
        "node": "node-a"
    })
}

fn delivery() -> Value {
    json!({
        "id": "dlv_1", "event_id": "evt_1", "endpoint_id": "ep_1", "executor": null,
        "subscription_id": "sub_1", "status": "pending", "attempt_count": 2,
        "next_attempt_at": "2026-12-07T10:05:00.000Z", "in_flight": false,
        "ordering_key": "Ticket/7", "created_at": "2026-12-07T10:00:00.000Z",
        "updated_at": "2026-12-07T10:00:01.000Z", "attempts": [attempt()]
    })
}

fn run() -> Value {
    json!({
        "id": "run_1", "executor": "enrich", "version": 3, "event_id": "evt_1", "hook": null,
        "status": "succeeded", "input": data(), "output": {"n": 2}, "error": "e",
        "failure": "timeout", "logs": ["hello"], "stderr": "", "exit": 0, "duration_ms": 3.25,
        "at": "2026-12-07T10:00:02.000Z"
    })
}

fn sync_outcome() -> Value {
    json!({
        "subscription_id": "sub_1", "delivery_id": "dlv_1", "endpoint_id": "ep_1",
        "executor": "x", "status": "failed", "status_code": 500, "output": data(),
        "error": "HTTP 500", "run_id": "run_1", "duration_ms": 8.0
    })
}

fn published() -> Value {
    let mut p = event();
    let m = p.as_object_mut().expect("object");
    m.insert(
        "error".into(),
        json!({"code": "sync_failed", "message": "a target failed"}),
    );
    m.insert("deliveries".into(), json!(3));
    m.insert("duplicate".into(), json!(false));
    m.insert("sync".into(), json!([sync_outcome()]));
    p
}

#[test]
fn events_deliveries_and_traces() {
    round_trips::<EventOut>(event());
    round_trips::<AttemptOut>(attempt());
    round_trips::<DeliveryOut>(delivery());
    round_trips::<SyncOutcomeOut>(sync_outcome());
    round_trips::<PublishedOut>(published());
    // The members a publish without sync targets leaves out.
    let mut plain = published();
    let m = plain.as_object_mut().expect("object");
    m.remove("error");
    m.remove("sync");
    round_trips::<PublishedOut>(plain.clone());
    round_trips::<BatchOut>(
        json!({"error": {"code": "sync_failed", "message": "m"}, "events": [published(), plain]}),
    );
    round_trips::<EventPage>(json!({"data": [event()], "next_cursor": "c1"}));
    round_trips::<DeliveryPage>(json!({"data": [delivery()], "next_cursor": null}));
    let mut trace = event();
    let m = trace.as_object_mut().expect("object");
    m.insert("deliveries".into(), json!([delivery()]));
    m.insert("runs".into(), json!([run()]));
    round_trips::<TraceOut>(trace);
    round_trips::<RunOut>(run());
    round_trips::<ErrorOut>(json!({"code": "invalid", "message": "m"}));
}

#[test]
fn endpoints_subscriptions_and_health() {
    let endpoint = json!({
        "id": "ep_1", "url": "https://a.example/hook", "description": "d", "profile": "standard",
        "headers": {"x-a": "1"}, "token_set": true, "token_header": "X-Token", "insecure_tls": false,
        "timeout_ms": 15000, "retry_schedule_s": [5, 300], "ordered": true, "ordering_key": "entity",
        "on_head_failure": "skip", "max_rps": 10, "max_in_flight": 10, "signing": "hmac",
        "public_keys": ["whpk_x"], "enabled": false, "disabled_reason": "410 Gone",
        "subscription_id": "sub_1", "secret": "whsec_x", "created_at": "2026-12-07T10:00:00.000Z",
        "updated_at": "2026-12-07T10:00:00.000Z"
    });
    round_trips::<EndpointOut>(endpoint.clone());
    round_trips::<List<EndpointOut>>(json!({"data": [endpoint], "next_cursor": null}));
    round_trips::<ReplayOut>(json!({"deliveries": 42}));
    round_trips::<EndpointHealthOut>(json!({
        "enabled": true, "disabled_reason": null, "consecutive_failures": 3,
        "failing_since": "2026-12-07T10:00:00.000Z", "last_success_at": null,
        "last_failure_at": "2026-12-07T10:00:00.000Z", "last_error": "HTTP 500",
        "window": {"since": "2026-12-06T10:00:00.000Z", "attempts": 10, "successes": 7,
                   "success_rate": 0.7, "p50_ms": 12.5, "p99_ms": 80.25}
    }));
    round_trips::<SubscriptionOut>(json!({
        "id": "sub_1", "event_types": ["ticket.*"], "endpoint_id": "ep_1", "executor": null,
        "entity_id": "7", "filter": {"data.n": {"$gt": 1}}, "mode": "sync", "secret": "whsec_x",
        "created_at": "2026-12-07T10:00:00.000Z"
    }));
    round_trips::<EventTypeOut>(json!({
        "name": "ticket.created", "description": "d", "entity_type": "Ticket",
        "schema": {"type": "object", "maxProperties": 10}, "updated_at": "2026-12-07T10:00:00.000Z"
    }));
}

#[test]
fn platforms_surfaces() {
    round_trips::<EnreachConfigOut>(json!({
        "Id": "ep_1",
        "Webhook": {"Endpoint": "https://a.example", "InsecureSSL": false, "SecretSet": true, "endpoint_id": "ep_1"},
        "Subscriptions": [{"Id": "sub_1", "EventType": "CallInArrived", "EntityId": "q-1", "AllEntities": false}]
    }));
    round_trips::<EnateSubscriptionOut>(json!({
        "GUID": "6f1c2a9e-0000-0000-0000-000000000001", "Webhook": "PacketCreated",
        "SubscriberURL": "https://a.example", "FilterObjectType": 2, "FilterObjectGUID": "g",
        "CustomHeader": "X-A", "CustomHeaderValue": "v", "subscription_id": "sub_1", "endpoint_id": "ep_1"
    }));
    round_trips::<CatalogOut>(json!({
        "name": "enneo", "title": "Enneo", "description": "d",
        "event_types": [{"name": "TicketCreated", "entity_type": "Ticket", "description": "d", "schema": {"type": "object"}}],
        "schedule_presets": ["daily"]
    }));
    round_trips::<ImportedOut>(
        json!({"catalog": "enneo", "created": ["a"], "replaced": ["b"], "unchanged": []}),
    );
}

#[test]
fn executors_hooks_and_schedules() {
    round_trips::<ExecutorOut>(json!({
        "name": "enrich", "version": 2, "description": "d",
        "spec": {"type": "code", "language": "python", "source": "print(1)", "timeout_ms": 1000},
        "parameters": {"ticketId": "data.ticketId"}, "retries": 3, "created_at": "2026-12-07T10:00:00.000Z"
    }));
    round_trips::<SyncHookOut>(json!({
        "name": "lookup", "description": "d", "executor": "enrich", "timeout_ms": 5000,
        "cache_ttl_s": 60, "input_schema": {"type": "object"}, "output_schema": null,
        "created_at": "2026-12-07T10:00:00.000Z", "updated_at": "2026-12-07T10:00:00.000Z",
        "tool": {"name": "lookup", "description": "d", "input_schema": {"type": "object"}}
    }));
    round_trips::<HookPresetOut>(
        json!({"name": "p", "description": "d", "input_schema": {}, "output_schema": {"type": "object"}}),
    );
    round_trips::<HookCallOut>(
        json!({"output": data(), "run_id": "run_1", "cache": "miss", "duration_ms": 4.5}),
    );
    round_trips::<ScheduleOut>(json!({
        "name": "daily", "description": "d", "cron": "0 9 * * *", "timezone": "Europe/Berlin",
        "event_type": "report.due", "data": data(), "enabled": true, "misfire": "skip",
        "next_fire_times": ["2026-12-08T08:00:00.000Z"], "last_fired_at": null,
        "created_at": "2026-12-07T10:00:00.000Z", "updated_at": "2026-12-07T10:00:00.000Z"
    }));
    round_trips::<SchedulePresetOut>(
        json!({"name": "daily", "cron": "0 9 * * *", "event_type": "report.due", "description": "d"}),
    );
}

#[test]
fn organizations_keys_limits_and_secrets() {
    round_trips::<OrgOut>(json!({
        "id": "acme", "name": "Acme", "created_at": "2026-12-07T10:00:00.000Z",
        "retention_s": 86400, "payload_retention_s": null
    }));
    round_trips::<KeyOut>(json!({"id": "key_1", "key": "sy_x", "role": "admin", "org": "acme"}));
    round_trips::<WhoAmIOut>(
        json!({"org": "acme", "org_name": "Acme", "role": "viewer", "key_id": "key_1"}),
    );
    round_trips::<KeyInfoOut>(
        json!({"id": "key_1", "prefix": "sy_ab", "role": "admin", "created_at": "2026-12-07T10:00:00.000Z", "last_used_at": null}),
    );
    round_trips::<SecretOut>(json!({"name": "ERP", "updated_at": "2026-12-07T10:00:00.000Z"}));
    round_trips::<switchyard_wire::storage::StorageOut>(
        json!({"key": "balance", "value": {"amount": 12.50, "currency": "EUR", "ids": [1, 2]}}),
    );
    let limits = serde_json::to_value(switchyard_core::limits::Limits::default()).expect("limits");
    let usage = serde_json::to_value(switchyard_core::limits::Usage {
        endpoints: 3,
        kv_bytes: 1 << 40,
        ..Default::default()
    })
    .expect("usage");
    round_trips::<LimitsOut>(json!({"limits": limits, "own": {"runs": 2}, "usage": usage}));
}

/// What a client sends reads back as the hub reads it: every request type the CLI builds,
/// with every member set (a `null` that clears a setting stays a `null`).
#[test]
fn requests_the_cli_sends() {
    round_trips::<EventIn>(json!({
        "id": "ticket-7-created", "type": "ticket.created", "timestamp": "2026-12-07T10:00:00Z",
        "entity": {"type": "Ticket", "id": 7}, "data": data()
    }));
    round_trips::<EventIn>(json!({"type": "ticket.created", "data": {}}));
    round_trips::<EndpointIn>(json!({
        "url": "https://a.example", "description": "d", "profile": "enreach",
        "headers": {"x-a": "1"}, "token": null, "token_header": "X-Token", "insecure_tls": true,
        "timeout_ms": 5000, "retry_schedule_s": null, "ordered": true, "ordering_key": "data.id",
        "on_head_failure": "block", "max_rps": 5, "max_in_flight": 2, "signing": "ed25519",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "enabled": false
    }));
    round_trips::<SubscriptionIn>(json!({"event_types": ["*"], "endpoint_id": "ep_1"}));
    round_trips::<ExecutorIn>(json!({
        "type": "code", "description": "d", "language": "python", "source": "print(1)",
        "timeout_ms": 1000, "memory_mb": 64, "tmp_mb": 8, "parameters": {"id": "data.id"},
        "retries": 0, "tool": {"name": "t", "description": "d", "input_schema": {"type": "object"}}
    }));
    round_trips::<ExecutorIn>(json!({
        "type": "api_call", "method": "POST", "url": "https://a.example/{{input.id}}",
        "headers": {"authorization": "Bearer {{secret.T}}"}
    }));
    round_trips::<RunIn>(json!({"input": data()}));
    round_trips::<OrgIn>(json!({"id": "acme", "name": "Acme", "retention_s": 86400}));
    round_trips::<SecretIn>(json!({"value": "hunter2"}));
    round_trips::<ReplayIn>(
        json!({"since": "2026-12-07T10:00:00Z", "until": "2026-12-07T11:00:00Z"}),
    );
}
