//! `switchyard bench-exec`: trivial executor runs, one after another (back to back, or with a
//! pause between them as runs come in practice), per language; and calls of synchronous hooks
//! in front of a trivial JavaScript executor, uncached and cached.

use super::{call, start_hub};
use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct ExecBenchArgs {
    /// Runs per language
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Languages to measure, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "javascript,node,python,php"
    )]
    pub languages: Vec<String>,
    /// Also measure synchronous hook calls (a trivial JavaScript hook, and a cached one)
    #[arg(long)]
    pub hooks: bool,
    /// Print only the JSON report
    #[arg(long)]
    pub json: bool,
    /// Wait this long after each run before the next (0: back to back, each run's interpreter
    /// started while the last one's request is answered)
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
    /// Benchmark a running hub at this URL instead of starting one (needs --admin-key)
    #[arg(long)]
    pub url: Option<String>,
    /// The instance admin key of the hub given by --url
    #[arg(long, env = "SWITCHYARD_ADMIN_KEY")]
    pub admin_key: Option<String>,
}

/// What `bench-exec` measured for one language.
#[derive(Serialize, Debug)]
pub struct ExecReport {
    pub language: String,
    pub runs: usize,
    /// The run's own duration as the hub records it (start of the run to its result); for a
    /// hook call, the hub's time answering the call.
    pub run_ms_p50: f64,
    pub run_ms_p99: f64,
    pub run_ms_max: f64,
    /// The whole `POST …/run` request as a client sees it.
    pub request_ms_p50: f64,
    pub request_ms_p99: f64,
}

impl ExecReport {
    /// The report of `runs` measured into histograms of microseconds.
    fn of(language: &str, runs: usize, run_h: &Histogram<u64>, req_h: &Histogram<u64>) -> Self {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        ExecReport {
            language: language.to_string(),
            runs,
            run_ms_p50: ms(run_h, 0.5),
            run_ms_p99: ms(run_h, 0.99),
            run_ms_max: run_h.max() as f64 / 1000.0,
            request_ms_p50: ms(req_h, 0.5),
            request_ms_p99: ms(req_h, 0.99),
        }
    }
}

const TRIVIAL: &[(&str, &str)] = &[
    (
        "javascript",
        "function main(input, sdk) { return { n: input.n * 2 }; }",
    ),
    (
        "node",
        "function main(input, sdk) { return { n: input.n * 2 }; }",
    ),
    (
        "python",
        "def main(input, sdk):\n    return {'n': input['n'] * 2}\n",
    ),
    (
        "php",
        "<?php\nfunction main($in, $sdk) { return ['n' => $in['n'] * 2]; }\n",
    ),
];

/// `switchyard bench-exec`: trivial executor runs, one after another, per language.
pub async fn run_exec(args: ExecBenchArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (hub, base, admin) = match &args.url {
        Some(url) => {
            let key = args
                .admin_key
                .clone()
                .context("--url needs --admin-key (or SWITCHYARD_ADMIN_KEY)")?;
            (None, url.trim_end_matches('/').to_string(), key)
        }
        None => {
            let hub = start_hub(&client).await?;
            let (base, admin) = (hub.url.clone(), hub.admin_key.clone());
            (Some(hub), base, admin)
        }
    };
    let pause = std::time::Duration::from_millis(args.pause_ms);
    let org = format!("bench-exec-{}", std::process::id());
    call(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/orgs"),
        &admin,
        serde_json::json!({"id": org, "name": "bench"}),
    )
    .await?;
    let mut reports = Vec::new();
    for lang in &args.languages {
        let source = TRIVIAL
            .iter()
            .find(|(l, _)| l == lang)
            .map(|(_, s)| *s)
            .with_context(|| format!("no trivial program for `{lang}`"))?;
        call(
            &client,
            reqwest::Method::PUT,
            format!("{base}/v1/orgs/{org}/executors/trivial-{lang}"),
            &admin,
            serde_json::json!({"type": "code", "language": lang, "source": source}),
        )
        .await?;
        let mut run_h = Histogram::<u64>::new(3)?;
        let mut req_h = Histogram::<u64>::new(3)?;
        // One warm-up run (starts a JavaScript worker, loads interpreter files into the cache).
        for i in 0..=args.runs {
            let started = Instant::now();
            let v = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/v1/orgs/{org}/executors/trivial-{lang}/run"),
                &admin,
                serde_json::json!({"input": {"n": i}}),
            )
            .await?;
            if v["status"] != "succeeded" {
                bail!("a trivial {lang} run failed: {v}");
            }
            let took = started.elapsed();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if i == 0 {
                continue;
            }
            req_h.record((took.as_micros() as u64).max(1))?;
            run_h.record(((v["duration_ms"].as_f64().unwrap_or(0.0) * 1000.0) as u64).max(1))?;
        }
        reports.push(ExecReport::of(lang, args.runs, &run_h, &req_h));
    }
    if args.hooks {
        for (name, ttl) in [("hook-javascript", None), ("hook-cached", Some(300))] {
            call(
                &client,
                reqwest::Method::PUT,
                format!("{base}/v1/orgs/{org}/executors/trivial-hook"),
                &admin,
                serde_json::json!({"type": "code", "language": "javascript", "source": TRIVIAL[0].1}),
            )
            .await?;
            call(
                &client,
                reqwest::Method::PUT,
                format!("{base}/v1/orgs/{org}/hooks/{name}"),
                &admin,
                serde_json::json!({"executor": "trivial-hook", "cache_ttl_s": ttl}),
            )
            .await?;
            let mut run_h = Histogram::<u64>::new(3)?;
            let mut req_h = Histogram::<u64>::new(3)?;
            for i in 0..=args.runs {
                // Cached: the same input every time, so every call after the first is a hit.
                let n = if ttl.is_some() { 1 } else { i };
                let started = Instant::now();
                let v = call(
                    &client,
                    reqwest::Method::POST,
                    format!("{base}/v1/orgs/{org}/hooks/{name}/call"),
                    &admin,
                    serde_json::json!({"n": n}),
                )
                .await?;
                if i == 0 {
                    continue;
                }
                if ttl.is_some() && v["cache"] != "hit" {
                    bail!("a cached hook call was not a hit: {v}");
                }
                req_h.record((started.elapsed().as_micros() as u64).max(1))?;
                run_h
                    .record(((v["duration_ms"].as_f64().unwrap_or(0.0) * 1000.0) as u64).max(1))?;
            }
            reports.push(ExecReport::of(name, args.runs, &run_h, &req_h));
        }
    }
    drop(hub);
    if !args.json {
        for r in &reports {
            println!(
                "{:<10} {} runs · run p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms · request p50 {:.2} ms · p99 {:.2} ms",
                r.language,
                r.runs,
                r.run_ms_p50,
                r.run_ms_p99,
                r.run_ms_max,
                r.request_ms_p50,
                r.request_ms_p99
            );
        }
    }
    println!("{}", serde_json::to_string(&reports)?);
    Ok(())
}
