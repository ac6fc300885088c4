//! The three platforms, unchanged: catalogs imported from their documents, Enreach and Enate
//! configuration in their own shapes, their events published as they are, and receivers
//! written strictly to their documents getting exactly the documented requests.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Seed 003's example request body, as the document prints it (a fixture copied from the
/// document; the catalog check compares it with the document when the documents are there).
fn seed_example_body() -> String {
    include_str!("../../../switchyard-core/tests/fixtures/enreach_example.json")
        .trim()
        .to_string()
}

/// Seed 003's sample configuration, as the document prints it (a fixture, like the example).
fn seed_sample_configuration() -> Value {
    serde_json::from_str(include_str!(
        "../../../switchyard-core/tests/fixtures/enreach_sample_configuration.json"
    ))
    .expect("the sample is JSON")
}

/// The keys of a JSON object in the order they were written.
fn keys(text: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(text).expect("json");
    v.as_object().expect("object").keys().cloned().collect()
}

/// One request as it arrived on the wire, and what the receiver made of it.
#[derive(Debug, Clone)]
struct RawRequest {
    head: String,
    body: Vec<u8>,
    /// Why a receiver written to seed 003's "Endpoint implementation" refused it.
    refused: Option<String>,
}

/// A receiver written strictly to seed 003's "Endpoint implementation": it reads the raw
/// request, checks method, path, the two Benemen headers as written in the document, the
/// content type, the length and the body, and answers with no body — 200, or a status the
/// test scripts.
#[derive(Clone)]
struct StrictReceiver {
    url: String,
    got: Arc<Mutex<Vec<RawRequest>>>,
    replies: Arc<Mutex<VecDeque<u16>>>,
}

