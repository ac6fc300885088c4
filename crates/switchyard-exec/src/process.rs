//! Child-process runs (Python, PHP, Node.js): write the run directory, start the interpreter
//! inside the sandbox (or take a warm one), serve its SDK calls, enforce the deadline and the
//! output caps. The languages themselves are in `runtime.rs`.

use crate::capacity::Capacity;
use crate::channel::{Channel, ChannelEnd};
use crate::runtime::{
    Runtime, SEARCH_PATH, interpreter_mb, interpreter_path, kernel_memory_mb, program_tree,
    runtime, write_run_dir,
};
use crate::sandbox::{Confine, Isolation, Limits, SDK_FD};
use crate::warm::{Shape, WarmPool};
use crate::{Broker, ExecError, OUTPUT_CAP, Outcome, RunFailure, SetupError, sdk_answer};
use command_fds::{CommandFdExt, FdMapping};
use serde_json::Value;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchyard_core::executor::Language;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads a pipe to the end, keeping at most [`OUTPUT_CAP`] bytes; `Err` once the cap is passed.
pub(crate) async fn read_capped(
    mut r: impl tokio::io::AsyncRead + Unpin,
) -> Result<Vec<u8>, Vec<u8>> {
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

/// What one child-process run needs besides its code.
pub struct RunSpec<'a> {
    pub language: Language,
    pub source: &'a str,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    pub input: &'a Value,
    pub timeout: Duration,
    /// Only compile the code: success is a clean compile, failure names the error and line.
    pub check: bool,
    /// The executor's installed packages, bound read-only into the run's root.
    pub packages: Option<&'a Path>,
}

/// Runs code in a child process and reports what happened: [`stage`] its files and room,
/// [`spawn`] the interpreter in the sandbox, [`supervise`] it (its SDK calls, the deadline, the
/// caller going away), [`interpret`] how it ended.
///
/// A run (not a compile check) takes a warm interpreter of its shape when `warm` has one ready:
/// a process started in its own sandbox ahead of time, waiting for its code, used for this run
/// alone and never again.
pub async fn run(
    isolation: &Isolation,
    capacity: &Capacity,
    warm: Option<&WarmPool>,
    spec: RunSpec<'_>,
    broker: &Broker<'_>,
) -> Outcome {
    let started = std::time::Instant::now();
    let (staged, prepared) = match stage(isolation, capacity, warm, &spec, broker).await {
        Ok(s) => s,
        Err((kind, why)) => return Outcome::failed(kind, why),
    };
    let timeout = spec.timeout.saturating_sub(started.elapsed());
    let (spawned, hub_end) = match prepared {
        Prepared::Cold(channel) => {
            match spawn(isolation, &staged.launch(), channel.child_end, timeout).await {
                Ok(s) => (s, channel.hub_end),
                Err(why) => return Outcome::failed(RunFailure::Crashed, why.to_string()),
            }
        }
        Prepared::Warm(spawned, mut hub_end) => {
            // Its code and input, on the channel it waits on; the SDK channel is quiet until
            // the code makes its first call.
            let go = warm_go(&staged);
            match tokio::time::timeout(timeout, hub_end.write_all(&go)).await {
                Ok(Ok(())) => (*spawned, hub_end),
                Ok(Err(e)) => {
                    spawned.discard();
                    return Outcome::failed(
                        RunFailure::Crashed,
                        format!("the warm interpreter did not take its code: {e}"),
                    );
                }
                Err(_) => {
                    spawned.discard();
                    return Outcome::failed(
                        RunFailure::Timeout,
                        format!(
                            "timeout: the code ran longer than {} ms and was killed",
                            crate::whole_ms(timeout)
                        ),
                    );
                }
            }
        }
    };
    let ended = supervise(spawned, hub_end, &staged, broker, timeout).await;
    interpret(&staged, ended, timeout)
}

/// What a warm interpreter is sent to start: its code and its input, as one JSON line.
fn warm_go(staged: &Staged) -> Vec<u8> {
    let mut go = serde_json::json!({"main": staged.main_source, "input": staged.input_json})
        .to_string()
        .into_bytes();
    go.push(b'\n');
    go
}

/// A staged run's interpreter: one to start, or a warm one waiting for its code.
enum Prepared {
    Cold(SdkChannel),
    Warm(Box<Spawned>, tokio::net::UnixStream),
}

