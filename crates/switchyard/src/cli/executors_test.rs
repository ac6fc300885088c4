//! `switchyard executors test DIR`: runs a folder's executors against its fixtures on a hub of
//! its own — this binary's `serve` in a temporary data dir, so the same runtime, sandbox, SDK
//! and checks as in production — and says which cases pass. Nothing of it reaches a real hub.
//!
//! A fixture is `DIR/tests/EXECUTOR/CASE.json`:
//! `{"input": …, "secrets": {"NAME": "value"}, "expect": {"output": …, "error": "…", "logs": ["…"]}}`.
//! Without `expect` a case passes when its run succeeds. Cases run in name order on one hub,
//! so what a case writes to storage the next ones see.

use super::executors::read_manifest;
use super::{Failure, Hub, HubArgs, read};
use crate::local_hub::LocalHub;
use clap::Args;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use switchyard_wire::executors::ExecutorOut;
use switchyard_wire::orgs::OrgIn;
use switchyard_wire::runs::{RunIn, RunOut};
use switchyard_wire::secrets::SecretIn;

/// Largest fixture file read.
const MAX_FIXTURE_BYTES: u64 = 16 << 20;

#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// The folder holding `executors.json`, the sources and `tests/EXECUTOR/CASE.json`.
    pub dir: PathBuf,
    /// Only this executor's cases.
    #[arg(long)]
    pub executor: Option<String>,
    /// CIDRs the local hub may reach although they are private (a mock API on this machine,
    /// e.g. 127.0.0.0/8); comma-separated. Default: none, as on a hub.
    #[arg(long = "allow-destination", value_delimiter = ',')]
    pub allow_destinations: Vec<String>,
    /// Print one JSON line per case instead of lines for people.
    #[arg(long)]
    pub json: bool,
    /// pip's index for executors' packages (default: the public one; a mirror's URL, e.g.)
    #[arg(long)]
    pub pip_index_url: Option<url::Url>,
    /// npm's registry for executors' packages (default: the public one)
    #[arg(long)]
    pub npm_registry_url: Option<url::Url>,
    /// Composer's repository for executors' packages (default: Packagist)
    #[arg(long)]
    pub composer_repository_url: Option<url::Url>,
}

/// One fixture.
struct Case {
    executor: String,
    name: String,
    input: Value,
    secrets: Map<String, Value>,
    expect: Option<Value>,
}

/// The fixtures under `DIR/tests`, in name order.
fn read_cases(dir: &Path, only: Option<&str>) -> Result<Vec<Case>, Failure> {
    let root = dir.join("tests");
    let listing = |d: &Path| -> Result<Vec<PathBuf>, Failure> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", d.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut cases = Vec::new();
    for ex_dir in listing(&root)?.into_iter().filter(|p| p.is_dir()) {
        let executor = ex_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if only.is_some_and(|o| o != executor) {
            continue;
        }
        for file in listing(&ex_dir)? {
            if file.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let name = file
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            cases.push(read_case(&file, executor.clone(), name)?);
        }
    }
    Ok(cases)
}

fn read_case(file: &Path, executor: String, name: String) -> Result<Case, Failure> {
    let bad = |why: String| Failure::Usage(format!("{}: {why}", file.display()));
    let meta = std::fs::metadata(file).map_err(|e| bad(e.to_string()))?;
    if meta.len() > MAX_FIXTURE_BYTES {
        return Err(bad("larger than 16 MiB".into()));
    }
    let text = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("a fixture is an object with `input`".into()));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["input", "secrets", "expect"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "unknown field `{k}` (a fixture has input, secrets, expect)"
        )));
    }
    let secrets = match obj.get("secrets") {
        None => Map::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m.clone(),
        Some(_) => return Err(bad("`secrets` maps names to strings".into())),
    };
    let expect = obj.get("expect").cloned();
    if let Some(e) = &expect {
        let ok = e.as_object().is_some_and(|m| {
            m.keys()
                .all(|k| ["output", "error", "logs"].contains(&k.as_str()))
                && m.get("error").is_none_or(Value::is_string)
                && m.get("logs")
                    .is_none_or(|l| l.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        });
        if !ok {
            return Err(bad(
                "`expect` is {\"output\": …, \"error\": \"…\", \"logs\": [\"…\"]}".into(),
            ));
        }
    }
    Ok(Case {
        executor,
        name,
        input: obj.get("input").cloned().unwrap_or(json!({})),
        secrets,
        expect,
    })
}

