//! Child-process executors (Python, PHP): write the run directory, start the interpreter inside
//! the sandbox, serve its SDK calls, enforce the deadline and the output caps.

use crate::capacity::Capacity;
use crate::channel::{Channel, ChannelEnd};
use crate::sandbox::{Confine, Isolation, Limits, SDK_FD, give_to};
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

const PY_SDK: &str = include_str!("../sdk/switchyard_sdk.py");
const PY_RUNNER: &str = include_str!("../sdk/runner.py");
const PHP_SDK: &str = include_str!("../sdk/switchyard_sdk.php");
const PHP_RUNNER: &str = include_str!("../sdk/runner.php");
const NODE_SDK: &str = include_str!("../sdk/switchyard_sdk.js");
const NODE_RUNNER: &str = include_str!("../sdk/runner.js");

/// The interpreter and files of one language.
#[derive(Clone)]
pub(crate) struct Runtime {
    program: &'static str,
    args: Vec<String>,
    sdk_file: &'static str,
    sdk: &'static str,
    runner_file: &'static str,
    runner: &'static str,
    main_file: &'static str,
}

/// The interpreter and files of `language`; with `check`, the command line only compiles the
/// code (a syntax error fails, nothing of it runs).
fn runtime(language: Language, memory_mb: u32, check: bool) -> Option<Runtime> {
    let rt = runtime_to_run(language, memory_mb)?;
    if !check {
        return Some(rt);
    }
    let args = match language {
        // PHP's own lint: parses main.php, runs nothing.
        Language::Php => ["-n", "-d", "display_errors=stderr", "-l", "main.php"]
            .map(String::from)
            .to_vec(),
        _ => rt.args.clone(),
    };
    Some(Runtime { args, ..rt })
}

