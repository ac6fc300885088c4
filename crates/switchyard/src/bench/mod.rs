//! `switchyard bench`: the benchmark every performance claim of the project uses.
//!
//! It starts a hub (this binary's `serve`, in a temporary data dir, so its memory can be
//! measured on its own; or an existing one given by `--url`) and a local receiver, publishes N
//! events with C concurrent publishers (one per request or in batches, flat out or at a fixed
//! rate), waits until every event arrived, and reports accepted/s, delivered/s, publish→receipt
//! latency and the hub's peak RSS. In the same run it drives the same receiver directly with the
//! same HTTP client and no hub in between: that ceiling puts the hub's figure in proportion.

use crate::local_hub::LocalHub;
use anyhow::{Context, bail};
use axum::http::StatusCode;
use clap::Args;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod exec;
mod receiver;
mod schedules;

pub use exec::{ExecBenchArgs, run_exec};
use receiver::{Receiver, start_receiver};
pub use schedules::{ScheduleBenchArgs, run_schedules};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events to publish
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Concurrent publishers
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Events per publish request (1 = POST /events, more = POST /events/batch)
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Publish at this many events per second (0 = as fast as possible)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Size of each event's data, in bytes
    #[arg(long, default_value_t = 300)]
    pub payload_bytes: usize,
    /// Benchmark a running hub at this URL instead of starting one (needs --admin-key); several
    /// nodes of one hub, comma-separated, share the publishers (the first sets up)
    #[arg(long)]
    pub url: Option<String>,
    /// The instance admin key of the hub given by --url
    #[arg(long, env = "SWITCHYARD_ADMIN_KEY")]
    pub admin_key: Option<String>,
    /// Skip measuring the direct receiver ceiling
    #[arg(long)]
    pub no_ceiling: bool,
    /// Print only the JSON report
    #[arg(long)]
    pub json: bool,
    /// Deliver to an ordered endpoint with this many ordering keys (events spread over them;
    /// 1 = every event in one key). 0 = unordered.
    #[arg(long, default_value_t = 0)]
    pub ordered_keys: usize,
    /// Subscribe this many endpoints to the events (each event is delivered to every one).
    #[arg(long, default_value_t = 1)]
    pub endpoints: usize,
    /// Before measuring, give another organization a backlog of this many deliveries to an
    /// endpoint that takes 5 s per request and allows 1,000 in flight (fairness: the measured
    /// events must not wait behind it).
    #[arg(long, default_value_t = 0)]
    pub backlog: usize,
    /// Before measuring, give the organization this many more subscriptions that match none of
    /// the events (each to a type of its own): what routing costs as subscriptions grow.
    #[arg(long, default_value_t = 0)]
    pub unmatched_subscriptions: usize,
    /// A receiver that was away: it answers 503 (`Retry-After: 1`) while the events are
    /// published, so that they wait in the store, then 200 again; measures how fast the backlog
    /// drains once it is back. The endpoints keep the default retry schedule.
    #[arg(long)]
    pub drain: bool,
}

/// What a benchmark run measured.
#[derive(Serialize, Debug)]
pub struct Report {
    pub events: usize,
    pub concurrency: usize,
    pub batch: usize,
    pub rate: u64,
    pub payload_bytes: usize,
    pub accepted_per_s: f64,
    pub delivered_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub hub_peak_rss_mb: Option<f64>,
    pub ceiling_per_s: Option<f64>,
    pub fraction_of_ceiling: Option<f64>,
    pub duplicates: usize,
    pub ordered_keys: usize,
    pub endpoints: usize,
    pub backlog: usize,
    pub unmatched_subscriptions: usize,
    /// Requests to the ordered endpoint that arrived before an earlier event of their key.
    pub out_of_order: usize,
    pub drain: bool,
    /// With `--drain`: deliveries per second from the receiver's return to the last arrival.
    pub drain_deliveries_per_s: Option<f64>,
    /// The largest the hub's SQLite write-ahead log was, sampled every 100 ms (a hub this
    /// command started, on SQLite; none on PostgreSQL, which has no such file).
    pub hub_peak_wal_mb: Option<f64>,
}

