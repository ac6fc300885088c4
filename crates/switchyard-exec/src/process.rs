//! Child-process executors (Python, PHP): write the run directory, start the interpreter inside
//! the sandbox, serve its SDK calls, enforce the deadline and the output caps.

use crate::sandbox::{Isolation, Limits, give_to_sandbox_user};
use crate::{Broker, Outcome};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use switchyard_core::executor::Language;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Most bytes kept of stdout and of stderr; more is a failed run.
pub const OUTPUT_CAP: usize = 1024 * 1024;

const PY_SDK: &str = include_str!("../sdk/switchyard_sdk.py");
const PY_RUNNER: &str = include_str!("../sdk/runner.py");
const PHP_SDK: &str = include_str!("../sdk/switchyard_sdk.php");
const PHP_RUNNER: &str = include_str!("../sdk/runner.php");
const NODE_SDK: &str = include_str!("../sdk/switchyard_sdk.js");
const NODE_RUNNER: &str = include_str!("../sdk/runner.js");

/// The interpreter and files of one language.
struct Runtime {
    program: &'static str,
    args: Vec<String>,
    sdk_file: &'static str,
    sdk: &'static str,
    runner_file: &'static str,
    runner: &'static str,
    main_file: &'static str,
}

fn runtime(language: Language, memory_mb: u32) -> Option<Runtime> {
    match language {
        Language::Python => Some(Runtime {
            program: "python3",
            args: vec!["-I".into(), "runner.py".into()],
            sdk_file: "switchyard_sdk.py",
            sdk: PY_SDK,
            runner_file: "runner.py",
            runner: PY_RUNNER,
            main_file: "main.py",
        }),
        Language::Php => Some(Runtime {
            program: "php",
            args: vec![
                "-n".into(),
                "-d".into(),
                format!("memory_limit={memory_mb}M"),
                "-d".into(),
                "display_errors=stderr".into(),
                "runner.php".into(),
            ],
            sdk_file: "switchyard_sdk.php",
            sdk: PHP_SDK,
            runner_file: "runner.php",
            runner: PHP_RUNNER,
            main_file: "main.php",
        }),
        Language::Node => Some(Runtime {
            program: "node",
            args: vec![
                format!("--max-old-space-size={memory_mb}"),
                "runner.js".into(),
            ],
            sdk_file: "switchyard_sdk.js",
            sdk: NODE_SDK,
            runner_file: "runner.js",
            runner: NODE_RUNNER,
            main_file: "main.js",
        }),
        Language::Javascript => None,
    }
}