pub(crate) fn runtime_to_run(language: Language, memory_mb: u32) -> Option<Runtime> {
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

/// Whether the interpreter of `language` is installed; `Err` names what is missing.
pub fn interpreter_available(language: Language) -> Result<(), ExecError> {
    interpreter_path(language).map(|_| ())
}

/// Where the interpreter of `language` really is (symlinks resolved, so `php` through
/// `/etc/alternatives` names the binary itself: a run's root has no `/etc/alternatives`).
pub(crate) fn interpreter_path(language: Language) -> Result<PathBuf, ExecError> {
    let Some(rt) = runtime(language, 0, false) else {
        return Err(ExecError::Unavailable(format!(
            "{} does not run as a child process",
            language.as_str()
        )));
    };
    use std::os::unix::fs::PermissionsExt;
    SEARCH_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(rt.program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .and_then(|p| p.canonicalize().ok())
        .ok_or_else(|| {
            ExecError::Unavailable(format!(
                "{} executors need `{}`, which is not installed on this instance",
                language.as_str(),
                rt.program
            ))
        })
}

/// What a run must see of the host besides the granted trees to start `program`: nothing when
/// it lives under `/usr`, else its installation prefix (`/opt/node/bin/node` → `/opt/node`).
pub(crate) fn program_tree(program: &Path) -> Vec<PathBuf> {
    if crate::sandbox_exec::ROOT_TREES
        .iter()
        .any(|t| program.starts_with(t))
    {
        return Vec::new();
    }
    let prefix = program.parent().and_then(Path::parent);
    match prefix {
        Some(p) if p != Path::new("/") => vec![p.to_path_buf()],
        _ => vec![program.to_path_buf()],
    }
}

/// Memory the interpreter itself takes before user code runs (measured: Python 13 MB, PHP
/// 15 MB, Node.js 40 MB resident), with room for what it loads on demand.
fn interpreter_mb(language: Language) -> u32 {
    match language {
        Language::Node => 64,
        _ => 32,
    }
}

/// The kernel's memory limit of a run, in MiB: what the code may use (`memory_mb`), its
/// temporary files (a tmpfs is memory) and the interpreter itself.
pub fn kernel_memory_mb(language: Language, memory_mb: u32, tmp_mb: u32) -> u32 {
    memory_mb + tmp_mb + interpreter_mb(language)
}

/// Where interpreters are looked for (also the children's PATH).
const SEARCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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
                failed => {
                    spawned.discard();
                    return match failed {
                        Err(_) => Outcome::failed(
                            RunFailure::Timeout,
                            format!(
                                "timeout: the code ran longer than {} ms and was killed",
                                crate::whole_ms(timeout)
                            ),
                        ),
                        Ok(Err(e)) => Outcome::failed(
                            RunFailure::Crashed,
                            format!("the warm interpreter did not take its code: {e}"),
                        ),
                        Ok(Ok(())) => unreachable!(),
                    };
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
    /// The executor's installed packages.
    packages: Option<PathBuf>,
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
    memory_mb: u32,
    tmp_mb: u32,
    language: Language,
    check: bool,
}

impl Staged {
    fn launch(&self) -> Launch<'_> {
        Launch {
            rt: &self.rt,
            program: &self.program,
            language: self.language,
            memory_mb: self.memory_mb,
            tmp_mb: self.tmp_mb,
            kernel_mb: self.kernel_mb,
            uid: self.room.slot.uid,
            dir: self.dir.path(),
            work: &self.work,
            check: self.check,
            warm: false,
            packages: self.packages.as_deref(),
        }
    }
}

/// What the sandbox starts: an interpreter of one shape, as one uid, on one staging directory.
pub(crate) struct Launch<'a> {
    pub rt: &'a Runtime,
    pub program: &'a Path,
    pub language: Language,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    pub kernel_mb: u32,
    pub uid: u32,
    pub dir: &'a Path,
    pub work: &'a Path,
    pub check: bool,
    /// It waits for its code on the SDK channel (a warm interpreter).
    pub warm: bool,
    /// Installed packages to bind read-only and name in `SWITCHYARD_PACKAGES`.
    pub packages: Option<&'a Path>,
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
        .and_then(|pool| pool.take(shape))
    {
        let (spawned, hub_end, dir, slot) = w.into_parts();
        let staged = Staged {
            rt,
            program,
            packages: spec.packages.map(Path::to_path_buf),
            room: share.with(slot),
            kernel_mb,
            work: isolation.work_dir(dir.path()),
            dir,
            input_json,
            main_source,
            memory_mb: spec.memory_mb,
            tmp_mb: spec.tmp_mb,
            language,
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
        packages: spec.packages.map(Path::to_path_buf),
        room,
        kernel_mb,
        dir,
        work,
        input_json,
        main_source,
        memory_mb: spec.memory_mb,
        tmp_mb: spec.tmp_mb,
        language,
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
    let language = staged.language;
    let limits = Limits {
        // V8 reserves far more address space than it uses; its heap limit and the cgroup bound
        // Node instead.
        address_space_bytes: (language != Language::Node)
            .then(|| (u64::from(staged.memory_mb) + 96) * 1024 * 1024),
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
        tmp_mb: staged.tmp_mb,
        ro: program_tree(staged.program),
        packages: staged.packages,
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
            staged
                .packages
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
    let Staged {
        kernel_mb,
        memory_mb,
        tmp_mb,
        language,
        check,
        ..
    } = *staged;
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

/// Writes the run's files: the SDK and the runner, and the code and its input unless a warm
/// interpreter is to be sent them.
pub(crate) fn write_run_dir(
    dir: &Path,
    rt: &Runtime,
    code: Option<(&str, &str)>,
    owner: Option<u32>,
) -> std::io::Result<()> {
    std::fs::write(dir.join(rt.sdk_file), rt.sdk)?;
    std::fs::write(dir.join(rt.runner_file), rt.runner)?;
    let mut files = vec![rt.sdk_file, rt.runner_file];
    if let Some((main, input)) = code {
        std::fs::write(dir.join(rt.main_file), main)?;
        std::fs::write(dir.join("input.json"), input)?;
        files.extend([rt.main_file, "input.json"]);
    }
    if let Some(uid) = owner {
        give_to(dir, uid)?;
        for f in files {
            give_to(&dir.join(f), uid)?;
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
