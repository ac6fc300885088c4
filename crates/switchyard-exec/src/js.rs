//! JavaScript executors: a pool of `switchyard js-worker` processes running QuickJS.
//!
//! A worker runs one job at a time in a fresh engine runtime. The hub answers its SDK calls,
//! and kills it — then starts another — when a run passes its deadline, runs out of memory or
//! the worker misbehaves; a dead worker is a failed run, never a dead hub. Healthy workers go
//! back to the pool, so a trivial run costs a pipe round trip, not a process start.
//!
//! Each worker is confined like a child-process run: its own uid from the pool's slots (so one
//! organization's workers never use up another's process limit), its own new root and cgroup,
//! whose memory limit the hub sets before each job to that job's `memory_mb` plus the engine's
//! own room; a worker the kernel killed for memory is a failed run naming the limit.

use crate::capacity::Capacity;
use crate::cgroups::CgroupError;
use crate::channel::{Channel, ChannelEnd};
use crate::process::kill_group;
use crate::sandbox::{
    Confine, Isolation, JS_UID_BASE, JS_WORKER_SLOTS, Limits, RunGroup, UidSlot, UidSlots,
};
use crate::{Broker, Failed, Outcome, RunFailure, SetupError, sdk_answer};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::executor::MAX_MEMORY_MB;
use switchyard_js::protocol::{self, FromWorker, Job};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Idle workers kept for the next runs.
const MAX_IDLE: usize = 4;
/// Time the engine's own interrupt gets before the hub kills the worker.
const KILL_GRACE: Duration = Duration::from_millis(300);
/// A worker's memory beyond the engine's heap limit (`memory_mb`) and its own binary's pages:
/// the process, its input and output (at most 1 MiB each way past the engine), the engine's own
/// tables.
pub const WORKER_MB: u32 = 48;
/// Bytes of a worker's stderr kept for its error.
const STDERR_KEPT: usize = 2048;
/// Processes and threads of one worker.
const WORKER_PROCESSES: u32 = 64;

struct Worker {
    child: Child,
    stdin: ChildStdin,
    /// The worker's messages, bounded in size and per run.
    stdout: Channel<ChildStdout>,
    /// The start of what the worker (or the sandbox around it) wrote to stderr, for the error
    /// of a worker that ended without answering.
    stderr: Arc<Mutex<String>>,
    /// The worker's cgroups (limits set per job), when the host has them.
    group: Option<RunGroup>,
    /// The memory limit its cgroup has now (MiB): rewritten only when a job needs another.
    limit_mb: u32,
    /// The new root's mount point (empty on the host); removed with the worker.
    _stage: tempfile::TempDir,
    /// The worker's own uid, handed back when the worker goes.
    _slot: UidSlot,
}

impl Worker {
    /// Sets the worker's memory limit for its next job, unless it already has that one.
    fn limit(&mut self, mb: u32) -> Result<(), CgroupError> {
        if let Some(g) = &self.group
            && self.limit_mb != mb
        {
            g.limit(u64::from(mb) << 20, u64::from(WORKER_PROCESSES))?;
            self.limit_mb = mb;
        }
        Ok(())
    }

    /// Why a worker that stopped answering ended: its exit status and what it wrote to stderr.
    async fn ended(&mut self) -> String {
        let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        use std::os::unix::process::ExitStatusExt;
        let how = match status {
            Some(s) if s.signal() == Some(libc::SIGABRT) => {
                "the engine aborted (it ran out of its own memory)".to_string()
            }
            Some(s) if let Some(sig) = s.signal() => format!("killed by signal {sig}"),
            Some(s) => format!("exit status {}", s.code().unwrap_or(-1)),
            None => "still running, stopped by the hub".to_string(),
        };
        let said = self
            .stderr
            .lock()
            .map(|e| e.trim().to_string())
            .unwrap_or_default();
        if said.is_empty() {
            format!("the JavaScript worker ended without answering ({how})")
        } else {
            format!("the JavaScript worker ended without answering ({how}): {said}")
        }
    }

    fn kill(mut self) {
        kill_group(self.child.id());
        let _ = self.child.start_kill();
        if let Some(g) = &self.group {
            g.kill_all();
        }
    }
}

/// Keeps the first [`STDERR_KEPT`] bytes a worker writes to stderr (the rest is read and
/// dropped, so the worker never blocks on a full pipe).
async fn keep_stderr(mut pipe: tokio::process::ChildStderr, kept: Arc<Mutex<String>>) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            return;
        }
        if let Ok(mut k) = kept.lock()
            && k.len() < STDERR_KEPT
        {
            let room = STDERR_KEPT - k.len();
            k.push_str(&String::from_utf8_lossy(&buf[..n.min(room)]));
        }
    }
}