/// The SDK channel: one end of a socket pair for the hub, the other inherited by the child as
/// descriptor 3. It has no name, so no other process can connect to it.
pub(crate) struct SdkChannel {
    pub(crate) hub_end: tokio::net::UnixStream,
    pub(crate) child_end: std::os::unix::net::UnixStream,
}

/// A run made ready: its room, its files in a staging directory, its SDK channel.
struct Staged {
    rt: Runtime,
    program: PathBuf,
    /// Its language, memory, temporary space and packages.
    shape: Shape,
    /// The run's slot (its uid) and its memory in the budget, held until it ends.
    room: crate::capacity::ChildRoom,
    kernel_mb: u32,
    /// The hub's staging directory (mode 0700): with a mount namespace the sandbox copies it
    /// into the run's private tmpfs and the child never sees this path.
    dir: tempfile::TempDir,
    /// The run's working directory as the child sees it.
    work: PathBuf,
    input_json: String,
    /// The code as the interpreter reads it (a warm one is sent it).
    main_source: String,
    check: bool,
}

impl Staged {
    fn launch(&self) -> Launch<'_> {
        Launch {
            rt: &self.rt,
            program: &self.program,
            shape: &self.shape,
            kernel_mb: self.kernel_mb,
            uid: self.room.slot.uid,
            dir: self.dir.path(),
            work: &self.work,
            check: self.check,
            warm: false,
        }
    }
}

/// What the sandbox starts: an interpreter of one shape, as one uid, on one staging directory.
pub(crate) struct Launch<'a> {
    pub rt: &'a Runtime,
    pub program: &'a Path,
    /// Its language, memory, temporary space and installed packages (bound read-only and
    /// named in `SWITCHYARD_PACKAGES`).
    pub shape: &'a Shape,
    pub kernel_mb: u32,
    pub uid: u32,
    pub dir: &'a Path,
    pub work: &'a Path,
    pub check: bool,
    /// It waits for its code on the SDK channel (a warm interpreter).
    pub warm: bool,
}

