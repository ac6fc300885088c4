//! Several nodes on one PostgreSQL database: three real `switchyard serve` processes share the
//! work; one is killed with SIGKILL mid-run and the others take its endpoints over; an ordered
//! endpoint keeps its order and a `max_rps` endpoint its rate with three nodes sending; a
//! schedule fires once per fire time; a change made through one node reaches the others' caches;
//! a node that joins mid-run is handed its share of the endpoints, each delivery sent once.
//!
//! These run in the PostgreSQL leg of the test command's matrix (`SWITCHYARD_E2E_DATABASE=
//! postgres`): on SQLite one node owns its file and there is nothing to share. In the SQLite
//! leg they say so and return.

use crate::helpers::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One master key for every node: each node must open the secrets the others stored.
const MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A node of a cluster: the real binary with a data dir of its own (its node id) on the
/// cluster's database.
struct Node {
    hub: Hub,
    dir: PathBuf,
}

impl Node {
    fn id(&self) -> String {
        std::fs::read_to_string(self.dir.join("node-id"))
            .expect("node id")
            .trim()
            .to_string()
    }
}

/// Three nodes (or `roles.len()`) on one fresh database, endpoint leases of 2 s, schedules
/// read with a seconds field.
async fn cluster(tmp: &Path, roles: &[&str]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        nodes.push(join(tmp, i, role).await);
    }
    // Every delivering node has seen the others' heartbeats (a third of a lease apart).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    nodes
}

/// Node `i` of the cluster in `tmp`, serving `role`, started now.
async fn join(tmp: &Path, i: usize, role: &str) -> Node {
    let database = database_url(&tmp.join("db"))
        .await
        .expect("the cluster tests run on PostgreSQL");
    let dir = tmp.join(format!("node{i}"));
    std::fs::create_dir_all(&dir).expect("node dir");
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        "[delivery]\nendpoint_lease_ms = 2000\n\n[schedules]\nseconds_field = true\n",
    )
    .expect("config");
    let hub = start_node(&dir, &database, &config, role).await;
    Node { hub, dir }
}

/// The real binary serving `role` on `database` from data dir `dir`.
async fn start_node(dir: &Path, database: &str, config: &Path, role: &str) -> Hub {
    let config = config.to_string_lossy();
    launch_hub(
        dir,
        &[
            "--database-url",
            database,
            "--role",
            role,
            "--config",
            &config,
        ],
        &[("SWITCHYARD_MASTER_KEY", MASTER_KEY)],
    )
    .await
}

/// An organization with admin and publisher keys, made through `hub`.
async fn org_on(hub: &Hub, id: &str) -> (String, String) {
    let (s, v) = hub
        .post("/v1/orgs", ADMIN_KEY, json!({"id": id, "name": id}))
        .await
        .expect("post");
    assert_eq!(s, 201, "{v}");
    let key = |role: &'static str| async move {
        let (s, v) = hub
            .post(
                &format!("/v1/orgs/{id}/keys"),
                ADMIN_KEY,
                json!({"role": role}),
            )
            .await
            .expect("post");
        assert_eq!(s, 201, "{v}");
        v["key"].as_str().expect("key").to_string()
    };
    (key("admin").await, key("publisher").await)
}

/// An endpoint with `settings` subscribed to `types`, made through `hub`; returns its id.
async fn endpoint_on(hub: &Hub, org: &str, admin: &str, settings: Value, types: &[&str]) -> String {
    let (s, ep) = hub
        .post(&format!("/v1/orgs/{org}/endpoints"), admin, settings)
        .await
        .expect("post");
    assert_eq!(s, 201, "{ep}");
    let (s, sub) = hub
        .post(
            &format!("/v1/orgs/{org}/subscriptions"),
            admin,
            json!({"event_types": types, "endpoint_id": ep["id"]}),
        )
        .await
        .expect("post");
    assert_eq!(s, 201, "{sub}");
    ep["id"].as_str().expect("id").to_string()
}

