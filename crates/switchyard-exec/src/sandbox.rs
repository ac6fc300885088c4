//! Isolation of child-process executors: what this host allows, probed once at start-up, and
//! the command line that puts one run inside it.
//!
//! Layers, each used when the probe shows it works:
//! - always: a cleared environment, an own process group killed as a whole at the deadline, the
//!   SDK channel as an inherited socket (file descriptor 3), never a path another process could
//!   open;
//! - `unshare` (namespaces): new network, PID and mount namespaces — no network of its own (the
//!   only way out is the SDK, brokered by the hub; abstract Unix sockets are per network
//!   namespace, so the host's are gone too) and its own processes only;
//! - `root`: `switchyard sandbox-exec` (the binary itself, `sandbox_exec.rs`) builds a new root
//!   from an allowlist and `pivot_root`s into it: the run sees the interpreter's trees, two files
//!   of `/etc`, four devices, its own `/proc` and its private tmpfs — nothing else of the host;
//! - `cgroups` (`cgroups.rs`): memory (swap off), processes and CPU per run, by the kernel;
//! - then `sandbox-exec` sets resource limits (`rlimits`), becomes the run's own unprivileged
//!   user (`uid`: one per concurrent run slot, so one run's processes never count against
//!   another's limit and the hub's files stay unreadable), applies Landlock and a seccomp filter
//!   (no `connect`, no socket but a Unix stream) and executes the interpreter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::cgroups::{Cgroups, RunGroup};

/// The first uid of the run slots: child-process run number `n` runs as `SLOT_UID_BASE + n`,
/// JavaScript worker `n` as `JS_UID_BASE + n`. These uids own no files on a normal host; the
/// range is documented in SECURITY.md.
pub const SLOT_UID_BASE: u32 = 200_000;
/// Child-process runs at once (each has its own uid); more wait for a free slot.
pub const DEFAULT_SLOTS: u32 = 64;
/// The first uid of the JavaScript workers (one per worker, like a child-process slot).
pub const JS_UID_BASE: u32 = SLOT_UID_BASE + DEFAULT_SLOTS;
/// JavaScript workers at once: a run waiting on `sdk.http` holds one, and a worker is one small
/// process, so there are more of them than child-process slots.
pub const JS_WORKER_SLOTS: u32 = 256;
/// The first uid of warm interpreters (one per interpreter started ahead of its run, held by
/// the run that takes it).
pub const WARM_UID_BASE: u32 = JS_UID_BASE + JS_WORKER_SLOTS;
/// Warm interpreters at most (the operator's `warm_interpreters` is bounded by it).
pub const WARM_SLOTS: u32 = 64;
/// The first uid of package installs (one per install at once).
pub const INSTALL_UID_BASE: u32 = WARM_UID_BASE + WARM_SLOTS;
/// Package installs at once.
pub const INSTALL_SLOTS: u32 = 4;
/// Default and largest size of a run's private temporary directory.
pub use switchyard_core::executor::{DEFAULT_TMP_MB, MAX_TMP_MB};
/// The descriptor number of the SDK channel in the child.
pub const SDK_FD: i32 = 3;

/// What the probe found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Isolation {
    /// Resource limits are applied (address space, CPU, files, processes).
    pub rlimits: bool,
    /// Children run as an unprivileged uid of their own.
    pub unprivileged_user: bool,
    /// Children get new network, PID and mount namespaces, with their own `/proc` and a
    /// private tmpfs on `/tmp`.
    pub namespaces: bool,
    /// Children start in a new root holding only the allowlist (`sandbox_exec::ROOT_TREES`…).
    pub root: bool,
    /// The cgroup version whose per-run limits (memory, processes, CPU) are in force, if any.
    pub cgroups: Option<&'static str>,
    /// Why there are no per-run cgroups, when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups_unavailable: Option<String>,
    /// Landlock confines the child's filesystem view.
    pub landlock: bool,
    /// A seccomp filter denies system calls user code never needs.
    pub seccomp: bool,
    /// The switchyard binary that confines children (`sandbox-exec`).
    #[serde(skip)]
    pub helper: Option<PathBuf>,
    /// The hub's cgroups for runs.
    #[serde(skip)]
    pub groups: Option<Arc<Cgroups>>,
}

/// How one child is to be confined, besides its resource limits.
#[derive(Debug, Clone, Default)]
pub struct Confine<'a> {
    /// The run's own uid (from its slot).
    pub uid: Option<u32>,
    /// The hub's staging directory holding the run's files (and the new root's mount point).
    pub stage: Option<&'a Path>,
    /// Size of the private temporary directory.
    pub tmp_mb: u32,
    /// Host paths the run needs read-only beyond the granted trees (an interpreter's prefix,
    /// when it lives outside them).
    pub ro: Vec<PathBuf>,
    /// The program is a host file to bind into the new root as it is (the worker binary).
    pub exe: bool,
    /// The run's cgroups, limits already set.
    pub cgroup: Option<&'a RunGroup>,
    /// Its only network is the hub's index proxy (a package install), reached through the
    /// forwarder the helper starts; stdin is the channel to the proxy.
    pub index_proxy: bool,
    /// A host directory bound read-write at `/out` (an install's output).
    pub out: Option<&'a Path>,
    /// The executor's installed packages, bound read-only at `/packages` in a new root.
    pub packages: Option<&'a Path>,
}