/// The worker processes.
pub struct JsPool {
    program: PathBuf,
    isolation: Isolation,
    idle: Mutex<Vec<Worker>>,
    slots: UidSlots,
    /// What a worker needs besides the engine's heap: [`WORKER_MB`] and the pages of its binary
    /// (file pages a process maps count against its cgroup).
    overhead_mb: u32,
}

impl JsPool {
    /// `program` is the switchyard binary (it has the `js-worker` subcommand).
    pub fn new(program: PathBuf, isolation: Isolation) -> JsPool {
        let program = program.canonicalize().unwrap_or(program);
        let binary_mb = std::fs::metadata(&program).map_or(64, |m| m.len().div_ceil(1 << 20));
        JsPool {
            program,
            isolation,
            idle: Mutex::new(Vec::new()),
            slots: UidSlots::new(JS_UID_BASE, JS_WORKER_SLOTS),
            overhead_mb: WORKER_MB + u32::try_from(binary_mb).unwrap_or(u32::MAX / 2),
        }
    }

    async fn spawn(&self, wait: Duration) -> Result<Worker, Failed> {
        let slot = self.slots.take(wait).await.ok_or_else(|| {
            (
                RunFailure::NoRoom,
                format!(
                    "no room: no JavaScript worker slot became free within {} ms (too many runs at once)",
                    crate::whole_ms(wait)
                ),
            )
        })?;
        self.start(slot)
            .await
            .map_err(|e| (RunFailure::Crashed, e.to_string()))
    }

    /// Starts a worker in `slot`.
    async fn start(&self, slot: UidSlot) -> Result<Worker, SetupError> {
        let stage = tempfile::Builder::new()
            .prefix("switchyard-js-")
            .tempdir()
            .map_err(SetupError::of("cannot create the worker's directory"))?;
        let group = self
            .isolation
            .groups
            .as_ref()
            .map(|g| g.slot(slot.uid))
            .transpose()
            .map_err(SetupError::of("cannot prepare the worker's cgroup"))?;
        let limits = Limits {
            address_space_bytes: Some((u64::from(MAX_MEMORY_MB) + 1024) * 1024 * 1024),
            cpu_seconds: None,
            file_size_bytes: 0,
            processes: WORKER_PROCESSES,
        };
        // The largest a job may need until the first job sets its own (the slot's last worker
        // was emptied out when it went).
        let limit_mb = MAX_MEMORY_MB + self.overhead_mb;
        if let Some(g) = &group {
            g.limit(u64::from(limit_mb) << 20, u64::from(WORKER_PROCESSES))
                .map_err(SetupError::of("cannot set the worker's limits"))?;
        }
        let confine = Confine {
            uid: Some(slot.uid),
            stage: Some(stage.path()),
            tmp_mb: 1,
            ro: Vec::new(),
            exe: true,
            cgroup: group.as_ref(),
            index_proxy: false,
            out: None,
            packages: None,
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
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(SetupError::of("cannot start the JavaScript worker"))?;
        let missing = |pipe: &str| {
            SetupError::of("starting the JavaScript worker")(format!("it has no {pipe}"))
        };
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            tokio::spawn(keep_stderr(pipe, stderr.clone()));
        }
        Ok(Worker {
            child,
            stdin,
            stdout: Channel::new(stdout),
            stderr,
            group,
            limit_mb,
            _stage: stage,
            _slot: slot,
        })
    }

    async fn take(&self, wait: Duration) -> Result<Worker, Failed> {
        if let Some(w) = self.idle.lock().ok().and_then(|mut i| i.pop()) {
            return Ok(w);
        }
        self.spawn(wait).await
    }

    fn give_back(&self, w: Worker) {
        match self.idle.lock() {
            Ok(mut idle) if idle.len() < MAX_IDLE => idle.push(w),
            _ => w.kill(),
        }
    }