/// Samples the size of the write-ahead log in `data_dir` every 100 ms, keeping the largest (in
/// bytes) in `peak`, until the task is aborted.
fn watch_wal(data_dir: std::path::PathBuf, peak: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let wal = data_dir.join("switchyard.db-wal");
        loop {
            if let Ok(m) = tokio::fs::metadata(&wal).await {
                peak.fetch_max(m.len(), Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A hub of this binary for the benchmark, allowed to deliver to the local receiver.
async fn start_hub(client: &reqwest::Client) -> anyhow::Result<LocalHub> {
    start_hub_with(client, "").await
}

/// The same, with `config` as its settings file.
async fn start_hub_with(client: &reqwest::Client, config: &str) -> anyhow::Result<LocalHub> {
    LocalHub::start(client, config, &["--allow-destination", "127.0.0.0/8"]).await
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let resp = client
        .request(method, &url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {status}: {v}");
    }
    Ok(v)
}

/// `n` subscriptions of `org` that match none of the bench's events (types `Unmatched-{i}`), to
/// one endpoint of their own, made 16 at a time.
async fn unmatched(
    client: &reqwest::Client,
    base: &str,
    org: &str,
    admin: &str,
    hook_url: &str,
    n: usize,
) -> anyhow::Result<()> {
    let ep = call(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs/{org}/endpoints"),
        admin,
        serde_json::json!({"url": hook_url}),
    )
    .await?;
    let ep_id = ep["id"].as_str().context("no endpoint id")?.to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, next, ep_id) = (client.clone(), next.clone(), ep_id.clone());
        let (url, admin) = (
            format!("{base}/v1/orgs/{org}/subscriptions"),
            admin.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = serde_json::json!({"event_types": [format!("Unmatched-{i}")], "endpoint_id": ep_id});
                call(&client, reqwest::Method::POST, url.clone(), &admin, body).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Event `i`; its entity (an ordered endpoint's key) is `i % keys` (1,000 entities if `keys`
/// is 0).
fn event_json(i: usize, payload: &str, keys: usize) -> serde_json::Value {
    let keys = if keys == 0 { 1000 } else { keys };
    serde_json::json!({
        "id": format!("b-{i}"),
        "type": "TicketUpdated",
        "entity": {"type": "Ticket", "id": (i % keys).to_string()},
        "data": {"ticketId": i, "note": payload},
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.concurrency == 0 || args.batch == 0 || args.endpoints == 0 {
        bail!("--events, --concurrency, --batch and --endpoints must be at least 1");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .tcp_nodelay(true)
        .build()?;
    let receiver = Receiver::with_keys(args.events, args.ordered_keys);
    let hook_url = start_receiver(receiver.clone()).await?;

    let (hub, bases, admin) = match &args.url {
        Some(u) => {
            let key = args
                .admin_key
                .clone()
                .context("--url needs --admin-key (or SWITCHYARD_ADMIN_KEY)")?;
            let bases: Vec<String> = u
                .split(',')
                .map(|u| u.trim().trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty())
                .collect();
            if bases.is_empty() {
                bail!("--url names no hub");
            }
            (None, bases, key)
        }
        None => {
            // Room for the subscriptions asked for, beyond the default limit per organization.
            let room = args.endpoints + args.unmatched_subscriptions;
            let config = if room > 10_000 {
                format!("[limits]\nsubscriptions = {room}\n")
            } else {
                String::new()
            };
            let h = start_hub_with(&client, &config).await?;
            let (u, k) = (h.url.clone(), h.admin_key.clone());
            (Some(h), vec![u], k)
        }
    };
    let base = bases[0].clone();
    let org = format!("bench-{}", std::process::id());
    call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs"),
        &admin,
        serde_json::json!({"id": org, "name": "bench"}),
    )
    .await?;
    let key = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs/{org}/keys"),
        &admin,
        serde_json::json!({"role": "publisher"}),
    )
    .await?["key"]
        .as_str()
        .context("no key in answer")?
        .to_string();
    let mut settings = serde_json::json!({"url": hook_url, "max_in_flight": 64});
    if !args.drain {
        // Retried soon: a failed attempt shows as a late arrival, not a stalled run.
        settings["retry_schedule_s"] = serde_json::json!([1, 1, 1]);
    }
    if args.ordered_keys > 0 {
        settings["ordered"] = true.into();
    }
    for _ in 0..args.endpoints {
        let ep = call(
            &client,
            reqwest::Method::POST,
            format!("{base}/v1/orgs/{org}/endpoints"),
            &admin,
            settings.clone(),
        )
        .await?;
        let ep_id = ep["id"].as_str().context("no endpoint id")?.to_string();
        call(
            &client,
            reqwest::Method::POST,
            format!("{base}/v1/orgs/{org}/subscriptions"),
            &admin,
            serde_json::json!({"event_types": ["*"], "endpoint_id": ep_id}),
        )
        .await?;
    }
    if args.backlog > 0 {
        make_backlog(&client, &base, &admin, &hook_url, args.backlog).await?;
    }
    if args.unmatched_subscriptions > 0 {
        unmatched(
            &client,
            &base,
            &org,
            &admin,
            &hook_url,
            args.unmatched_subscriptions,
        )
        .await?;
    }

    let wal_peak = Arc::new(AtomicU64::new(0));
    let wal_watch = hub
        .as_ref()
        .map(|h| watch_wal(h.data_dir().to_path_buf(), wal_peak.clone()));
    receiver.away.store(args.drain, Ordering::SeqCst);
    let payload = "x".repeat(args.payload_bytes);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted_at = Arc::new(AtomicU64::new(0));
    let start = receiver.now_us();
    let mut tasks = Vec::new();
    for p in 0..args.concurrency {
        let (client, next, receiver, accepted_at, payload, key) = (
            client.clone(),
            next.clone(),
            receiver.clone(),
            accepted_at.clone(),
            payload.clone(),
            key.clone(),
        );
        // Publishers take the nodes in turn.
        let publish_base = &bases[p % bases.len()];
        let (url_one, url_batch) = (
            format!("{publish_base}/v1/orgs/{org}/events"),
            format!("{publish_base}/v1/orgs/{org}/events/batch"),
        );
        let args = args.clone();
        // Ordered: every event of a key comes from one publisher, in index order, so that the
        // publish order of a key is its index order and the receiver can check it.
        let mine: Option<Vec<usize>> = (args.ordered_keys > 0).then(|| {
            (0..args.events)
                .filter(|i| (i % args.ordered_keys) % args.concurrency == p)
                .collect()
        });
        tasks.push(tokio::spawn(async move {
            let mut pos = 0;
            loop {
                let idxs: Vec<usize> = match &mine {
                    Some(m) => {
                        let c = m[pos..(pos + args.batch).min(m.len())].to_vec();
                        pos += c.len();
                        c
                    }
                    None => {
                        let first = next.fetch_add(args.batch, Ordering::SeqCst);
                        (first..(first + args.batch).min(args.events)).collect()
                    }
                };
                let Some(&first) = idxs.first() else {
                    return Ok::<(), anyhow::Error>(());
                };
                if let Some(offset_us) = (first as u64 * 1_000_000).checked_div(args.rate) {
                    let due_us = start + offset_us;
                    let now = receiver.now_us();
                    if due_us > now {
                        tokio::time::sleep(Duration::from_micros(due_us - now)).await;
                    }
                }
                let now = receiver.now_us();
                for &i in &idxs {
                    receiver.sent_us[i].store(now, Ordering::SeqCst);
                }
                let req = if args.batch == 1 {
                    client
                        .post(&url_one)
                        .json(&event_json(first, &payload, args.ordered_keys))
                } else {
                    let evs: Vec<_> = idxs
                        .iter()
                        .map(|&i| event_json(i, &payload, args.ordered_keys))
                        .collect();
                    client
                        .post(&url_batch)
                        .json(&serde_json::json!({"events": evs}))
                };
                let resp = req.bearer_auth(&key).send().await?;
                if resp.status() != StatusCode::ACCEPTED {
                    bail!(
                        "publish answered {}: {}",
                        resp.status(),
                        resp.text().await.unwrap_or_default()
                    );
                }
                let _ = resp.bytes().await;
                accepted_at.fetch_max(receiver.now_us(), Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let accepted_s = (accepted_at.load(Ordering::SeqCst) - start) as f64 / 1e6;
    let drain_start = receiver.now_us();
    receiver.away.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(300);
    let expected = args.events * args.endpoints;
    while receiver.received.load(Ordering::SeqCst) < expected {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} deliveries arrived within 300 s",
                receiver.received.load(Ordering::SeqCst),
                expected
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last_us = receiver.last_us.load(Ordering::SeqCst);
    let delivered_s = (last_us - start) as f64 / 1e6;
    let drain_deliveries_per_s = args
        .drain
        .then(|| expected as f64 / ((last_us - drain_start) as f64 / 1e6));
    let hub_peak_rss_mb = hub.as_ref().and_then(|h| peak_rss_mb(h.child.id()));
    let hub_peak_wal_mb = wal_watch.and_then(|w| {
        w.abort();
        let peak = wal_peak.load(Ordering::Relaxed);
        (peak > 0).then(|| peak as f64 / (1024.0 * 1024.0))
    });
    drop(hub);
    let (p50, p99, max) = {
        let h = receiver
            .latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("latency lock poisoned"))?;
        (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        )
    };
    let delivered_per_s = args.events as f64 / delivered_s;
    let ceiling = if args.no_ceiling {
        None
    } else {
        Some(ceiling(&client, &args, &payload).await?)
    };
    let report = Report {
        events: args.events,
        concurrency: args.concurrency,
        batch: args.batch,
        rate: args.rate,
        payload_bytes: args.payload_bytes,
        accepted_per_s: args.events as f64 / accepted_s,
        delivered_per_s,
        latency_ms_p50: p50,
        latency_ms_p99: p99,
        latency_ms_max: max,
        hub_peak_rss_mb,
        ceiling_per_s: ceiling,
        fraction_of_ceiling: ceiling.map(|c| delivered_per_s / c),
        duplicates: receiver
            .seen
            .iter()
            .map(|n| (n.load(Ordering::SeqCst) as usize).saturating_sub(args.endpoints))
            .sum(),
        ordered_keys: args.ordered_keys,
        endpoints: args.endpoints,
        backlog: args.backlog,
        unmatched_subscriptions: args.unmatched_subscriptions,
        out_of_order: receiver.out_of_order.load(Ordering::SeqCst),
        drain: args.drain,
        drain_deliveries_per_s,
        hub_peak_wal_mb,
    };
    if !args.json {
        println!(
            "events {} · concurrency {} · batch {} · rate {} · payload {} B",
            report.events,
            report.concurrency,
            report.batch,
            if report.rate == 0 {
                "max".to_string()
            } else {
                format!("{}/s", report.rate)
            },
            report.payload_bytes
        );
        if report.ordered_keys > 0
            || report.endpoints > 1
            || report.backlog > 0
            || report.unmatched_subscriptions > 0
        {
            println!(
                "ordered keys {} · endpoints {} · another org's backlog {} · unmatched subscriptions {} · out of order {}",
                report.ordered_keys,
                report.endpoints,
                report.backlog,
                report.unmatched_subscriptions,
                report.out_of_order
            );
        }
        println!("accepted     {:>10.0} events/s", report.accepted_per_s);
        println!(
            "delivered    {:>10.0} events/s (each to {} endpoint(s))",
            report.delivered_per_s, report.endpoints
        );
        println!(
            "latency      p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms (publish → receipt)",
            p50, p99, max
        );
        if let Some(d) = report.drain_deliveries_per_s {
            println!("drained      {d:>10.0} deliveries/s once the receiver was back");
        }
        if let Some(rss) = report.hub_peak_rss_mb {
            println!("hub peak RSS {rss:>10.1} MB");
        }
        if let Some(wal) = report.hub_peak_wal_mb {
            println!("hub peak WAL {wal:>10.1} MB");
        }
        if let (Some(c), Some(f)) = (report.ceiling_per_s, report.fraction_of_ceiling) {
            println!(
                "ceiling      {c:>10.0} requests/s straight to the receiver · hub at {:.0} % of it",
                f * 100.0
            );
        }
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Gives a second organization `n` deliveries to an endpoint that answers in 5 s and allows
/// 1,000 requests in flight: a backlog that drains for a long while, taking all the hub lets
/// it, while the measured organization publishes.
async fn make_backlog(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    hook_url: &str,
    n: usize,
) -> anyhow::Result<()> {
    let org = format!("bench-backlog-{}", std::process::id());
    call(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs"),
        admin,
        serde_json::json!({"id": org, "name": "backlog"}),
    )
    .await?;
    let slow = hook_url.replace("/hook", "/slow");
    let ep = call(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs/{org}/endpoints"),
        admin,
        serde_json::json!({"url": slow, "max_in_flight": 1000, "timeout_ms": 30000}),
    )
    .await?;
    call(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs/{org}/subscriptions"),
        admin,
        serde_json::json!({"event_types": ["*"], "endpoint_id": ep["id"]}),
    )
    .await?;
    let url = format!("{base}/v1/orgs/{org}/events/batch");
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, admin, next) =
            (client.clone(), url.clone(), admin.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(100, Ordering::SeqCst);
                if first >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let evs: Vec<_> = (first..(first + 100).min(n))
                    .map(|i| {
                        serde_json::json!({"id": format!("backlog-{i}"), "type": "Backlog", "data": {}})
                    })
                    .collect();
                call(
                    &client,
                    reqwest::Method::POST,
                    url.clone(),
                    &admin,
                    serde_json::json!({"events": evs}),
                )
                .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The receiver driven directly: the same client, concurrency and body size, no hub.
async fn ceiling(client: &reqwest::Client, args: &BenchArgs, payload: &str) -> anyhow::Result<f64> {
    let receiver = Receiver::new(args.events);
    let url = start_receiver(receiver.clone()).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.clone());
        let (n, payload) = (args.events, payload.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let body = serde_json::to_vec(&event_json(i, &payload, 0))?;
                let resp = client
                    .post(&url)
                    .header("webhook-id", format!("b-{i}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let _ = resp.bytes().await;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(args.events as f64 / started.elapsed().as_secs_f64())
}