/// New network, PID and mount namespaces, the helper as PID 1 of its own.
const NAMESPACES: [&str; 6] = [
    "unshare",
    "--net",
    "--pid",
    "--mount",
    "--fork",
    "--kill-child",
];

/// The `unshare` command line: with a new root, the root's own `/proc` replaces `--mount-proc`.
fn unshare(new_root: bool) -> Vec<String> {
    let mut argv: Vec<String> = NAMESPACES.map(String::from).to_vec();
    if !new_root {
        argv.push("--mount-proc".into());
    }
    argv.push("--".into());
    argv
}

impl Isolation {
    /// A one-word summary for logs and `/readyz`.
    pub fn level(&self) -> String {
        let mut layers = Vec::new();
        for (on, name) in [
            (self.namespaces, "namespaces"),
            (self.root, "root"),
            (self.cgroups.is_some(), "cgroups"),
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

    /// Tries each layer and keeps the ones that work. `helper` is the switchyard binary.
    pub fn probe(helper: Option<&Path>) -> Isolation {
        let report = |argv: &[String]| -> serde_json::Value {
            Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                .unwrap_or_default()
        };
        let Some(helper) = helper else {
            return Isolation::default();
        };
        let h = helper.to_string_lossy().into_owned();
        let alone = report(
            &[
                &h,
                "sandbox-exec",
                "--probe",
                "--uid",
                &SLOT_UID_BASE.to_string(),
                "--rlimit",
                "nofile=64",
            ]
            .map(String::from),
        );
        let yes = serde_json::json!(true);
        let mut in_ns = unshare(false);
        in_ns.extend(
            [&h, "sandbox-exec", "--probe", "--tmp-mb", "1"]
                .iter()
                .map(|s| s.to_string()),
        );
        let namespaced = report(&in_ns);
        // The new root, built on an empty stage as a run's would be.
        let rooted = tempfile::Builder::new()
            .prefix("switchyard-probe-")
            .tempdir()
            .map(|stage| {
                let mut argv = unshare(true);
                argv.extend(
                    [
                        &h,
                        "sandbox-exec",
                        "--probe",
                        "--root",
                        "--tmp-mb",
                        "1",
                        "--stage",
                    ]
                    .map(String::from),
                );
                argv.push(stage.path().to_string_lossy().into_owned());
                argv.extend(["--uid".to_string(), SLOT_UID_BASE.to_string()]);
                report(&argv)["root"] == yes
            })
            .unwrap_or(false);
        let (groups, cgroups_unavailable) = match Cgroups::create() {
            Ok(g) => (Some(Arc::new(g)), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Isolation {
            rlimits: alone["rlimits"] == yes,
            unprivileged_user: alone["uid"] == yes,
            namespaces: namespaced["tmpfs"] == yes,
            root: rooted,
            cgroups: groups.as_ref().map(|g| g.version()),
            cgroups_unavailable,
            landlock: alone["landlock"] == yes,
            seccomp: alone["seccomp"] == yes,
            helper: alone.as_object().is_some().then(|| helper.to_path_buf()),
            groups,
        }
    }

    /// Whether runs get a new root (namespaces, the helper and the probe all said yes).
    pub fn new_root(&self) -> bool {
        self.root && self.namespaces && self.helper.is_some()
    }

    /// The directory the child works in: its private tmpfs when it has a mount namespace, else
    /// the staging directory itself.
    pub fn work_dir(&self, stage: &Path) -> PathBuf {
        if self.private_tmp() {
            PathBuf::from(crate::sandbox_exec::PRIVATE_TMP)
        } else {
            stage.to_path_buf()
        }
    }

    /// Where a run sees its executor's installed packages, kept at `dir` on the host.
    pub fn packages_dir(&self, dir: &Path) -> PathBuf {
        if self.new_root() {
            PathBuf::from(crate::sandbox_exec::PACKAGES_DIR)
        } else {
            dir.to_path_buf()
        }
    }

    /// Whether runs get a private tmpfs (and the staging directory stays the hub's).
    pub fn private_tmp(&self) -> bool {
        self.namespaces && self.helper.is_some()
    }

    /// The command line that runs `program args…` inside every available layer.
    pub fn wrap(
        &self,
        limits: &Limits,
        confine: &Confine<'_>,
        program: &str,
        args: &[String],
    ) -> Vec<String> {
        let mut cmd: Vec<String> = Vec::new();
        let rooted = self.new_root() && confine.stage.is_some();
        if rooted {
            cmd.extend(unshare(true));
        } else if self.namespaces {
            cmd.extend(unshare(false));
        }
        if let Some(helper) = &self.helper {
            cmd.push(helper.to_string_lossy().into_owned());
            cmd.push("sandbox-exec".into());
            if rooted {
                cmd.push("--root".into());
            }
            if confine.index_proxy {
                cmd.push("--index-proxy".into());
            }
            if let Some(out) = confine.out {
                cmd.extend(["--out".into(), out.to_string_lossy().into_owned()]);
            }
            if let Some(dir) = confine.packages {
                cmd.extend(["--packages".into(), dir.to_string_lossy().into_owned()]);
            }
            for dir in confine.cgroup.into_iter().flat_map(RunGroup::dirs) {
                cmd.extend(["--cgroup".into(), dir.to_string_lossy().into_owned()]);
            }
            for path in &confine.ro {
                cmd.extend(["--ro".into(), path.to_string_lossy().into_owned()]);
            }
            if confine.exe {
                cmd.extend(["--exe".into(), program.to_string()]);
            }
            if let Some(stage) = confine.stage {
                if self.private_tmp() {
                    cmd.extend([
                        "--tmp-mb".into(),
                        confine.tmp_mb.to_string(),
                        "--stage".into(),
                        stage.to_string_lossy().into_owned(),
                    ]);
                }
                cmd.push("--rw".into());
                cmd.push(self.work_dir(stage).to_string_lossy().into_owned());
            }
            if self.unprivileged_user
                && let Some(uid) = confine.uid
            {
                cmd.extend(["--uid".into(), uid.to_string()]);
            }
            if self.rlimits {
                let mut rl = |name: &str, v: u64| {
                    cmd.extend(["--rlimit".to_string(), format!("{name}={v}")]);
                };
                if let Some(bytes) = limits.address_space_bytes {
                    rl("as", bytes);
                }
                if let Some(cpu) = limits.cpu_seconds {
                    rl("cpu", cpu);
                }
                rl("fsize", limits.file_size_bytes);
                rl("nofile", 256);
                rl("nproc", u64::from(limits.processes));
                rl("core", 0);
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

/// Hands a path to a user (when children run as that user but see the hub's directory).
pub fn give_to(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
}

/// The uids of concurrent runs: each run (or JavaScript worker) holds one for its lifetime, so
/// the process limit (which the kernel counts per uid) and its cgroup are that run's alone.
#[derive(Clone)]
pub struct UidSlots {
    free: Arc<Mutex<Vec<u32>>>,
    permits: Arc<Semaphore>,
}

/// One run's uid; handed back when dropped.
pub struct UidSlot {
    pub uid: u32,
    free: Arc<Mutex<Vec<u32>>>,
    _permit: OwnedSemaphorePermit,
}

impl UidSlots {
    /// `count` uids from `base` on.
    pub fn new(base: u32, count: u32) -> UidSlots {
        UidSlots {
            free: Arc::new(Mutex::new((0..count).rev().map(|n| base + n).collect())),
            permits: Arc::new(Semaphore::new(count as usize)),
        }
    }

    /// A free slot now, if there is one.
    pub fn try_take(&self) -> Option<UidSlot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let uid = self.free.lock().ok()?.pop()?;
        Some(UidSlot {
            uid,
            free: self.free.clone(),
            _permit: permit,
        })
    }

    /// Waits up to `wait` for a free slot.
    pub async fn take(&self, wait: Duration) -> Option<UidSlot> {
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let uid = self.free.lock().ok()?.pop()?;
        Some(UidSlot {
            uid,
            free: self.free.clone(),
            _permit: permit,
        })
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        if let Ok(mut free) = self.free.lock() {
            free.push(self.uid);
        }
    }
}

/// The default budget: half of the memory this hub may use (the machine's, or its cgroup's
/// limit when that is lower), in MiB.
pub fn default_budget_mb() -> u32 {
    let total_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(4 << 20);
    let mut total = total_kb * 1024;
    // The hub's own cgroup's limit (v1 `memory` line, or the v2 path), when it has one.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = path.trim().trim_start_matches('/');
        let file = if list.is_empty() {
            Path::new("/sys/fs/cgroup").join(path).join("memory.max")
        } else if list.split(',').any(|c| c == "memory") {
            Path::new("/sys/fs/cgroup/memory")
                .join(path)
                .join("memory.limit_in_bytes")
        } else {
            continue;
        };
        if let Some(v) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            total = total.min(v);
        }
    }
    u32::try_from((total / 2) >> 20).unwrap_or(u32::MAX)
}
