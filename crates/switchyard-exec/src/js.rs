//! JavaScript executors: a pool of `switchyard js-worker` processes running QuickJS.
//!
//! A worker runs one job at a time in a fresh engine runtime. The hub answers its SDK calls,
//! and kills it — then starts another — when a run passes its deadline, runs out of memory or
//! the worker misbehaves; a dead worker is a failed run, never a dead hub. Healthy workers go
//! back to the pool, so a trivial run costs a pipe round trip, not a process start.

use crate::channel::{Channel, ChannelEnd};
use crate::process::kill_group;
use crate::sandbox::{Confine, Isolation, Limits, SANDBOX_UID};
use crate::{Broker, Outcome, sdk_answer};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use switchyard_core::executor::MAX_MEMORY_MB;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Idle workers kept for the next runs.
const MAX_IDLE: usize = 4;
/// Time the engine's own interrupt gets before the hub kills the worker.
const KILL_GRACE: Duration = Duration::from_millis(300);

struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// The worker's messages, bounded in size and per run.
    stdout: Channel<ChildStdout>,
}

impl Worker {
    fn kill(mut self) {
        kill_group(self.child.id());
        let _ = self.child.start_kill();
    }
}

/// The worker processes.
pub struct JsPool {
    program: PathBuf,
    isolation: Isolation,
    idle: Mutex<Vec<Worker>>,
}

impl JsPool {
    /// `program` is the switchyard binary (it has the `js-worker` subcommand).
    pub fn new(program: PathBuf, isolation: Isolation) -> JsPool {
        JsPool {
            program,
            isolation,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn spawn(&self) -> Result<Worker, String> {
        let limits = Limits {
            address_space_bytes: Some((u64::from(MAX_MEMORY_MB) + 1024) * 1024 * 1024),
            cpu_seconds: None,
            file_size_bytes: 0,
            processes: 64,
        };
        let confine = Confine {
            uid: Some(SANDBOX_UID),
            ..Confine::default()
        };
        let argv = self.isolation.wrap(
            &limits,
            &confine,
            &self.program.to_string_lossy(),
            &["js-worker".to_string()],
        );
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the JavaScript worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("the worker has no stdin")?;
        let stdout = child.stdout.take().ok_or("the worker has no stdout")?;
        Ok(Worker {
            child,
            stdin,
            stdout: Channel::new(stdout),
        })
    }

    fn take(&self) -> Result<Worker, String> {
        if let Some(w) = self.idle.lock().ok().and_then(|mut i| i.pop()) {
            return Ok(w);
        }
        self.spawn()
    }

    fn give_back(&self, w: Worker) {
        match self.idle.lock() {
            Ok(mut idle) if idle.len() < MAX_IDLE => idle.push(w),
            _ => w.kill(),
        }
    }

    /// Runs `main(input, sdk)` of `source` in a worker.
    pub async fn run(
        &self,
        source: &str,
        memory_mb: u32,
        input: &Value,
        timeout: Duration,
        broker: &Broker<'_>,
    ) -> Outcome {
        let mut worker = match self.take() {
            Ok(w) => w,
            Err(e) => return Outcome::failed(e),
        };
        // Each run has the whole budget: a reused worker starts counting afresh.
        worker.stdout.reset_budget();
        let job = json!({"source": source, "input": input, "memory_mb": memory_mb, "timeout_ms": timeout.as_millis() as u64});
        let mut line = job.to_string();
        line.push('\n');
        if worker.stdin.write_all(line.as_bytes()).await.is_err() {
            // A pooled worker that died while idle: try once with a fresh one.
            worker.kill();
            worker = match self.spawn() {
                Ok(w) => w,
                Err(e) => return Outcome::failed(e),
            };
            if worker.stdin.write_all(line.as_bytes()).await.is_err() {
                worker.kill();
                return Outcome::failed("the JavaScript worker did not accept the job".into());
            }
        }
        let mut logs = Vec::new();
        let mut unused_result = None;
        let deadline = tokio::time::sleep(timeout + KILL_GRACE);
        tokio::pin!(deadline);
        loop {
            let next = tokio::select! {
                l = worker.stdout.next() => l,
                _ = broker.cancel.cancelled() => {
                    worker.kill();
                    let mut o = Outcome::failed(crate::runner::CANCELLED.into());
                    o.logs = logs;
                    return o;
                }
                _ = &mut deadline => {
                    worker.kill();
                    let mut o = Outcome::failed(format!("timeout: the code ran longer than {} ms and its worker was killed", timeout.as_millis()));
                    o.logs = logs;
                    return o;
                }
            };
            let msg: Value = match next {
                Ok(l) => match serde_json::from_str(&l) {
                    Ok(v) => v,
                    Err(_) => {
                        worker.kill();
                        return Outcome::failed(
                            "the JavaScript worker sent garbage and was replaced".into(),
                        );
                    }
                },
                Err(ChannelEnd::Limit(why)) => {
                    worker.kill();
                    let mut o = Outcome::failed(why);
                    o.logs = logs;
                    return o;
                }
                Err(ChannelEnd::Closed) => {
                    worker.kill();
                    let mut o = Outcome::failed(
                        "the JavaScript worker died (the engine aborted, likely out of memory)"
                            .into(),
                    );
                    o.logs = logs;
                    return o;
                }
            };
            match msg["type"].as_str() {
                Some("sdk") => {
                    let answer = broker
                        .handle(&msg["req"], &mut logs, &mut unused_result)
                        .await;
                    if worker.stdin.write_all(&sdk_answer(answer)).await.is_err() {
                        worker.kill();
                        return Outcome::failed(
                            "the JavaScript worker died during an SDK call".into(),
                        );
                    }
                }
                Some("done") => {
                    let error = msg["error"].as_str().map(str::to_string);
                    if msg["oom"] == json!(true) {
                        // The engine may be unsound after an out-of-memory: never reuse it.
                        worker.kill();
                    } else {
                        self.give_back(worker);
                    }
                    return Outcome {
                        output: if error.is_none() {
                            Some(msg["output"].clone())
                        } else {
                            None
                        },
                        error,
                        logs,
                        stderr: String::new(),
                        exit: None,
                    };
                }
                _ => {
                    worker.kill();
                    return Outcome::failed(
                        "the JavaScript worker sent an unknown message and was replaced".into(),
                    );
                }
            }
        }
    }
}