/// Finds the interpreter, waits for room (a run slot with its own uid, so its process limit
/// is not shared with any other run, and its whole kernel memory limit in the hub's budget,
/// within the organization's shares: runs wait their turn, never overcommit), writes the run
/// directory and opens the SDK channel.
async fn stage(
    isolation: &Isolation,
    capacity: &Capacity,
    warm: Option<&WarmPool>,
    spec: &RunSpec<'_>,
    broker: &Broker<'_>,
) -> Result<(Staged, Prepared), crate::Failed> {
    let crashed = |why: String| (RunFailure::Crashed, why);
    let language = spec.language;
    let rt = runtime(language, spec.memory_mb, spec.check).ok_or_else(|| {
        crashed(format!(
            "{} code does not run as a child process",
            language.as_str()
        ))
    })?;
    let program = interpreter_path(language).map_err(|e| crashed(e.to_string()))?;
    let kernel_mb = kernel_memory_mb(language, spec.memory_mb, spec.tmp_mb);
    let started = std::time::Instant::now();
    let share = capacity
        .child_share(broker.org.as_str(), kernel_mb, spec.timeout)
        .await
        .map_err(|why| (RunFailure::NoRoom, why.to_string()))?;
    let source = spec.source;
    let main_source = if language == Language::Php && !source.trim_start().starts_with("<?php") {
        format!("<?php\n{source}")
    } else {
        source.to_string()
    };
    let input_json = spec.input.to_string();
    let shape = Shape {
        language,
        memory_mb: spec.memory_mb,
        tmp_mb: spec.tmp_mb,
        packages: spec.packages.map(Path::to_path_buf),
    };
    if let Some(w) = warm
        .filter(|_| !spec.check)
        .and_then(|pool| pool.take(&shape))
    {
        let (spawned, hub_end, dir, slot) = w.into_parts();
        let staged = Staged {
            rt,
            program,
            shape,
            room: share.with(slot),
            kernel_mb,
            work: isolation.work_dir(dir.path()),
            dir,
            input_json,
            main_source,
            check: false,
        };
        return Ok((staged, Prepared::Warm(Box::new(spawned), hub_end)));
    }
    let room = capacity
        .child_slot(share, spec.timeout.saturating_sub(started.elapsed()))
        .await
        .map_err(|why| (RunFailure::NoRoom, why.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("switchyard-run-")
        .tempdir()
        .map_err(|e| crashed(format!("cannot create the run directory: {e}")))?;
    let owner = (isolation.unprivileged_user && !isolation.private_tmp()).then_some(room.slot.uid);
    write_run_dir(dir.path(), &rt, Some((&main_source, &input_json)), owner)
        .map_err(|e| crashed(format!("cannot prepare the run directory: {e}")))?;
    let work = isolation.work_dir(dir.path());
    let channel =
        SdkChannel::open().map_err(|e| crashed(format!("cannot open the SDK channel: {e}")))?;
    let staged = Staged {
        rt,
        program,
        shape,
        room,
        kernel_mb,
        dir,
        work,
        input_json,
        main_source,
        check: spec.check,
    };
    Ok((staged, Prepared::Cold(channel)))
}

impl SdkChannel {
    pub(crate) fn open() -> std::io::Result<SdkChannel> {
        let (hub_end, child_end) = std::os::unix::net::UnixStream::pair()?;
        hub_end.set_nonblocking(true)?;
        Ok(SdkChannel {
            hub_end: tokio::net::UnixStream::from_std(hub_end)?,
            child_end,
        })
    }
}

/// The interpreter started in the sandbox, in its slot's cgroup.
pub(crate) struct Spawned {
    child: tokio::process::Child,
    pgid: Option<u32>,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    group: Option<crate::cgroups::RunGroup>,
    /// The cgroup's OOM kills before the run: one more after it is this run's.
    ooms_before: u64,
}

impl Spawned {
    /// Whether the interpreter has ended (a warm one waiting for its code must not have).
    pub(crate) fn has_ended(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the interpreter and whatever it started, unused.
    pub(crate) fn discard(mut self) {
        kill_group(self.pgid);
        let _ = self.child.start_kill();
        if let Some(g) = &self.group {
            g.kill_all();
        }
    }
}

/// Sets the slot's cgroup limits (memory with swap off, processes, CPU) and the resource
/// limits, and starts the interpreter confined (`sandbox.rs`) with the SDK channel as its
/// descriptor 3.
pub(crate) async fn spawn(
    isolation: &Isolation,
    staged: &Launch<'_>,
    child_end: std::os::unix::net::UnixStream,
    timeout: Duration,
) -> Result<Spawned, SetupError> {
    let Shape {
        language,
        memory_mb,
        tmp_mb,
        ref packages,
    } = *staged.shape;
    let limits = Limits {
        // V8 reserves far more address space than it uses; its heap limit and the cgroup bound
        // Node instead.
        address_space_bytes: (language != Language::Node)
            .then(|| (u64::from(memory_mb) + 96) * 1024 * 1024),
        cpu_seconds: Some(timeout.as_secs() + 1),
        file_size_bytes: 16 * 1024 * 1024,
        // Node starts a dozen threads, and threads count against this limit.
        processes: if language == Language::Node { 128 } else { 32 },
    };
    let uid = staged.uid;
    let group = isolation
        .groups
        .as_ref()
        .map(|g| g.slot(uid))
        .transpose()
        .map_err(SetupError::of("cannot prepare the run's cgroup"))?;
    // (The slot's last run was emptied out when it ended; a process still exiting is waited for.)
    if let Some(g) = &group {
        g.limit_when_free(
            u64::from(staged.kernel_mb) << 20,
            u64::from(limits.processes),
        )
        .await
        .map_err(SetupError::of("cannot set the run's limits"))?;
    }
    let ooms_before = group.as_ref().map_or(0, |g| g.oom_kills());
    let confine = Confine {
        uid: Some(uid),
        stage: Some(staged.dir),
        tmp_mb,
        ro: program_tree(staged.program),
        packages: packages.as_deref(),
        exe: false,
        cgroup: group.as_ref(),
        index_proxy: false,
        out: None,
    };
    let rt = staged.rt;
    let argv = isolation.wrap(
        &limits,
        &confine,
        &staged.program.to_string_lossy(),
        &rt.args,
    );
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(staged.dir)
        .env_clear()
        .env("PATH", SEARCH_PATH)
        .env("HOME", staged.work)
        .env("TMPDIR", staged.work)
        .env("LANG", "C.UTF-8")
        .env("SDK", staged.work.join(rt.sdk_file))
        .env("SWITCHYARD_SDK_FD", SDK_FD.to_string())
        .env("SWITCHYARD_CHECK", if staged.check { "1" } else { "" })
        .env("SWITCHYARD_WARM", if staged.warm { "1" } else { "" })
        .env(
            "SWITCHYARD_PACKAGES",
            packages
                .as_deref()
                .map(|d| isolation.packages_dir(d).into_os_string())
                .unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: OwnedFd::from(child_end),
        child_fd: SDK_FD,
    }])
    .map_err(SetupError::of("cannot pass the SDK channel"))?;
    let spawned = cmd.spawn();
    // The command holds the child's end of the channel: close ours so the hub sees the end.
    drop(cmd);
    let mut child = spawned.map_err(SetupError::of(format!("cannot start {}", rt.program)))?;
    let pgid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SetupError::of("starting the child")(
            "its pipes are missing",
        ));
    };
    Ok(Spawned {
        child,
        pgid,
        stdin,
        stdout,
        stderr,
        group,
        ooms_before,
    })
}
/// How the wait for the child ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    /// The caller went away.
    Cancelled,
    /// The SDK channel passed a limit; the text names it.
    Limit(String),
}

