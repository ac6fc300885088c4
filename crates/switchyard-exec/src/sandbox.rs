//! Isolation of child-process executors: what this host allows, probed once at start-up, and
//! the command line that puts one run inside it.
//!
//! Layers, each used when the probe shows it works:
//! - always: a cleared environment, an own process group killed as a whole at the deadline, the
//!   SDK channel as an inherited socket (file descriptor 3), never a path another process could
//!   open;
//! - `unshare` (namespaces): new network, PID and mount namespaces — no network of its own (the
//!   only way out is the SDK, brokered by the hub), its own `/proc` showing only its own
//!   processes, and a private size-limited tmpfs on `/tmp` holding its run directory;
//! - `switchyard sandbox-exec` (the binary itself, `sandbox_exec.rs`): mounts that tmpfs, sets
//!   resource limits (`rlimits`), becomes the run's own unprivileged user (`uid`: one per
//!   concurrent run slot, so one run's processes never count against another's limit and the
//!   hub's files stay unreadable), then applies Landlock and seccomp and executes the
//!   interpreter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The unprivileged user and group of the JavaScript workers (they cannot start processes).
pub const SANDBOX_UID: u32 = 65534;
/// The first uid of the run slots: child-process run number `n` runs as `SLOT_UID_BASE + n`.
/// These uids own no files on a normal host; the range is documented in SECURITY.md.
pub const SLOT_UID_BASE: u32 = 200_000;
/// Child-process runs at once (each has its own uid); more wait for a free slot.
pub const DEFAULT_SLOTS: u32 = 64;
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
    /// Landlock confines the child's filesystem view.
    pub landlock: bool,
    /// A seccomp filter denies system calls user code never needs.
    pub seccomp: bool,
    /// The switchyard binary that confines children (`sandbox-exec`).
    #[serde(skip)]
    pub helper: Option<PathBuf>,
}

/// How one child is to be confined, besides its resource limits.
#[derive(Debug, Clone, Default)]
pub struct Confine<'a> {
    /// The run's own uid (from its slot).
    pub uid: Option<u32>,
    /// The hub's staging directory holding the run's files.
    pub stage: Option<&'a Path>,
    /// Size of the private temporary directory.
    pub tmp_mb: u32,
}

const UNSHARE: [&str; 8] = [
    "unshare",
    "--net",
    "--pid",
    "--mount",
    "--fork",
    "--kill-child",
    "--mount-proc",
    "--",
];

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
                &SANDBOX_UID.to_string(),
                "--rlimit",
                "nofile=64",
            ]
            .map(String::from),
        );
        let mut in_ns: Vec<String> = UNSHARE.iter().map(|s| s.to_string()).collect();
        in_ns.extend(
            [&h, "sandbox-exec", "--probe", "--tmp-mb", "1"]
                .iter()
                .map(|s| s.to_string()),
        );
        let yes = serde_json::json!(true);
        let namespaced = report(&in_ns);
        Isolation {
            rlimits: alone["rlimits"] == yes,
            unprivileged_user: alone["uid"] == yes,
            namespaces: namespaced["tmpfs"] == yes,
            landlock: alone["landlock"] == yes,
            seccomp: alone["seccomp"] == yes,
            helper: alone.as_object().is_some().then(|| helper.to_path_buf()),
        }
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
        if self.namespaces {
            cmd.extend(UNSHARE.map(String::from));
        }
        if let Some(helper) = &self.helper {
            cmd.push(helper.to_string_lossy().into_owned());
            cmd.push("sandbox-exec".into());
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

/// The uids of concurrent child-process runs: each run holds one for its lifetime, so the
/// process limit (which the kernel counts per uid) is that run's alone.
pub struct UidSlots {
    free: Mutex<Vec<u32>>,
    permits: Semaphore,
}

/// One run's uid; handed back when dropped.
pub struct UidSlot<'a> {
    pub uid: u32,
    slots: &'a UidSlots,
    _permit: SemaphorePermit<'a>,
}

impl UidSlots {
    pub fn new(count: u32) -> UidSlots {
        UidSlots {
            free: Mutex::new((0..count).rev().map(|n| SLOT_UID_BASE + n).collect()),
            permits: Semaphore::new(count as usize),
        }
    }

    /// Waits up to `wait` for a free slot.
    pub async fn take(&self, wait: Duration) -> Option<UidSlot<'_>> {
        let permit = tokio::time::timeout(wait, self.permits.acquire())
            .await
            .ok()?
            .ok()?;
        let uid = self.free.lock().ok()?.pop()?;
        Some(UidSlot {
            uid,
            slots: self,
            _permit: permit,
        })
    }
}

impl Drop for UidSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut free) = self.slots.free.lock() {
            free.push(self.uid);
        }
    }
}