    /// Runs `main(input, sdk)` of `source` in a worker, holding a JavaScript run's share and
    /// its memory in `capacity` while it runs. With `check`, the worker only compiles the
    /// source.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        source: &str,
        memory_mb: u32,
        input: &Value,
        timeout: Duration,
        capacity: &Capacity,
        broker: &Broker<'_>,
        check: bool,
    ) -> Outcome {
        let started = Instant::now();
        // The budget holds what is the run's own; the cgroup also has room for the binary's
        // pages, which every worker shares (they are charged once, to whichever touched them).
        let kernel_mb = memory_mb + self.overhead_mb;
        let _room = match capacity
            .js_run(broker.org.as_str(), memory_mb + WORKER_MB, timeout)
            .await
        {
            Ok(room) => room,
            Err(e) => return Outcome::failed(RunFailure::NoRoom, e.to_string()),
        };
        let mut worker = match self.take(timeout.saturating_sub(started.elapsed())).await {
            Ok(w) => w,
            Err((kind, e)) => return Outcome::failed(kind, e),
        };
        // This job's memory: a worker that cannot be brought under it (its heap has not shrunk
        // since a bigger job) is replaced by a fresh one.
        if worker.limit(kernel_mb).is_err() {
            // (It is replaced, not waited for: its heap stays the engine's until it exits.)
            worker.kill();
            worker = match self.spawn(timeout.saturating_sub(started.elapsed())).await {
                Ok(w) => w,
                Err((kind, e)) => return Outcome::failed(kind, e),
            };
            if let Some(g) = &worker.group {
                let limit = u64::from(kernel_mb) << 20;
                if let Err(e) = g.limit_when_free(limit, u64::from(WORKER_PROCESSES)).await {
                    worker.kill();
                    return Outcome::failed(
                        RunFailure::Crashed,
                        format!("cannot set the worker's limits: {e}"),
                    );
                }
                worker.limit_mb = kernel_mb;
            }
        }
        let ooms_before = worker.group.as_ref().map_or(0, RunGroup::oom_kills);
        let timeout = timeout.saturating_sub(started.elapsed());
        // Each run has the whole budget: a reused worker starts counting afresh.
        worker.stdout.reset_budget();
        let job = Job {
            source: source.to_string(),
            input: input.clone(),
            memory_mb: u64::from(memory_mb),
            timeout_ms: crate::whole_ms(timeout) as u64,
            check,
        };
        let line = protocol::line(&job);
        if worker.stdin.write_all(&line).await.is_err() {
            // A pooled worker that died while idle: try once with a fresh one.
            worker.kill();
            worker = match self.spawn(timeout).await {
                Ok(w) => w,
                Err((kind, e)) => return Outcome::failed(kind, e),
            };
            if worker.stdin.write_all(&line).await.is_err() {
                worker.kill();
                return Outcome::failed(
                    RunFailure::Crashed,
                    "the JavaScript worker did not accept the job",
                );
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
                    let mut o = Outcome::failed(RunFailure::Cancelled, crate::runner::CANCELLED);
                    o.logs = logs;
                    return o;
                }
                _ = &mut deadline => {
                    worker.kill();
                    let mut o = Outcome::failed(RunFailure::Timeout, format!("timeout: the code ran longer than {} ms and its worker was killed", crate::whole_ms(timeout)));
                    o.logs = logs;
                    return o;
                }
            };
            let msg: FromWorker = match next {
                Ok(l) => match serde_json::from_str(&l) {
                    Ok(v) => v,
                    Err(_) => {
                        worker.kill();
                        return Outcome::failed(
                            RunFailure::Crashed,
                            "the JavaScript worker sent garbage and was replaced",
                        );
                    }
                },
                Err(ChannelEnd::Limit(why)) => {
                    worker.kill();
                    let mut o = Outcome::failed(RunFailure::OutputLimit, why);
                    o.logs = logs;
                    return o;
                }
                Err(ChannelEnd::Closed) => {
                    let oom = worker
                        .group
                        .as_ref()
                        .is_some_and(|g| g.oom_kills() > ooms_before);
                    let (kind, why) = if oom {
                        (
                            RunFailure::Memory,
                            format!(
                                "memory limit: the run used more than its {kernel_mb} MB ({memory_mb} MB \
                             for the code (`memory_mb`), {} MB for the engine) and the kernel stopped it",
                                self.overhead_mb
                            ),
                        )
                    } else {
                        (RunFailure::Crashed, worker.ended().await)
                    };
                    worker.kill();
                    let mut o = Outcome::failed(kind, why);
                    o.logs = logs;
                    return o;
                }
            };
            match msg {
                FromWorker::Sdk { req } => {
                    let answer = broker.handle(&req, &mut logs, &mut unused_result).await;
                    if worker.stdin.write_all(&sdk_answer(answer)).await.is_err() {
                        worker.kill();
                        return Outcome::failed(
                            RunFailure::Crashed,
                            "the JavaScript worker died during an SDK call",
                        );
                    }
                }
                FromWorker::Done {
                    output,
                    error,
                    failure,
                } => {
                    if failure == Some(protocol::Failure::Memory) {
                        // The engine may be unsound after an out-of-memory: never reuse it.
                        worker.kill();
                    } else {
                        self.give_back(worker);
                    }
                    let failure = error.map(|e| {
                        let kind = match failure {
                            Some(protocol::Failure::Timeout) => RunFailure::Timeout,
                            Some(protocol::Failure::Memory) => RunFailure::Memory,
                            Some(protocol::Failure::OutputLimit) => RunFailure::OutputLimit,
                            Some(protocol::Failure::Crashed) => RunFailure::Crashed,
                            Some(protocol::Failure::Code) | None => RunFailure::Code,
                        };
                        (kind, e)
                    });
                    return Outcome {
                        output: if failure.is_none() {
                            Some(output.unwrap_or(Value::Null))
                        } else {
                            None
                        },
                        failure,
                        logs,
                        stderr: String::new(),
                        exit: None,
                    };
                }
            }
        }
    }
}