/// Reads a pipe to the end, keeping at most [`OUTPUT_CAP`] bytes; `Err` once the cap is passed.
async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin) -> Result<Vec<u8>, Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return Ok(out),
            Ok(n) => {
                if out.len() + n > OUTPUT_CAP {
                    out.extend_from_slice(&buf[..OUTPUT_CAP - out.len()]);
                    return Err(out);
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// Runs code in a child process and reports what happened.
pub async fn run(
    isolation: &Isolation,
    language: Language,
    source: &str,
    memory_mb: u32,
    input: &Value,
    timeout: Duration,
    broker: &Broker<'_>,
) -> Outcome {
    let Some(rt) = runtime(language, memory_mb) else {
        return Outcome::failed(format!(
            "{} code does not run as a child process",
            language.as_str()
        ));
    };
    let dir = match tempfile::Builder::new().prefix("switchyard-run-").tempdir() {
        Ok(d) => d,
        Err(e) => return Outcome::failed(format!("cannot create the run directory: {e}")),
    };
    let main_source = if language == Language::Php && !source.trim_start().starts_with("<?php") {
        format!("<?php\n{source}")
    } else {
        source.to_string()
    };
    let input_json = input.to_string();
    if let Err(e) = write_run_dir(dir.path(), &rt, &main_source, &input_json, isolation) {
        return Outcome::failed(format!("cannot prepare the run directory: {e}"));
    }
    let sock_path = dir.path().join("sdk.sock");
    let listener = match UnixListener::bind(&sock_path) {
        Ok(l) => l,
        Err(e) => return Outcome::failed(format!("cannot open the SDK socket: {e}")),
    };
    if isolation.unprivileged_user {
        let _ = give_to_sandbox_user(&sock_path);
    }
    let limits = Limits {
        // V8 reserves far more address space than it uses; its heap limit bounds Node instead.
        address_space_bytes: (language != Language::Node)
            .then(|| (u64::from(memory_mb) + 96) * 1024 * 1024),
        cpu_seconds: Some(timeout.as_secs() + 1),
        file_size_bytes: 16 * 1024 * 1024,
        // Node starts a dozen threads, and threads count against this limit.
        processes: if language == Language::Node { 128 } else { 32 },
    };
    let argv = isolation.wrap(&limits, rt.program, &rt.args, Some(dir.path()));
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir.path())
        .env("TMPDIR", dir.path())
        .env("LANG", "C.UTF-8")
        .env("SDK", dir.path().join(rt.sdk_file))
        .env("SWITCHYARD_SDK_SOCKET", &sock_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(format!("cannot start {}: {e}", rt.program)),
    };
    let pgid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Outcome::failed("the child's pipes are missing".into());
    };
    let feed = async move {
        let _ = stdin.write_all(input_json.as_bytes()).await;
        let _ = stdin.shutdown().await;
    };
    let out_task = tokio::spawn(read_capped(stdout));
    let err_task = tokio::spawn(read_capped(stderr));
    let mut logs = Vec::new();
    let mut result: Option<Value> = None;
    let status = {
        let serve = serve_sdk(&listener, broker, &mut logs, &mut result);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::pin!(serve);
        let mut fed = Box::pin(feed);
        let mut feeding = true;
        let mut serving = true;
        loop {
            tokio::select! {
                s = child.wait() => break Ok(s),
                _ = &mut fed, if feeding => feeding = false,
                _ = &mut serve, if serving => serving = false,
                _ = &mut deadline => break Err(()),
            }
        }
    };
    let timed_out = status.is_err();
    kill_group(pgid);
    let _ = child.wait().await;
    let stdout = out_task.await.unwrap_or(Ok(Vec::new()));
    let stderr = err_task.await.unwrap_or(Ok(Vec::new()));
    let (stdout, stdout_over) = match stdout {
        Ok(b) => (b, false),
        Err(b) => (b, true),
    };
    let (stderr, stderr_over) = match stderr {
        Ok(b) => (b, false),
        Err(b) => (b, true),
    };
    let stderr_text = String::from_utf8_lossy(&stderr).into_owned();
    let stdout_text = String::from_utf8_lossy(&stdout).into_owned();
    let exit = status.ok().and_then(|s| s.ok()).and_then(|s| s.code());
    let mut outcome = Outcome {
        output: None,
        error: None,
        logs,
        stderr: stderr_text.clone(),
        exit,
    };
    if timed_out {
        outcome.error = Some(format!(
            "timeout: the code ran longer than {} ms and was killed",
            timeout.as_millis()
        ));
        return outcome;
    }
    if stdout_over || stderr_over {
        outcome.error =
            Some("output limit: the code printed more than 1 MiB and was killed".into());
        return outcome;
    }
    match exit {
        Some(0) => {}
        Some(code) => {
            // The line naming the error: the last one that says Error or Exception, else the last.
            let lines: Vec<&str> = stderr_text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            let last = lines
                .iter()
                .rev()
                .find(|l| l.contains("Error") || l.contains("Exception") || l.contains("error"))
                .or(lines.last())
                .map(|l| l.trim())
                .unwrap_or("");
            let reason = if last.contains("MemoryError")
                || last.contains("Allowed memory size")
                || last.contains("heap out of memory")
            {
                format!("memory limit: the code needed more than {memory_mb} MB ({last})")
            } else if last.is_empty() {
                format!("the code exited with status {code}")
            } else {
                format!("the code exited with status {code}: {last}")
            };
            outcome.error = Some(reason);
            return outcome;
        }
        None => {
            outcome.error =
                Some("the code was killed by a signal (CPU, memory or process limit)".into());
            return outcome;
        }
    }
    match result {
        Some(v) => {
            // main(input, sdk) answered through the SDK: stdout is log output.
            outcome.logs.extend(stdout_text.lines().map(str::to_string));
            outcome.output = Some(v);
        }
        None => {
            match serde_json::from_str::<Value>(stdout_text.trim()) {
                Ok(v) => outcome.output = Some(v),
                Err(_) if stdout_text.trim().is_empty() => {
                    outcome.error = Some("the code printed no output (print one JSON value, or define main(input, sdk))".into());
                }
                Err(e) => outcome.error = Some(format!("the output is not JSON: {e}")),
            }
        }
    }
    outcome
}

fn write_run_dir(
    dir: &Path,
    rt: &Runtime,
    main: &str,
    input: &str,
    iso: &Isolation,
) -> std::io::Result<()> {
    std::fs::write(dir.join(rt.sdk_file), rt.sdk)?;
    std::fs::write(dir.join(rt.runner_file), rt.runner)?;
    std::fs::write(dir.join(rt.main_file), main)?;
    std::fs::write(dir.join("input.json"), input)?;
    if iso.unprivileged_user {
        give_to_sandbox_user(dir)?;
        for f in [rt.sdk_file, rt.runner_file, rt.main_file, "input.json"] {
            give_to_sandbox_user(&dir.join(f))?;
        }
    }
    Ok(())
}

pub(crate) fn kill_group(pgid: Option<u32>) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Serves SDK requests from the child until it closes the channel.
async fn serve_sdk(
    listener: &UnixListener,
    broker: &Broker<'_>,
    logs: &mut Vec<String>,
    result: &mut Option<Value>,
) {
    // One connection at a time: the SDK opens one and keeps it.
    while let Ok((stream, _)) = listener.accept().await {
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let answer = match serde_json::from_str::<Value>(&line) {
                Ok(req) => broker.handle(&req, logs, result).await,
                Err(e) => Err(format!("malformed SDK request: {e}")),
            };
            let msg = match answer {
                Ok(v) => serde_json::json!({"ok": true, "value": v}),
                Err(e) => serde_json::json!({"ok": false, "error": e}),
            };
            let mut bytes = msg.to_string().into_bytes();
            bytes.push(b'\n');
            if w.write_all(&bytes).await.is_err() {
                break;
            }
        }
    }
}