fn skip_on_sqlite(test: &str) -> bool {
    if on_postgres() {
        return false;
    }
    eprintln!("{test}: several nodes share a PostgreSQL database; this runs in the PostgreSQL leg");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_the_work_and_a_killed_node_loses_nothing() {
    if skip_on_sqlite("three_nodes_share_the_work_and_a_killed_node_loses_nothing") {
        return;
    }
    let _heavy = TIMING.write().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(tmp.path(), &["all", "all", "all"]).await;
    let first = &nodes[0].hub;
    let (admin, publisher) = org_on(first, "cluster").await;
    let rx = TestReceiver::start().await;
    // Slow enough that work is in flight on every node when the kill comes.
    rx.always(Reply::status(200).delay(Duration::from_millis(20)));
    // Seven endpoints, spread over the three nodes: six take a share of the notes each, the
    // seventh, ordered by ticket, the ticket updates.
    let plain: Vec<String> = futures_util::future::join_all((0..6).map(|i| {
        let types = [format!("Note{i}")];
        let (first, admin, url) = (first, admin.clone(), rx.url(&format!("/plain{i}")));
        async move {
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            endpoint_on(
                first,
                "cluster",
                &admin,
                json!({"url": url, "max_in_flight": 16}),
                &types,
            )
            .await
        }
    }))
    .await;
    endpoint_on(
        first,
        "cluster",
        &admin,
        json!({"url": rx.url("/ordered"), "ordered": true, "max_in_flight": 8}),
        &["TicketUpdated"],
    )
    .await;
    assert_eq!(plain.len(), 6);

    // 5,000 events published across the three nodes in batches of 50: every tenth is a
    // ticket update of one of 10 tickets, in order per ticket.
    let events: Vec<Value> = (0..5000u64)
        .map(|n| {
            if n % 10 == 0 {
                let ticket = (n / 10) % 10;
                json!({"id": format!("e{n}"), "type": "TicketUpdated",
                       "entity": {"type": "Ticket", "id": format!("t{ticket}")},
                       "data": {"n": n}})
            } else {
                json!({"id": format!("e{n}"), "type": format!("Note{}", n % 6), "data": {"n": n}})
            }
        })
        .collect();
    let bases: Vec<String> = nodes.iter().map(|n| n.hub.base.clone()).collect();
    let client = reqwest::Client::new();
    let publishing = {
        let (client, publisher) = (client.clone(), publisher.clone());
        let batches: Vec<Vec<Value>> = events.chunks(50).map(<[Value]>::to_vec).collect();
        tokio::spawn(async move {
            let mut accepted = 0;
            // Four publishers at a time, each batch to the next node in turn.
            let mut batches = batches.into_iter().enumerate();
            loop {
                let round: Vec<_> = batches.by_ref().take(4).collect();
                if round.is_empty() {
                    break;
                }
                let sent = futures_util::future::join_all(round.into_iter().map(|(i, batch)| {
                    let (client, bases, publisher) = (&client, &bases, &publisher);
                    async move {
                        // A node that dies mid-request is no answer: the same batch goes to
                        // the next node (event ids make it idempotent).
                        for k in 0..3 {
                            let r = client
                                .post(format!(
                                    "{}/v1/orgs/cluster/events/batch",
                                    bases[(i + k) % 3]
                                ))
                                .bearer_auth(publisher)
                                .json(&json!({"events": batch}))
                                .send()
                                .await;
                            if let Ok(r) = r {
                                return r.status().as_u16();
                            }
                        }
                        panic!("no node took batch {i}");
                    }
                }))
                .await;
                for status in sent {
                    assert_eq!(status, 202);
                    accepted += 50;
                }
            }
            accepted
        })
    };
    // Kill a node that is delivering, mid-run: the node of the latest attempt once a share of
    // the work has arrived.
    let some = rx.wait_for(1500, Duration::from_secs(60)).await;
    let latest = some
        .last()
        .and_then(|r| r.header("webhook-id"))
        .expect("a delivery");
    // Its attempt is written a moment after the receiver answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let worker = loop {
        let t = first
            .get(&format!("/v1/orgs/cluster/events/{latest}"), &admin)
            .await;
        if let Some(node) = t["deliveries"][0]["attempts"][0]["node"].as_str() {
            break node.to_string();
        }
        assert!(Instant::now() < deadline, "no attempt recorded: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = nodes
        .iter()
        .position(|n| n.id() == worker)
        .expect("an attempt is made by a node of the cluster");
    let killed = nodes.remove(at);
    let killed_id = killed.id();
    let mut killed_hub = killed.hub;
    killed_hub.child.kill().expect("SIGKILL");
    killed_hub.child.wait().expect("reaped");
    let accepted = publishing.await.expect("publisher");
    assert_eq!(accepted, 5000, "every publish accepted by a live node");

    // Every event reaches the endpoint it was routed to.
    let expected = 5000;
    let got = rx
        .wait_until(Duration::from_secs(120), |got| {
            let distinct: BTreeSet<(&str, String)> = got
                .iter()
                .map(|r| (r.path.as_str(), r.header("webhook-id").unwrap_or_default()))
                .collect();
            distinct.len() >= expected
        })
        .await;
    let mut times: HashMap<(String, String), usize> = HashMap::new();
    for r in &got {
        *times
            .entry((r.path.clone(), r.header("webhook-id").expect("id")))
            .or_default() += 1;
    }
    assert_eq!(times.len(), expected);
    let most = times.values().copied().max().unwrap_or(0);
    assert!(most <= 2, "a delivery was received {most} times");

    // The ordered endpoint kept each ticket's order across the takeover: the order in which
    // the ticket's updates were committed (batches went to three nodes at once, so that is not
    // the order of their numbers). A delivery the killed node sent without recording it may
    // come again, but never after a later one.
    let listed = nodes[0]
        .hub
        .get(
            "/v1/orgs/cluster/events?type=TicketUpdated&limit=1000",
            &admin,
        )
        .await;
    let mut committed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Newest first: reversed, each ticket's updates in commit order.
    for e in listed["data"].as_array().expect("events").iter().rev() {
        committed
            .entry(e["entity"]["id"].as_str().expect("ticket").to_string())
            .or_default()
            .push(e["id"].as_str().expect("id").to_string());
    }
    let mut received: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in got.iter().filter(|r| r.path == "/ordered") {
        let ticket = r.json()["entity"]["id"]
            .as_str()
            .expect("ticket")
            .to_string();
        let id = r.header("webhook-id").expect("id");
        let seen = received.entry(ticket).or_default();
        if seen.last() != Some(&id) {
            seen.push(id);
        }
    }
    assert_eq!(committed.len(), 10);
    for (ticket, order) in &committed {
        assert_eq!(order.len(), 50, "{ticket}");
        assert_eq!(
            received.get(ticket),
            Some(order),
            "ticket {ticket} arrived out of its commit order"
        );
    }

    // The trace names the node of each attempt: the killed node worked before it died, and a
    // survivor took its endpoints over.
    let survivors: BTreeSet<String> = nodes.iter().map(Node::id).collect();
    let mut attempted_by: BTreeSet<String> = BTreeSet::new();
    for n in (0..5000).step_by(7) {
        let t = nodes[0]
            .hub
            .get(&format!("/v1/orgs/cluster/events/e{n}"), &admin)
            .await;
        for d in t["deliveries"].as_array().expect("deliveries") {
            assert_eq!(d["status"], "delivered", "{t}");
            for a in d["attempts"].as_array().expect("attempts") {
                attempted_by.insert(a["node"].as_str().expect("node").to_string());
            }
        }
    }
    let all: BTreeSet<String> = survivors
        .iter()
        .cloned()
        .chain([killed_id.clone()])
        .collect();
    assert!(
        attempted_by.is_subset(&all),
        "{attempted_by:?} are not all nodes of {all:?}"
    );
    assert!(
        attempted_by.contains(&killed_id),
        "{killed_id} delivered before it was killed: {attempted_by:?}"
    );
    assert!(
        attempted_by.len() >= 2,
        "the work was shared, but only {attempted_by:?} attempted"
    );
    assert!(
        attempted_by.iter().any(|n| survivors.contains(n)),
        "{attempted_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_hold_max_rps_fire_each_schedule_time_once_and_share_changes() {
    if skip_on_sqlite("three_nodes_hold_max_rps_fire_each_schedule_time_once_and_share_changes") {
        return;
    }
    let _timed = TIMING.write().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    // Two workers and a node of each kind: the API node publishes but never delivers.
    let nodes = cluster(tmp.path(), &["api", "worker", "all"]).await;
    let (api, worker, both) = (&nodes[0].hub, &nodes[1].hub, &nodes[2].hub);
    // A worker serves no API; it is healthy and ready.
    let r = worker
        .client
        .get(format!("{}/v1/orgs", worker.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let (admin, publisher) = org_on(api, "spread").await;
    let rx = TestReceiver::start().await;
    endpoint_on(
        api,
        "spread",
        &admin,
        json!({"url": rx.url("/limited"), "max_rps": 5, "max_in_flight": 10}),
        &["Limited"],
    )
    .await;
    endpoint_on(
        api,
        "spread",
        &admin,
        json!({"url": rx.url("/tick")}),
        &["Tick"],
    )
    .await;

    // A schedule firing every second, made through the API node; the scheduler runs on both
    // delivering nodes.
    let (s, v) = {
        let r = api
            .client
            .put(format!("{}/v1/orgs/spread/schedules/tick", api.base))
            .bearer_auth(&admin)
            .json(&json!({"cron": "* * * * * *", "event_type": "Tick", "data": {}}))
            .send()
            .await
            .expect("put");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(s, 201, "{v}");
    let started = chrono::Utc::now();

    // 60 events for the limited endpoint, published through all three nodes' addresses where
    // the API is served; the worker refuses to publish.
    let (s, _) = worker
        .post(
            "/v1/orgs/spread/events",
            &publisher,
            json!({"id": "w", "type": "Limited", "data": {}}),
        )
        .await
        .expect("post");
    assert_eq!(s, 404, "a worker serves no API");
    for i in 0..60 {
        let via = if i % 2 == 0 { api } else { both };
        let (s, v) = via
            .post(
                "/v1/orgs/spread/events",
                &publisher,
                json!({"id": format!("l{i}"), "type": "Limited", "data": {}}),
            )
            .await
            .expect("post");
        assert_eq!(s, 202, "{v}");
    }
    let got = rx
        .wait_until(Duration::from_secs(40), |got| {
            got.iter().filter(|r| r.path == "/limited").count() >= 60
        })
        .await;
    let limited: Vec<Instant> = got
        .iter()
        .filter(|r| r.path == "/limited")
        .map(|r| r.at)
        .collect();
    // Within any one second, at most 5 requests (one more for the edges of the window).
    for (i, start) in limited.iter().enumerate() {
        let in_window = limited[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 6,
            "{in_window} requests within one second to an endpoint limited to 5/s"
        );
    }
    let span = limited[59].duration_since(limited[0]).as_secs_f64();
    assert!(span >= 59.0 / 6.0, "60 requests in {span:.1} s break 5/s");

    // A change made through one node reaches the others at once: a revoked key is refused by
    // every node on its next request.
    let (s, k) = api
        .post("/v1/orgs/spread/keys", &admin, json!({"role": "viewer"}))
        .await
        .expect("post");
    assert_eq!(s, 201, "{k}");
    let viewer = k["key"].as_str().expect("key").to_string();
    let key_id = k["id"].as_str().expect("id").to_string();
    let status = |hub: &Hub, key: String| {
        let (client, url) = (
            hub.client.clone(),
            format!("{}/v1/orgs/spread/events", hub.base),
        );
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(both, viewer.clone()).await,
        200,
        "cached on the other node"
    );
    let r = api
        .client
        .delete(format!("{}/v1/orgs/spread/keys/{key_id}", api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = status(both, viewer.clone()).await;
        if s == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other node still accepts a revoked key ({s})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Let the schedule run for 30 s on its two nodes, then stop it.
    let run_until = started + chrono::Duration::seconds(30);
    let left = (run_until - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(left).await;
    let r = api
        .client
        .delete(format!("{}/v1/orgs/spread/schedules/tick", api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let stopped = chrono::Utc::now();
    // Exactly one event per fire time: every second from the first to the last fire time,
    // once each, and nothing else.
    let listed = api
        .get("/v1/orgs/spread/events?type=Tick&limit=100", &admin)
        .await;
    let mut fired: Vec<chrono::DateTime<chrono::Utc>> = listed["data"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let id = e["id"].as_str().expect("id");
            let at = id
                .strip_prefix("schedule:tick:")
                .expect("a schedule's event id");
            chrono::DateTime::parse_from_rfc3339(at)
                .expect("fire time")
                .with_timezone(&chrono::Utc)
        })
        .collect();
    fired.sort();
    let distinct: BTreeSet<_> = fired.iter().collect();
    assert_eq!(distinct.len(), fired.len(), "a fire time published twice");
    assert!(
        fired.len() >= 27,
        "{} fire times in 30 s: {fired:?}",
        fired.len()
    );
    assert!(
        fired
            .windows(2)
            .all(|w| (w[1] - w[0]).num_milliseconds() == 1000),
        "a fire time was skipped: {fired:?}"
    );
    assert!(*fired.first().expect("fired") >= started - chrono::Duration::seconds(1));
    assert!(*fired.last().expect("fired") <= stopped);
    // Each was delivered, by whichever node held the endpoint.
    let ticks: BTreeSet<String> = rx
        .wait_until(Duration::from_secs(10), |got| {
            got.iter().filter(|r| r.path == "/tick").count() >= fired.len()
        })
        .await
        .iter()
        .filter(|r| r.path == "/tick")
        .map(|r| r.header("webhook-id").expect("id"))
        .collect();
    assert_eq!(ticks.len(), fired.len());
}

/// The node an endpoint's lease goes to among `nodes` (rendezvous hashing, as the engine does:
/// FNV-1a of the node id, a zero byte and the endpoint id; the highest wins).
fn first_choice<'a>(nodes: &'a [String], endpoint: &str) -> &'a str {
    let weight = |node: &str| {
        node.bytes()
            .chain([0])
            .chain(endpoint.bytes())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    nodes
        .iter()
        .max_by_key(|n| (weight(n), n.as_str()))
        .expect("a node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_joins_mid_run_is_handed_its_share_and_nothing_is_sent_twice() {
    if skip_on_sqlite("a_node_that_joins_mid_run_is_handed_its_share_and_nothing_is_sent_twice") {
        return;
    }
    let _heavy = TIMING.write().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(tmp.path(), &["all"]).await;
    let (admin, publisher) = org_on(&nodes[0].hub, "joined").await;
    let rx = TestReceiver::start().await;
    rx.always(Reply::status(200).delay(Duration::from_millis(5)));
    // Twelve endpoints for a type each, and a thirteenth, ordered by ticket.
    let mut endpoints: Vec<(String, String)> = Vec::new();
    for i in 0..12 {
        let id = endpoint_on(
            &nodes[0].hub,
            "joined",
            &admin,
            json!({"url": rx.url(&format!("/plain{i}")), "max_in_flight": 8}),
            &[&format!("Note{i}")],
        )
        .await;
        endpoints.push((id, format!("/plain{i}")));
    }
    let ordered = endpoint_on(
        &nodes[0].hub,
        "joined",
        &admin,
        json!({"url": rx.url("/ordered"), "ordered": true, "max_in_flight": 4}),
        &["TicketUpdated"],
    )
    .await;
    endpoints.push((ordered, "/ordered".into()));

    // Events through the first node, a batch of 25 every 50 ms, every fifth an update of one
    // of 5 tickets; the second node starts once 300 have arrived, and publishing goes on for
    // 5 s after it is ready (a handover takes two of its beats, 1.3 s, and the requests in
    // flight), however long its start took.
    let event = |n: u64| {
        if n.is_multiple_of(5) {
            json!({"id": format!("e{n}"), "type": "TicketUpdated",
                   "entity": {"type": "Ticket", "id": format!("t{}", (n / 5) % 5)},
                   "data": {"n": n}})
        } else {
            json!({"id": format!("e{n}"), "type": format!("Note{}", n % 12), "data": {"n": n}})
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = {
        let (hub_client, base, publisher, stop) = (
            nodes[0].hub.client.clone(),
            nodes[0].hub.base.clone(),
            publisher.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut next = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let batch: Vec<Value> = (next..next + 25).map(event).collect();
                let r = hub_client
                    .post(format!("{base}/v1/orgs/joined/events/batch"))
                    .bearer_auth(&publisher)
                    .json(&json!({"events": batch}))
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(r.status(), 202);
                next += 25;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            next
        })
    };
    rx.wait_for(300, Duration::from_secs(30)).await;
    nodes.push(join(tmp.path(), 1, "all").await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let total = publishing.await.expect("publisher");

    // Every delivery arrives, and exactly once: the first node sends nothing more on an
    // endpoint it hands over, and the second claims only what the first gave back.
    let got = rx
        .wait_until(Duration::from_secs(60), |got| got.len() >= total as usize)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = rx.received();
    let mut times: HashMap<(String, String), usize> = HashMap::new();
    for r in &got_all {
        *times
            .entry((r.path.clone(), r.header("webhook-id").expect("id")))
            .or_default() += 1;
    }
    assert_eq!(times.len(), total as usize);
    let most = times.values().copied().max().unwrap_or(0);
    assert_eq!(
        most, 1,
        "a delivery was sent more than once across the handover"
    );
    assert_eq!(got.len(), total as usize);

    // Each ticket's updates arrive in publish order (one publisher, in order).
    let mut tickets: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in got_all.iter().filter(|r| r.path == "/ordered") {
        let body = r.json();
        tickets
            .entry(body["entity"]["id"].as_str().expect("ticket").to_string())
            .or_default()
            .push(body["data"]["n"].as_u64().expect("n"));
    }
    assert_eq!(tickets.len(), 5);
    for (ticket, ns) in &tickets {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, &sorted, "ticket {ticket} arrived out of order");
    }

    // The second node was handed the endpoints whose first choice it is: each endpoint's last
    // delivery was attempted by its first choice of the two nodes, and each endpoint moved at
    // most once (no attempt by the first node after one by the second).
    let ids: Vec<String> = nodes.iter().map(Node::id).collect();
    let mut moved = 0;
    for (endpoint, path) in &endpoints {
        let mut sent: Vec<(u64, String)> = Vec::new();
        for n in (0..total).filter(|n| {
            let ev = event(*n);
            let ty = ev["type"].as_str().unwrap_or_default().to_string();
            (path == "/ordered") == (ty == "TicketUpdated")
                && (path == "/ordered" || format!("/plain{}", n % 12) == *path)
        }) {
            // A sample: every seventh event, and the last ones.
            if !n.is_multiple_of(7) && n + 60 < total {
                continue;
            }
            let t = nodes[0]
                .hub
                .get(&format!("/v1/orgs/joined/events/e{n}"), &admin)
                .await;
            let d = &t["deliveries"][0];
            assert_eq!(d["endpoint_id"].as_str(), Some(endpoint.as_str()), "{t}");
            assert_eq!(d["status"], "delivered", "{t}");
            let node = d["attempts"][0]["node"].as_str().expect("node").to_string();
            sent.push((n, node));
        }
        let first = first_choice(&ids, endpoint);
        let last = &sent.last().expect("a delivery").1;
        assert_eq!(
            last, first,
            "{endpoint}'s last delivery was not sent by its first choice of {ids:?}: {sent:?}"
        );
        let switched = sent.windows(2).filter(|w| w[0].1 != w[1].1).count();
        assert!(switched <= 1, "{endpoint} moved {switched} times: {sent:?}");
        if first == ids[1] {
            assert_eq!(
                sent[0].1, ids[0],
                "{endpoint} was the first node's before the join"
            );
            moved += 1;
        }
    }
    assert!(
        moved > 0,
        "none of 13 endpoints is the new node's first choice: {ids:?}"
    );
}

/// The `pip-…` directories a node holds.
fn installed_on(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("packages"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pip-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_a_versions_packages_installs_them_from_its_lock_once() {
    if skip_on_sqlite("a_node_without_a_versions_packages_installs_them_from_its_lock_once") {
        return;
    }
    let greet = crate::packages::wheel(
        "greet",
        "1.0",
        "def hello():\n    return 'hello from greet'\n",
        10,
    );
    let (index, served) =
        crate::packages::serve_index(vec![("greet", "greet-1.0-py3-none-any.whl".into(), greet)])
            .await;
    let downloads = || served.load(std::sync::atomic::Ordering::SeqCst);
    let tmp = tempfile::tempdir().expect("tempdir");
    let database = database_url(&tmp.path().join("db"))
        .await
        .expect("the cluster tests run on PostgreSQL");
    let mut hubs = Vec::new();
    for i in 0..2 {
        let dir = tmp.path().join(format!("node{i}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        let config = dir.join("switchyard.toml");
        std::fs::write(
            &config,
            format!("[packages]\npip_index_url = \"http://{index}/simple/\"\n"),
        )
        .expect("config");
        hubs.push(start_node(&dir, &database, &config, "all").await);
    }
    let (admin, _) = org_on(&hubs[0], "pkgs").await;
    let source = "import greet\ndef main(input, sdk):\n    return {'said': greet.hello()}\n";
    let (s, v) = hubs[0]
        .put(
            "/v1/orgs/pkgs/executors/greeter",
            &admin,
            json!({"type": "code", "language": "python", "source": source,
                   "packages": {"pip": ["greet==1.0"]}}),
        )
        .await
        .expect("put");
    assert_eq!(s, 201, "{v}");
    // Installed by the node it was saved on (in the background: generous bound).
    let deadline = Instant::now() + Duration::from_secs(300);
    let state = loop {
        let v = hubs[0].get("/v1/orgs/pkgs/executors/greeter", &admin).await;
        if v["packages_install"]["state"] != "installing" {
            break v["packages_install"].clone();
        }
        assert!(Instant::now() < deadline, "still installing: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state["state"], "ready", "{state:#}");
    assert_eq!(downloads(), 1);
    let on_first = installed_on(&tmp.path().join("node0"));
    assert_eq!(on_first.len(), 1, "{on_first:?}");
    assert!(installed_on(&tmp.path().join("node1")).is_empty());

    // Runs through the second node, three at once: it installs the lock once, then all run.
    let runs = futures_util::future::join_all((0..3).map(|_| {
        hubs[1].post(
            "/v1/orgs/pkgs/executors/greeter/run",
            &admin,
            json!({"input": {}}),
        )
    }))
    .await;
    for r in runs {
        let (s, v) = r.expect("run");
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["output"]["said"], "hello from greet", "{v:#}");
    }
    assert_eq!(downloads(), 2, "the second node downloads the wheel once");
    assert_eq!(installed_on(&tmp.path().join("node1")), on_first);
}