/// What a finished child left: how the wait ended, what it said through the SDK and its pipes
/// (each `…_over` when it passed [`OUTPUT_CAP`]), and whether the kernel killed it for memory.
struct Watched {
    ended: Ended,
    logs: Vec<String>,
    /// What `main(input, sdk)` answered through the SDK, if it did.
    result: Option<Value>,
    stdout: String,
    stdout_over: bool,
    stderr: String,
    stderr_over: bool,
    oom_killed: bool,
}

/// Feeds the child its input, answers its SDK calls and waits until it exits, passes a limit,
/// runs out of time or its caller goes away; then kills what is left of it and collects what
/// it said.
async fn supervise(
    spawned: Spawned,
    hub_end: tokio::net::UnixStream,
    staged: &Staged,
    broker: &Broker<'_>,
    timeout: Duration,
) -> Watched {
    let Spawned {
        mut child,
        pgid,
        mut stdin,
        stdout,
        stderr,
        group,
        ooms_before,
    } = spawned;
    let input_json = staged.input_json.clone();
    let feed = async move {
        let _ = stdin.write_all(input_json.as_bytes()).await;
        let _ = stdin.shutdown().await;
    };
    let out_task = tokio::spawn(read_capped(stdout));
    let err_task = tokio::spawn(read_capped(stderr));
    let mut logs = Vec::new();
    let mut result: Option<Value> = None;
    let ended = {
        let serve = serve_sdk(hub_end, broker, &mut logs, &mut result);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::pin!(serve);
        let mut fed = Box::pin(feed);
        let mut feeding = true;
        let mut serving = true;
        loop {
            tokio::select! {
                s = child.wait() => break Ended::Exited(s),
                _ = &mut fed, if feeding => feeding = false,
                limit = &mut serve, if serving => match limit {
                    Some(why) => break Ended::Limit(why),
                    None => serving = false,
                },
                _ = &mut deadline => break Ended::TimedOut,
                _ = broker.cancel.cancelled() => break Ended::Cancelled,
            }
        }
    };
    kill_group(pgid);
    let _ = child.wait().await;
    // What the kernel did to the run: killed for memory, or anything left in its cgroup.
    let oom_killed = group.as_ref().is_some_and(|g| g.oom_kills() > ooms_before);
    if let Some(g) = &group {
        g.kill_all();
    }
    let text = |r: Result<Vec<u8>, Vec<u8>>| match r {
        Ok(b) => (String::from_utf8_lossy(&b).into_owned(), false),
        Err(b) => (String::from_utf8_lossy(&b).into_owned(), true),
    };
    let (stdout, stdout_over) = text(out_task.await.unwrap_or(Ok(Vec::new())));
    let (stderr, stderr_over) = text(err_task.await.unwrap_or(Ok(Vec::new())));
    Watched {
        ended,
        logs,
        result,
        stdout,
        stdout_over,
        stderr,
        stderr_over,
        oom_killed,
    }
}

