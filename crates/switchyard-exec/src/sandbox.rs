//! Isolation of child-process executors: what this host allows, probed once at start-up.
//!
//! Layers, each used when the probe shows it works:
//! - always: a cleared environment, a private temporary directory as the working directory,
//!   resource limits through `prlimit` (address space, CPU seconds, file size, open files,
//!   processes, no core dumps), an own process group killed as a whole at the deadline;
//! - `setpriv`: the child runs as the unprivileged user 65534, so the process limit binds (it
//!   does not bind root) and the hub's data dir and master key (mode 0700/0600) are unreadable;
//! - `unshare`: new network and PID namespaces — the child has no network of its own (its only
//!   way out is the SDK, brokered by the hub) and every process it starts dies with it;
//! - `switchyard sandbox-exec`: Landlock (only system directories readable, only the run
//!   directory writable) and a seccomp filter, applied by the child to itself before it
//!   executes the interpreter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The unprivileged user and group children run as.
pub const SANDBOX_UID: u32 = 65534;

/// What the probe found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Isolation {
    /// `prlimit` is available (resource limits).
    pub rlimits: bool,
    /// Children run as uid 65534.
    pub unprivileged_user: bool,
    /// Children get new network and PID namespaces.
    pub namespaces: bool,
    /// Landlock confines the child's filesystem view.
    pub landlock: bool,
    /// A seccomp filter denies system calls user code never needs.
    pub seccomp: bool,
    /// The switchyard binary that applies Landlock and seccomp (`sandbox-exec`).
    #[serde(skip)]
    pub helper: Option<PathBuf>,
}

impl Isolation {
    /// A one-word summary for logs and `/readyz`.
    pub fn level(&self) -> String {
        let mut layers = Vec::new();
        for (on, name) in [
            (self.namespaces, "namespaces"),
            (self.unprivileged_user, "uid"),
            (self.rlimits, "rlimits"),
            (self.landlock, "landlock"),
            (self.seccomp, "seccomp"),
        ] {
            if on {
                layers.push(name);
            }
        }
        if layers.is_empty() {
            "process".to_string()
        } else {
            layers.join("+")
        }
    }

    /// Tries each layer with `true` and keeps the ones that work.
    /// `helper` is the switchyard binary (its `sandbox-exec` applies Landlock and seccomp).
    pub fn probe(helper: Option<&Path>) -> Isolation {
        let works = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let uid = format!("--reuid={SANDBOX_UID}");
        let gid = format!("--regid={SANDBOX_UID}");
        let confined = helper
            .and_then(|h| {
                Command::new(h)
                    .args(["sandbox-exec", "--probe"])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .ok()
            })
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .unwrap_or_default();
        let landlock = confined["landlock"] == serde_json::json!(true);
        let seccomp = confined["seccomp"] == serde_json::json!(true);
        Isolation {
            landlock,
            seccomp,
            helper: if landlock || seccomp {
                helper.map(Path::to_path_buf)
            } else {
                None
            },
            rlimits: works(&["prlimit", "--nofile=64", "--", "true"]),
            unprivileged_user: works(&["setpriv", &uid, &gid, "--clear-groups", "--", "true"]),
            namespaces: works(&[
                "unshare",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                "true",
            ]),
        }
    }

    /// The command line that runs `program args…` inside every available layer.
    pub fn wrap(
        &self,
        limits: &Limits,
        program: &str,
        args: &[String],
        rw_dir: Option<&Path>,
    ) -> Vec<String> {
        let mut cmd: Vec<String> = Vec::new();
        if self.namespaces {
            cmd.extend(
                ["unshare", "--net", "--pid", "--fork", "--kill-child", "--"].map(String::from),
            );
        }
        if self.unprivileged_user {
            cmd.extend([
                "setpriv".to_string(),
                format!("--reuid={SANDBOX_UID}"),
                format!("--regid={SANDBOX_UID}"),
                "--clear-groups".to_string(),
                "--".to_string(),
            ]);
        }
        if self.rlimits {
            cmd.push("prlimit".into());
            if let Some(bytes) = limits.address_space_bytes {
                cmd.push(format!("--as={bytes}"));
            }
            if let Some(cpu) = limits.cpu_seconds {
                cmd.push(format!("--cpu={cpu}"));
            }
            cmd.push(format!("--fsize={}", limits.file_size_bytes));
            cmd.push("--nofile=256".into());
            cmd.push(format!("--nproc={}", limits.processes));
            cmd.push("--core=0".into());
            cmd.push("--".into());
        }
        if let Some(helper) = &self.helper {
            cmd.push(helper.to_string_lossy().into_owned());
            cmd.push("sandbox-exec".into());
            if let Some(dir) = rw_dir {
                cmd.push("--rw".into());
                cmd.push(dir.to_string_lossy().into_owned());
            }
            cmd.push("--".into());
        }
        cmd.push(program.to_string());
        cmd.extend(args.iter().cloned());
        cmd
    }
}

/// Resource limits of one child.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Virtual memory; `None` for runtimes that reserve huge address ranges up front.
    pub address_space_bytes: Option<u64>,
    /// CPU seconds; `None` for long-lived workers, which the hub bounds by wall-clock instead.
    pub cpu_seconds: Option<u64>,
    pub file_size_bytes: u64,
    pub processes: u32,
}

/// Hands the run directory to the sandbox user (when children run as that user).
pub fn give_to_sandbox_user(path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(SANDBOX_UID), Some(SANDBOX_UID))
}
