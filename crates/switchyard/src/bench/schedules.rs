//! `switchyard bench-schedules`: scheduler accuracy. Many schedules fire every second on a hub
//! that accepts a seconds field; afterwards every published event's delay from its fire time
//! (the event's `timestamp`) to its commit (its `received_at`) is read back, and each
//! schedule's fire times are checked to be there once each, with no gap.

use super::{call, start_hub_with};
use anyhow::bail;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_core::time::parse_rfc3339;

#[derive(Args, Debug, Clone)]
pub struct ScheduleBenchArgs {
    /// Schedules, each firing every second
    #[arg(long, default_value_t = 100)]
    pub schedules: usize,
    /// Organizations they are spread over
    #[arg(long, default_value_t = 10)]
    pub orgs: usize,
    /// How long to let them fire, in seconds
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Print only the JSON report
    #[arg(long)]
    pub json: bool,
}

/// What `bench-schedules` measured.
#[derive(Serialize, Debug)]
pub struct ScheduleReport {
    pub schedules: usize,
    pub seconds: u64,
    /// Events published by all schedules together.
    pub fired: usize,
    /// Fire times published more than once (must be 0).
    pub duplicates: usize,
    /// Fire times between a schedule's first and last event that have no event (must be 0).
    pub gaps: usize,
    /// Fire time to commit.
    pub delay_ms_p50: f64,
    pub delay_ms_p99: f64,
    pub delay_ms_max: f64,
}

/// `switchyard bench-schedules`.
pub async fn run_schedules(args: ScheduleBenchArgs) -> anyhow::Result<()> {
    if args.orgs == 0 || args.schedules < args.orgs {
        bail!("give at least one schedule per organization");
    }
    let client = reqwest::Client::new();
    let hub = start_hub_with(&client, "[schedules]\nseconds_field = true\n").await?;
    let (base, admin) = (hub.url.clone(), hub.admin_key.clone());
    let orgs: Vec<String> = (0..args.orgs)
        .map(|i| format!("bench-sched-{i}-{}", std::process::id()))
        .collect();
    for org in &orgs {
        call(
            &client,
            reqwest::Method::POST,
            format!("{base}/v1/orgs"),
            &admin,
            serde_json::json!({"id": org, "name": "bench"}),
        )
        .await?;
    }
    for i in 0..args.schedules {
        let org = &orgs[i % orgs.len()];
        call(
            &client,
            reqwest::Method::PUT,
            format!("{base}/v1/orgs/{org}/schedules/s{i}"),
            &admin,
            serde_json::json!({"cron": "* * * * * *", "event_type": "Tick", "data": {"i": i}}),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    for i in 0..args.schedules {
        let org = &orgs[i % orgs.len()];
        call(
            &client,
            reqwest::Method::PUT,
            format!("{base}/v1/orgs/{org}/schedules/s{i}"),
            &admin,
            serde_json::json!({"cron": "* * * * * *", "event_type": "Tick", "enabled": false}),
        )
        .await?;
    }
    // Fire times by schedule, and the delays.
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut delay = Histogram::<u64>::new(3)?;
    for org in &orgs {
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/orgs/{org}/events?type=Tick&limit=1000");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = client
                .get(url)
                .bearer_auth(&admin)
                .send()
                .await?
                .json::<serde_json::Value>()
                .await?;
            for e in page["data"].as_array().into_iter().flatten() {
                let (Some(at), Some(received)) = (
                    e["timestamp"].as_str().and_then(parse_rfc3339),
                    e["received_at"].as_str().and_then(parse_rfc3339),
                ) else {
                    bail!("an event without its times: {e}");
                };
                let schedule = e["entity"]["id"].as_str().unwrap_or("").to_string();
                times
                    .entry(format!("{org}/{schedule}"))
                    .or_default()
                    .push(at);
                delay.record(((received - at).max(0) as u64 * 1000).max(1))?;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
    }
    drop(hub);
    let mut fired = 0;
    let mut duplicates = 0;
    let mut gaps = 0;
    for ts in times.values_mut() {
        ts.sort_unstable();
        fired += ts.len();
        let before = ts.len();
        ts.dedup();
        duplicates += before - ts.len();
        if let (Some(first), Some(last)) = (ts.first(), ts.last()) {
            gaps += ((last - first) / 1000 + 1) as usize - ts.len();
        }
    }
    let ms = |q: f64| delay.value_at_quantile(q) as f64 / 1000.0;
    let report = ScheduleReport {
        schedules: args.schedules,
        seconds: args.seconds,
        fired,
        duplicates,
        gaps,
        delay_ms_p50: ms(0.5),
        delay_ms_p99: ms(0.99),
        delay_ms_max: delay.max() as f64 / 1000.0,
    };
    if !args.json {
        println!(
            "{} schedules × {} s · {} events · {} duplicates · {} gaps · fire→commit p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            report.schedules,
            report.seconds,
            report.fired,
            report.duplicates,
            report.gaps,
            report.delay_ms_p50,
            report.delay_ms_p99,
            report.delay_ms_max
        );
    }
    println!("{}", serde_json::to_string(&report)?);
    if duplicates > 0 || gaps > 0 {
        bail!("a fire time was published twice or not at all");
    }
    Ok(())
}