/// What the run did, from how the child ended: the kernel's memory kill, the deadline, a
/// limit, the caller leaving, a failed compile, an exit status naming the error, or the output
/// (through the SDK, else the JSON it printed).
fn interpret(staged: &Staged, w: Watched, timeout: Duration) -> Outcome {
    let (kernel_mb, check) = (staged.kernel_mb, staged.check);
    let Shape {
        language,
        memory_mb,
        tmp_mb,
        ..
    } = staged.shape;
    let exit = match &w.ended {
        Ended::Exited(Ok(s)) => s.code(),
        _ => None,
    };
    let mut outcome = Outcome {
        output: None,
        failure: None,
        logs: w.logs,
        stderr: w.stderr.clone(),
        exit,
    };
    if w.oom_killed {
        outcome.fail(RunFailure::Memory, format!(
            "memory limit: the run used more than its {kernel_mb} MB ({memory_mb} MB for the code \
             (`memory_mb`), {tmp_mb} MB of temporary files, {} MB for the interpreter) and the kernel stopped it",
            interpreter_mb(language)
        ));
        return outcome;
    }
    match w.ended {
        Ended::TimedOut => {
            outcome.fail(
                RunFailure::Timeout,
                format!(
                    "timeout: the code ran longer than {} ms and was killed",
                    crate::whole_ms(timeout)
                ),
            );
            return outcome;
        }
        Ended::Limit(why) => {
            outcome.fail(RunFailure::OutputLimit, why);
            return outcome;
        }
        Ended::Cancelled => {
            outcome.fail(RunFailure::Cancelled, crate::runner::CANCELLED);
            return outcome;
        }
        Ended::Exited(_) => {}
    }
    let (stdout_text, stderr_text) = (w.stdout, w.stderr);
    if check {
        if exit != Some(0) {
            outcome.fail(
                RunFailure::Code,
                compile_error(&stderr_text, &stdout_text, exit),
            );
        }
        return outcome;
    }
    if w.stdout_over || w.stderr_over {
        outcome.fail(
            RunFailure::OutputLimit,
            "output limit: the code printed more than 1 MiB and was killed",
        );
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
            let (kind, reason) = if last.contains("MemoryError")
                || last.contains("Allowed memory size")
                || last.contains("heap out of memory")
            {
                (
                    RunFailure::Memory,
                    format!("memory limit: the code needed more than {memory_mb} MB ({last})"),
                )
            } else if last.is_empty() {
                (
                    RunFailure::Code,
                    format!("the code exited with status {code}"),
                )
            } else {
                (
                    RunFailure::Code,
                    format!("the code exited with status {code}: {last}"),
                )
            };
            outcome.fail(kind, reason);
            return outcome;
        }
        None => {
            outcome.fail(
                RunFailure::Crashed,
                "the code was killed by a signal (CPU, memory or process limit)",
            );
            return outcome;
        }
    }
    match w.result {
        Some(v) => {
            // main(input, sdk) answered through the SDK: stdout is log output.
            outcome.logs.extend(stdout_text.lines().map(str::to_string));
            outcome.output = Some(v);
        }
        None => {
            match serde_json::from_str::<Value>(stdout_text.trim()) {
                Ok(v) => outcome.output = Some(v),
                Err(_) if stdout_text.trim().is_empty() => {
                    outcome.fail(RunFailure::Code, "the code printed no output (print one JSON value, or define main(input, sdk))");
                }
                Err(e) => outcome.fail(RunFailure::Code, format!("the output is not JSON: {e}")),
            }
        }
    }
    outcome
}

/// What an interpreter said about code that does not compile: the first line naming an error
/// (stderr first), else the last line said.
fn compile_error(stderr: &str, stdout: &str, exit: Option<i32>) -> String {
    let lines = || stderr.lines().chain(stdout.lines()).map(str::trim);
    lines()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or_else(|| lines().rfind(|l| !l.is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("the interpreter exited with {exit:?}"))
}

pub(crate) fn kill_group(pgid: Option<u32>) {
    if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Serves SDK requests from the child until it closes the channel, or passes a limit: then
/// the answer names it and the caller kills the child.
async fn serve_sdk(
    stream: tokio::net::UnixStream,
    broker: &Broker<'_>,
    logs: &mut Vec<String>,
    result: &mut Option<Value>,
) -> Option<String> {
    let (r, mut w) = stream.into_split();
    let mut channel = Channel::new(r);
    loop {
        let line = match channel.next().await {
            Ok(line) => line,
            Err(ChannelEnd::Closed) => return None,
            Err(ChannelEnd::Limit(why)) => return Some(why),
        };
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(req) => broker.handle(&req, logs, result).await,
            Err(e) => Err(ExecError::Invalid(format!("malformed SDK request: {e}"))),
        };
        if w.write_all(&sdk_answer(answer)).await.is_err() {
            return None;
        }
    }
}