/// What is wrong with a run, measured against the case's expectations (`None`: it passes).
fn verdict(run: &RunOut, expect: Option<&Value>) -> Option<String> {
    let failed = run.status != "succeeded";
    let error = run.error.as_deref().unwrap_or_default();
    let Some(expect) = expect else {
        return failed.then(|| format!("the run failed: {error}"));
    };
    let mut wrong = Vec::new();
    match expect.get("error").and_then(Value::as_str) {
        Some(want) if !failed => wrong.push(format!(
            "expected the run to fail with `{want}`, it succeeded"
        )),
        Some(want) if !error.contains(want) => {
            wrong.push(format!("expected an error with `{want}`, got: {error}"))
        }
        None if failed => wrong.push(format!("the run failed: {error}")),
        _ => {}
    }
    let output = run.output.clone().unwrap_or_default();
    if let Some(want) = expect.get("output")
        && !failed
        && output != *want
    {
        wrong.push(format!("expected output {want}, got {output}"));
    }
    for want in expect["logs"].as_array().into_iter().flatten() {
        let want = want.as_str().unwrap_or_default();
        if !run.logs.iter().any(|l| l.contains(want)) {
            wrong.push(format!("no log line contains `{want}`"));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

/// How long `executors test` waits for an executor's packages to install.
const INSTALL_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

pub async fn test(args: TestArgs) -> Result<(), Failure> {
    let manifest = read_manifest(&args.dir)?;
    let cases = read_cases(&args.dir, args.executor.as_deref())?;
    if cases.is_empty() {
        return Err(Failure::Usage(format!(
            "no fixtures in {}: add tests/EXECUTOR/CASE.json files",
            args.dir.join("tests").display()
        )));
    }
    let names: BTreeSet<&str> = manifest.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(c) = cases.iter().find(|c| !names.contains(c.executor.as_str())) {
        return Err(Failure::Usage(format!(
            "tests/{}: no executor `{}` in executors.json",
            c.executor, c.executor
        )));
    }

    let client = reqwest::Client::new();
    let mut extra = Vec::new();
    if !args.allow_destinations.is_empty() {
        extra.push("--allow-destination".to_string());
        extra.push(args.allow_destinations.join(","));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    // The local hub's settings: where packages come from, when not the public indexes.
    let mut config = String::from("[packages]\n");
    for (key, url) in [
        ("pip_index_url", &args.pip_index_url),
        ("npm_registry_url", &args.npm_registry_url),
        ("composer_repository_url", &args.composer_repository_url),
    ] {
        if let Some(url) = url {
            config.push_str(&format!("{key} = {}\n", Value::String(url.to_string())));
        }
    }
    let local = LocalHub::start(&client, &config, &extra)
        .await
        .map_err(|e| Failure::Unavailable(format!("cannot start a local hub: {e:#}")))?;
    let hub = Hub::new(HubArgs {
        url: local.url.clone(),
        key: local.admin_key.clone(),
        org: "local-tests".into(),
        json: args.json,
    })
    .map_err(|e| Failure::Unavailable(e.to_string()))?;
    let org = OrgIn {
        id: "local-tests".into(),
        name: "executors test".into(),
        retention_s: None,
        payload_retention_s: None,
    };
    hub.call_root(reqwest::Method::POST, "/v1/orgs", &org)
        .await?;
    // Every executor, so that executors calling others find them. One without cases that the
    // local hub refuses (an API call to a destination it may not reach, say) is skipped, and
    // the skip is said; one with cases must be accepted.
    let tested: BTreeSet<&str> = cases.iter().map(|c| c.executor.as_str()).collect();
    for (name, body) in &manifest {
        let put = hub
            .call(reqwest::Method::PUT, &format!("/executors/{name}"), body)
            .await;
        match put {
            Ok(_) => {}
            Err(Failure::Refused(m)) if !tested.contains(name.as_str()) => {
                eprintln!("skipped executor {name} (it has no cases): {m}");
            }
            Err(Failure::Refused(m)) => {
                return Err(Failure::Refused(format!("executor {name}: {m}")));
            }
            Err(other) => return Err(other),
        }
    }
    // Executors with packages run once their packages are installed.
    for (name, _) in manifest.iter().filter(|(_, b)| b.packages.is_some()) {
        let started = std::time::Instant::now();
        loop {
            let ex: ExecutorOut = read(&hub.get(&format!("/executors/{name}")).await?)?;
            match ex.packages_install.as_ref().map(|p| p.state.as_str()) {
                Some("installing") if started.elapsed() < INSTALL_WAIT => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Some("installing") => {
                    return Err(Failure::Unavailable(format!(
                        "executor {name}: its packages were still installing after {} s",
                        INSTALL_WAIT.as_secs()
                    )));
                }
                Some("failed") if tested.contains(name.as_str()) => {
                    let why = ex
                        .packages_install
                        .and_then(|p| p.output)
                        .unwrap_or_default();
                    return Err(Failure::Refused(format!(
                        "executor {name}: its packages failed to install: {why}"
                    )));
                }
                _ => break,
            }
        }
    }

    let mut set: BTreeSet<String> = BTreeSet::new();
    let mut failed = 0;
    for case in &cases {
        for stale in set.iter().filter(|s| !case.secrets.contains_key(*s)) {
            hub.delete(&format!("/secrets/{stale}")).await?;
        }
        set.clear();
        for (k, v) in &case.secrets {
            let secret = SecretIn {
                value: v.as_str().unwrap_or_default().to_string(),
            };
            hub.call(reqwest::Method::PUT, &format!("/secrets/{k}"), &secret)
                .await
                .map_err(|e| {
                    Failure::Usage(format!(
                        "{}/{}: secret {k}: {}",
                        case.executor,
                        case.name,
                        e.message()
                    ))
                })?;
            set.insert(k.clone());
        }
        let input = RunIn {
            input: case.input.clone(),
        };
        let answer = hub
            .call(
                reqwest::Method::POST,
                &format!("/executors/{}/run", case.executor),
                &input,
            )
            .await?;
        let run: RunOut = read(&answer)?;
        let wrong = verdict(&run, case.expect.as_ref());
        failed += usize::from(wrong.is_some());
        report(&args, case, (&run, &answer), wrong.as_deref());
    }
    let total = cases.len();
    if !args.json {
        println!("{} passed, {failed} failed", total - failed);
    }
    if failed > 0 {
        return Err(Failure::Refused(format!(
            "{failed} of {total} cases failed"
        )));
    }
    Ok(())
}

/// Prints a case's outcome; a failing one with its run's logs and standard error.
fn report(args: &TestArgs, case: &Case, (run, answer): (&RunOut, &Value), wrong: Option<&str>) {
    if args.json {
        println!(
            "{}",
            json!({
                "executor": case.executor, "case": case.name, "pass": wrong.is_none(),
                "why": wrong, "run": answer,
            })
        );
        return;
    }
    let ms = run.duration_ms;
    let Some(why) = wrong else {
        println!("PASS {}/{} ({ms:.0} ms)", case.executor, case.name);
        return;
    };
    println!("FAIL {}/{} ({ms:.0} ms): {why}", case.executor, case.name);
    for l in &run.logs {
        println!("  log: {l}");
    }
    let stderr = &run.stderr;
    if !stderr.is_empty() {
        println!(
            "  stderr: {}",
            stderr.trim_end().replace('\n', "\n          ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, output: Option<Value>, error: Option<&str>, logs: &[&str]) -> RunOut {
        RunOut {
            id: "run_1".into(),
            executor: "double".into(),
            version: 1,
            event_id: None,
            hook: None,
            status: status.into(),
            input: json!({}),
            output,
            error: error.map(str::to_string),
            failure: None,
            logs: logs.iter().map(|l| l.to_string()).collect(),
            stderr: String::new(),
            exit: None,
            duration_ms: 1.0,
            at: "2026-12-07T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn verdicts_follow_the_expectations() {
        let ok = run("succeeded", Some(json!({"n": 2})), None, &["hello 2"]);
        let bad = run("failed", None, Some("exception: boom"), &[]);
        assert_eq!(verdict(&ok, None), None);
        assert!(verdict(&bad, None).is_some());
        assert_eq!(verdict(&ok, Some(&json!({"output": {"n": 2}}))), None);
        assert!(verdict(&ok, Some(&json!({"output": {"n": 3}}))).is_some());
        assert_eq!(verdict(&ok, Some(&json!({"logs": ["hello"]}))), None);
        assert!(verdict(&ok, Some(&json!({"logs": ["bye"]}))).is_some());
        assert_eq!(verdict(&bad, Some(&json!({"error": "boom"}))), None);
        assert!(verdict(&bad, Some(&json!({"error": "other"}))).is_some());
        assert!(verdict(&ok, Some(&json!({"error": "boom"}))).is_some());
    }

    #[test]
    fn fixtures_are_checked_when_read() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path().join("tests").join("double");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("b.json"), r#"{"input": {"n": 1}}"#).expect("write");
        std::fs::write(
            d.join("a.json"),
            r#"{"input": {"n": 2}, "expect": {"output": 4}}"#,
        )
        .expect("write");
        std::fs::write(d.join("notes.txt"), "ignored").expect("write");
        let cases = read_cases(dir.path(), None).expect("cases");
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(
            read_cases(dir.path(), Some("other"))
                .expect("none")
                .is_empty()
        );
        std::fs::write(d.join("c.json"), r#"{"inptu": {}}"#).expect("write");
        assert!(matches!(
            read_cases(dir.path(), None),
            Err(Failure::Usage(_))
        ));
        std::fs::write(d.join("c.json"), r#"{"expect": {"logs": "x"}}"#).expect("write");
        assert!(matches!(
            read_cases(dir.path(), None),
            Err(Failure::Usage(_))
        ));
    }
}