impl StrictReceiver {
    async fn start(event: &'static str, token: &'static str) -> StrictReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let r = StrictReceiver {
            url: format!("http://{addr}/webhook/"),
            got: Arc::default(),
            replies: Arc::default(),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(me.clone().serve(conn, event, token, addr.to_string()));
            }
        });
        r
    }

    async fn serve(self, mut conn: TcpStream, event: &str, token: &str, host: String) {
        let mut buf = Vec::new();
        loop {
            // The head, then Content-Length bytes of body; several requests per connection.
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                assert!(buf.len() < 64 * 1024, "a head this long is not a webhook");
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let lines: Vec<&str> = head.split("\r\n").collect();
            let length: usize = lines
                .iter()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[head_end..head_end + length].to_vec();
            buf.drain(..head_end + length);

            let mut refused = None;
            let mut need = |ok: bool, why: String| {
                if !ok && refused.is_none() {
                    refused = Some(why);
                }
            };
            need(
                lines[0] == "POST /webhook/ HTTP/1.1",
                format!("request line {:?}", lines[0]),
            );
            for want in [
                format!("X-Benemen-Event: {event}"),
                format!("X-Benemen-Token: {token}"),
                "Content-Type: application/json; charset=utf-8".to_string(),
                format!("Host: {host}"),
                format!("Content-Length: {}", body.len()),
            ] {
                need(
                    lines.contains(&want.as_str()),
                    format!("no `{want}` in {head}"),
                );
            }
            let v: Result<Value, _> = serde_json::from_slice(&body);
            need(v.is_ok(), "the body is not JSON".into());
            if let Ok(v) = v {
                for k in [
                    "Id",
                    "Timestamp",
                    "RootEntityType",
                    "RootEntityId",
                    "EntityType",
                    "EntityId",
                    "EventType",
                ] {
                    need(v.get(k).is_some(), format!("no common property {k}"));
                }
                need(
                    v["EventType"] == event,
                    "EventType differs from X-Benemen-Event".into(),
                );
                need(
                    v["RootEntityType"] == "Organization",
                    "RootEntityType".into(),
                );
            }
            let status = if refused.is_some() {
                400
            } else {
                self.replies
                    .lock()
                    .expect("lock")
                    .pop_front()
                    .unwrap_or(200)
            };
            self.got.lock().expect("lock").push(RawRequest {
                head,
                body,
                refused,
            });
            let reason = match status {
                200 => "OK",
                204 => "No Content",
                _ => "Bad Request",
            };
            let answer = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n");
            if conn.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn received(&self) -> Vec<RawRequest> {
        self.got.lock().expect("lock").clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<RawRequest> {
        for _ in 0..400 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the strict receiver got {} of {n} requests",
            self.received().len()
        );
    }
}

async fn post_raw(app: &TestApp, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
    let (status, text) = app.post_raw(path, key, body).await;
    (
        StatusCode::from_u16(status).expect("status"),
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_enreach_receiver_written_to_seed_003_gets_exactly_the_documented_request() {
    let app = spawn_app().await;
    let org = app.org("enreach-strict").await;
    let o = &org.id;

    let (s, v) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/enreach/import"),
            &org.admin,
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["created"].as_array().map(Vec::len), Some(34));
    // Idempotent: the second import finds every type as the catalog defines it.
    let (_, again) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/enreach/import"),
            &org.admin,
            json!(null),
        )
        .await;
    assert_eq!(
        again["unchanged"].as_array().map(Vec::len),
        Some(34),
        "{again}"
    );
    assert_eq!(again["created"], json!([]));

    let receiver = StrictReceiver::start("QueueCallInUserAllocated", "MySecretString").await;
    let (s, webhook) = app
        .post(
            &format!("/v1/orgs/{o}/compat/enreach/webhooks"),
            &org.admin,
            json!({
                "Webhook": {"Endpoint": receiver.url, "InsecureSSL": true, "Secret": "MySecretString"},
                "Subscriptions": [{"EventType": "QueueCallInUserAllocated", "AllEntities": true}]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{webhook}");
    let ep = webhook["Webhook"]["endpoint_id"]
        .as_str()
        .expect("endpoint");
    let (s, v) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/orgs/{o}/endpoints/{ep}"),
            &org.admin,
            Some(json!({"retry_schedule_s": [1]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["insecure_tls"], true);
    assert_eq!(v["token_header"], Value::Null);
    assert_eq!(v["token_set"], true);

    // "sending any other response code than 200 OK will make the request get re-sent"
    receiver.replies.lock().expect("lock").push_back(204);
    let example = seed_example_body();
    let (s, published) = post_raw(
        &app,
        &format!("/v1/orgs/{o}/compat/enreach/events"),
        &org.publisher,
        &example,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{published}");
    assert_eq!(published["id"], "85b214f2-1d27-4262-87b6-8f55b3199400");
    assert_eq!(published["type"], "QueueCallInUserAllocated");
    assert_eq!(published["timestamp"], "2018-01-01T08:01:23.450Z");
    assert_eq!(published["entity"]["type"], "Queue");

    let got = receiver.wait_for(2).await;
    let documented: Value = serde_json::from_str(&example).expect("json");
    let exact = serde_json::to_vec(&documented).expect("json");
    for r in &got {
        assert_eq!(r.refused, None, "{}", r.head);
        // Byte for byte what was published: the seed's keys, values and order, its Timestamp.
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            String::from_utf8_lossy(&exact)
        );
        assert_eq!(keys(&r.body)[0], "RootEntityType");
        assert!(String::from_utf8_lossy(&r.body).ends_with(
            r#""Id":"85b214f2-1d27-4262-87b6-8f55b3199400","Timestamp":"2018-01-01T08:01:23.45"}"#
        ));
    }
    let trace = app
        .wait_trace(
            &org,
            "85b214f2-1d27-4262-87b6-8f55b3199400",
            Duration::from_secs(10),
            |t| first_delivery_status(t) == Some("delivered"),
        )
        .await;
    let attempts = trace["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(attempts.len(), 2, "{trace:#}");
    let first_error = attempts
        .iter()
        .find(|a| a["status_code"] == 204)
        .and_then(|a| a["error"].as_str())
        .expect("the 204 attempt failed");
    assert!(first_error.contains("200 OK"), "{first_error}");

    // The trace shows the data as published too, in its order.
    let raw = app
        .trace_text(&org, "85b214f2-1d27-4262-87b6-8f55b3199400")
        .await;
    let compact = String::from_utf8_lossy(&exact).to_string();
    assert!(raw.contains(&format!("\"data\":{compact}")), "{raw}");

    // "keep track of handled events based on their Id": the same Id again is the same event.
    let (s, dup) = post_raw(
        &app,
        &format!("/v1/orgs/{o}/compat/enreach/events"),
        &org.publisher,
        &example,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(dup["duplicate"], true);

    // An event in our envelope: the common properties first, in the seed's order, made from
    // the event, then the data in the publisher's order.
    let ours = app
        .publish(
            &org,
            json!({
                "type": "QueueCallInUserAllocated",
                "timestamp": "2026-11-23T09:30:00.120Z",
                "entity": {"type": "Queue", "id": "6cb31d7d-9cd9-41dc-a096-62cf31fd0281"},
                "data": {"UserName": "agent@customer.com", "QueueId": "6cb31d7d-9cd9-41dc-a096-62cf31fd0281",
                         "OrganizationId": "fd434d24-f685-431d-8df5-386b5d5ffa73", "CallerNumber": "+358501231234"}
            }),
        )
        .await;
    let got = receiver.wait_for(3).await;
    let last = &got[2];
    assert_eq!(last.refused, None, "{}", last.head);
    assert_eq!(
        keys(&last.body),
        [
            "Id",
            "Timestamp",
            "RootEntityType",
            "RootEntityId",
            "EntityType",
            "EntityId",
            "EventType",
            "UserName",
            "QueueId",
            "OrganizationId",
            "CallerNumber"
        ]
    );
    let body: Value = serde_json::from_slice(&last.body).expect("json");
    assert_eq!(body["Timestamp"], "2026-11-23T09:30:00.12");
    assert_eq!(body["RootEntityId"], "fd434d24-f685-431d-8df5-386b5d5ffa73");
    let id = ours["id"].as_str().expect("id").trim_start_matches("evt_");
    assert_eq!(
        body["Id"].as_str().map(|g| g.replace('-', "")).as_deref(),
        Some(id)
    );
    app.stop().await;
}

#[tokio::test]
async fn the_seeds_sample_enreach_configuration_routes_only_its_two_events() {
    let app = spawn_app().await;
    let org = app.org("enreach-config").await;
    let o = &org.id;
    let receiver = TestReceiver::start().await;

    // The sample verbatim; only the receiver's address is ours.
    let mut sample = seed_sample_configuration();
    assert_eq!(
        sample["Webhook"]["Endpoint"],
        "https://my.integration.com/wehook/"
    );
    sample["Webhook"]["Endpoint"] = json!(receiver.url("/wehook/"));
    let (s, webhook) = app
        .post(
            &format!("/v1/orgs/{o}/compat/enreach/webhooks"),
            &org.admin,
            sample,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{webhook}");
    assert_eq!(webhook["Webhook"]["InsecureSSL"], true);
    assert_eq!(webhook["Webhook"]["SecretSet"], true);
    assert_eq!(
        webhook["Subscriptions"]
            .as_array()
            .expect("subs")
            .iter()
            .map(|x| x["EventType"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["QueueCallInConnected", "QueueCallInAllocated"]
    );

    // One entity's events only.
    let queue_1 = "6cb31d7d-9cd9-41dc-a096-62cf31fd0281";
    let queue_2 = "e0072f3a-cc7c-42ee-b0ac-34cd7238150a";
    let one = TestReceiver::start().await;
    let (s, single) = app
        .post(
            &format!("/v1/orgs/{o}/compat/enreach/webhooks"),
            &org.admin,
            json!({"Webhook": {"Endpoint": one.url("/one"), "InsecureSSL": false, "Secret": "s2"},
                   "Subscriptions": [{"EventType": "QueueStatus", "EntityId": queue_1}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{single}");

    let event = |ty: &str, n: u32, queue: &str| {
        json!({
            "Id": format!("00000000-0000-4000-8000-{n:012}"), "Timestamp": "2026-11-23T08:00:00.5",
            "RootEntityType": "Organization", "RootEntityId": "fd434d24-f685-431d-8df5-386b5d5ffa73",
            "EntityType": "Queue", "EntityId": queue, "EventType": ty, "QueueId": queue
        })
    };
    let mut ids = vec![];
    for (n, (ty, queue)) in [
        ("QueueCallInConnected", queue_1),
        ("QueueCallInUserAllocated", queue_1),
        ("QueueCallInAllocated", queue_2),
        ("UserStatus", queue_1),
        ("QueueStatus", queue_2),
        ("QueueStatus", queue_1),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{o}/compat/enreach/events"),
                &org.publisher,
                event(ty, n as u32, queue),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        app.wait_trace(&org, id, Duration::from_secs(10), |t| {
            t["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().all(|x| x["status"] == "delivered"))
        })
        .await;
    }
    let got = receiver.received();
    let types: Vec<String> = got
        .iter()
        .map(|r| r.header("x-benemen-event").unwrap_or_default())
        .collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types.contains(&"QueueCallInConnected".to_string()));
    assert!(types.contains(&"QueueCallInAllocated".to_string()));
    assert!(
        got.iter()
            .all(|r| r.header("x-benemen-token").as_deref() == Some("MySecretString"))
    );
    let got = one.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["EntityId"], queue_1);
    assert_eq!(got[0].json()["EventType"], "QueueStatus");

    // Listed in the same shape; deleted by the Id it was answered with.
    let (s, list) = app
        .get(
            &format!("/v1/orgs/{o}/compat/enreach/webhooks"),
            &org.viewer,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|w| w["Id"] == single["Id"]))
        .expect("listed");
    assert_eq!(
        listed["Subscriptions"],
        json!([{"Id": single["Subscriptions"][0]["Id"], "EventType": "QueueStatus", "EntityId": queue_1}])
    );
    assert!(listed["Webhook"].get("Secret").is_none());
    let id = webhook["Id"].as_str().expect("id");
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/orgs/{o}/compat/enreach/webhooks/{id}"),
            &org.admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = app
        .get(
            &format!("/v1/orgs/{o}/compat/enreach/webhooks"),
            &org.viewer,
        )
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (_, after) = app
        .post(
            &format!("/v1/orgs/{o}/compat/enreach/events"),
            &org.publisher,
            event("QueueCallInConnected", 99, queue_1),
        )
        .await;
    assert_eq!(after["deliveries"], 0, "{after}");

    // Bad configurations say what is wrong, in Enreach's words.
    async fn refused(app: &TestApp, org: &Org, body: Value) -> String {
        let (s, v) = app
            .post(
                &format!("/v1/orgs/{}/compat/enreach/webhooks", org.id),
                &org.admin,
                body,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    let bad = |body: Value| refused(&app, &org, body);
    let m = bad(
        json!({"Webhook": {"Endpoint": receiver.url("/")}, "Subscriptions": [
        {"EventType": "QueueStatus", "AllEntities": true},
        {"EventType": "QueueStatus", "AllEntities": true, "EntityId": queue_1}]}),
    )
    .await;
    assert!(m.contains("Subscriptions[1]"), "{m}");
    let m = bad(json!({"Webhook": {"Endpoint": receiver.url("/")}, "Subscriptions": [{"EventType": "QueueStatus"}]})).await;
    assert!(m.contains("AllEntities"), "{m}");
    let m = bad(json!({"Webhooks": {}})).await;
    assert!(m.contains("Webhooks"), "{m}");
    let m = bad(json!({"Webhook": {"Endpoint": "not a url"}})).await;
    assert!(m.contains("Webhook.Endpoint"), "{m}");
    app.stop().await;
}

#[tokio::test]
async fn an_enate_subscription_filtered_by_company_gets_only_that_companys_packets() {
    let app = spawn_app().await;
    let org = app.org("enate-filter").await;
    let o = &org.id;
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/enate/import"),
            &org.admin,
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let receiver = TestReceiver::start().await;
    let company_a = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let company_b = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    let path = format!("/v1/orgs/{o}/compat/enate/subscriptions");
    let (s, sub) = app
        .post(
            &path,
            &org.admin,
            json!({"Webhook": "PacketCreated", "SubscriberURL": receiver.url("/enate"),
                   "FilterObjectType": 31, "FilterObjectGUID": company_a,
                   "CustomHeader": "X-Enate-Auth", "CustomHeaderValue": "s3cret"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let guid = sub["GUID"].as_str().expect("GUID").to_string();
    assert_eq!(guid.len(), 36);
    assert_eq!(sub["FilterObjectType"], 31);
    assert_eq!(sub["FilterObjectGUID"], company_a);

    // Invalid combinations name the parameter.
    for (body, names) in [
        (
            json!({"Webhook": "PacketCreated", "SubscriberURL": receiver.url("/"), "FilterObjectType": 32, "FilterObjectGUID": company_a}),
            "FilterObjectType",
        ),
        (
            json!({"Webhook": "PacketCreated", "SubscriberURL": receiver.url("/"), "FilterObjectGUID": company_a}),
            "FilterObjectType",
        ),
        (
            json!({"Webhook": "PacketCreated", "SubscriberURL": receiver.url("/"), "FilterObjectType": 217}),
            "FilterObjectGUID",
        ),
        (
            json!({"Webhook": "PacketCreated", "SubscriberURL": receiver.url("/"), "FilterObjectType": 31, "FilterObjectGUID": "acme"}),
            "FilterObjectGUID",
        ),
        (
            json!({"Webhook": "PacketClosed", "SubscriberURL": receiver.url("/"), "FilterObjectType": 31, "FilterObjectGUID": company_a}),
            "Webhook",
        ),
        (
            json!({"Webhook": "PacketCreated", "SubscriberURL": "ftp://x", "FilterObjectType": 31, "FilterObjectGUID": company_a}),
            "SubscriberURL",
        ),
        (
            json!({"Webhook": "PacketCreated", "SubscriberURL": receiver.url("/"), "FilterObjectType": 31, "FilterObjectGUID": company_a, "CustomHeader": "X-A"}),
            "CustomHeaderValue",
        ),
    ] {
        let (s, v) = app.post(&path, &org.admin, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(names), "{names}: {m}");
    }

    let packet = |n: u32, company: &str| {
        json!({
            "AttachmentCount": 0, "CC": null, "CommunicationType": 2, "ContractName": "Payroll",
            "CustomerName": "Contoso", "DueDate": null, "From": "a@contoso.com",
            "GUID": "11111111-1111-4111-8111-111111111111", "Name": "New starter",
            "PacketGUID": format!("22222222-2222-4222-8222-{n:012}"), "ProcessType": 2,
            "ProcessTypeName": "Ticket", "RAGStatus": -2, "Reference": format!("T-{n}"),
            "Sender": "a@contoso.com", "ServiceName": "HR", "ServiceLineName": "People",
            "StartedbyMethod": 4, "Status": 1, "Subject": "Hello", "SupplierName": "Acme",
            "Title": null, "CompanyGUID": company
        })
    };
    let events = format!("/v1/orgs/{o}/compat/enate/events");
    let mut ids = vec![];
    for (n, company) in [(1, company_a), (2, company_b), (3, company_a)] {
        let (s, v) = app.post(&events, &org.publisher, packet(n, company)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    assert_eq!(ids[0], "PacketCreated:22222222-2222-4222-8222-000000000001");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    for id in &ids {
        app.wait_trace(&org, id, Duration::from_secs(10), |t| {
            t["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().all(|x| x["status"] == "delivered"))
        })
        .await;
    }
    assert_eq!(receiver.received().len(), 2);
    for r in &got {
        assert_eq!(r.header("x-enate-auth").as_deref(), Some("s3cret"));
        let body = r.json();
        assert_eq!(body["CompanyGUID"], company_a);
        // The message's own GUID is the webhook subscription's, in its place.
        assert_eq!(body["GUID"], guid.as_str());
        assert_eq!(
            keys(&r.body)[..9],
            [
                "AttachmentCount",
                "CC",
                "CommunicationType",
                "ContractName",
                "CustomerName",
                "DueDate",
                "From",
                "GUID",
                "Name"
            ]
        );
        // Seed 004's message, nothing added.
        assert!(body.get("Webhook").is_none());
    }

    // A packet is created once: the same message again is the same event.
    let (_, dup) = app
        .post(&events, &org.publisher, packet(1, company_a))
        .await;
    assert_eq!(dup["duplicate"], true);
    // The catalog's value sets hold.
    let mut bad = packet(4, company_a);
    bad["Status"] = json!(9);
    let (s, v) = app.post(&events, &org.publisher, bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/data/Status"),
        "{v}"
    );

    // Listed in Enate's shape (the header value only for admins) and deleted by GUID.
    let (_, list) = app.get(&path, &org.viewer).await;
    assert_eq!(list[0]["GUID"], guid.as_str());
    assert_eq!(list[0]["CustomHeader"], "X-Enate-Auth");
    assert_eq!(list[0]["CustomHeaderValue"], "[hidden]");
    let (_, list) = app.get(&path, &org.admin).await;
    assert_eq!(list[0]["CustomHeaderValue"], "s3cret");
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("{path}/{guid}"),
            &org.admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = app.get(&path, &org.admin).await;
    assert_eq!(list, json!([]));
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("{path}/{guid}"),
            &org.admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn catalogs_are_listed_and_their_schemas_name_what_breaks_them() {
    let app = spawn_app().await;
    let org = app.org("catalog-check").await;
    let o = &org.id;
    let (s, all) = app.get("/v1/catalogs", &org.viewer).await;
    assert_eq!(s, StatusCode::OK);
    let count = |name: &str| {
        all.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == name))
            .and_then(|c| c["event_types"].as_array().map(Vec::len))
    };
    assert_eq!(count("enreach"), Some(34));
    assert_eq!(count("enate"), Some(1));
    assert_eq!(count("enneo"), Some(20));
    let (s, enneo) = app.get("/v1/catalogs/enneo", &org.viewer).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        enneo["schedule_presets"],
        json!(["CronMinute", "CronHour", "CronDay", "CronWeek"])
    );
    assert!(enneo["event_types"][0]["schema"].is_object());
    let (s, _) = app.get("/v1/catalogs/zendesk", &org.viewer).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/zendesk/import"),
            &org.admin,
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Importing is an admin's: a publisher's key cannot change the organization's types.
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/enreach/import"),
            &org.publisher,
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/enreach/import"),
            &org.admin,
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // A type changed by hand is put back by the next import, and said so.
    let (s, _) = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{o}/event-types/QueueStatus"),
            &org.admin,
            Some(json!({"description": "mine"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = app
        .post(
            &format!("/v1/orgs/{o}/catalogs/enreach/import"),
            &org.admin,
            json!(null),
        )
        .await;
    assert_eq!(v["replaced"], json!(["QueueStatus"]));

    // CallbackChanged's TypeId is a short of 1–3, whichever way the event is published.
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{o}/events"),
            &org.publisher,
            json!({"type": "CallbackChanged", "data": {"CallListId": "6cb31d7d-9cd9-41dc-a096-62cf31fd0281", "TypeId": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "schema_violation");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/data/TypeId"),
        "{v}"
    );
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{o}/compat/enreach/events"),
            &org.publisher,
            json!({"Id": "85b214f2-1d27-4262-87b6-8f55b3199401", "EventType": "CallbackChanged",
                   "EntityType": "CallList", "EntityId": "6cb31d7d-9cd9-41dc-a096-62cf31fd0281", "TypeId": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("TypeId"),
        "{v}"
    );
    let (s, v) = app
        .post(
            &format!("/v1/orgs/{o}/compat/enreach/events"),
            &org.publisher,
            json!({"EventType": "CallbackChanged"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`Id`"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_payload_reaches_receivers_and_the_trace_as_published() {
    let app = spawn_app().await;
    let org = app.org("payload-order").await;
    let receiver = TestReceiver::start().await;
    app.endpoint(&org, json!({"url": receiver.url("/std")}), &["Order"])
        .await;
    // Keys out of alphabetical order, numbers written in ways a parser would normalize
    // (trailing zeros, more digits than a double holds, negative zero). (An exponent without
    // its sign gains a `+`: `1e3` is sent as `1e+3`.)
    let body = r#"{"type":"Order","data":{"zeta":1,"alpha":1.50,"mid":{"y":2,"b":[3,2.50e-7]},"big":123456789012345678901234567890,"neg":-0.0}}"#;
    let (s, v) = post_raw(
        &app,
        &format!("/v1/orgs/{}/events", org.id),
        &org.publisher,
        body,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let data = r#"{"zeta":1,"alpha":1.50,"mid":{"y":2,"b":[3,2.50e-7]},"big":123456789012345678901234567890,"neg":-0.0}"#;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let sent = String::from_utf8_lossy(&got[0].body).to_string();
    assert!(sent.contains(&format!("\"data\":{data}")), "{sent}");
    let id = v["id"].as_str().expect("id");
    let raw = app.trace_text(&org, id).await;
    assert!(raw.contains(&format!("\"data\":{data}")), "{raw}");
    app.stop().await;
}
