//! Per-run kernel limits: a cgroup for each run slot, holding the run's memory (swap off), its
//! processes and its CPU, on cgroup v2 where the host has it and on the v1 `memory`, `pids` and
//! `cpu` hierarchies where it has only those.
//!
//! The hub makes one directory of its own (`sy-{pid}-{n}`) under its own cgroup in each
//! hierarchy, so runs count against whatever bounds the hub itself, and one `run-{uid}` in it per
//! slot. The hub sets a slot's limits before each run; the helper (`sandbox-exec`) joins the
//! run's cgroups as its first step, so everything the run starts is inside them. After the run
//! the hub kills whatever is left in them and reads how many times the kernel killed for memory,
//! so a run over its memory fails naming the limit. The directories go when the hub stops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Which hierarchy a directory is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The unified hierarchy: memory, pids and cpu in one directory.
    V2,
    V1Memory,
    V1Pids,
    V1Cpu,
}

/// A CPU period, in microseconds; each run may use one period's worth per period (one core).
const CPU_PERIOD_US: u64 = 100_000;

/// The hub's cgroups for runs.
#[derive(Debug)]
pub struct Cgroups {
    /// `v1` or `v2`.
    version: &'static str,
    /// The hub's own directory of run cgroups in each hierarchy.
    bases: Vec<(Kind, PathBuf)>,
}

/// The cgroups of one run slot (one directory per hierarchy).
#[derive(Debug, Clone)]
pub struct RunGroup {
    dirs: Vec<(Kind, PathBuf)>,
}

/// Why the kernel's limits cannot be had, or set.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A file of the cgroup filesystem could not be read, written or made.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The host offers no hierarchy runs can be limited in; the text says what is missing.
    #[error("{0}")]
    Unavailable(String),
}

impl CgroupError {
    fn io(action: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
        let (action, path) = (action.into(), path.to_path_buf());
        move |source| CgroupError::Io {
            action,
            path,
            source,
        }
    }
    /// The kernel refused for now (`EBUSY`): a limit below what the cgroup still holds.
    fn busy(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(CgroupError::io(format!("writing {value:?} to"), path))
}

/// The number after `key ` in a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
fn counter(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl Cgroups {
    /// Finds the host's cgroup hierarchies and makes the hub's directory in each; `Err` says
    /// why runs cannot have kernel limits here.
    pub fn create() -> Result<Cgroups, CgroupError> {
        let read =
            |p: &str| std::fs::read_to_string(p).map_err(CgroupError::io("reading", Path::new(p)));
        let mounts = read("/proc/self/mounts")?;
        let own = read("/proc/self/cgroup")?;
        let name = format!(
            "sy-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        Cgroups::create_from(&mounts, &own, &name)
    }

    /// [`Cgroups::create`] from the mount table and this process's cgroup lines, with `name` for
    /// the hub's directories.
    fn create_from(mounts: &str, own: &str, name: &str) -> Result<Cgroups, CgroupError> {
        // The v1 memory controller, where mounted, holds memory (a hybrid host's v2 is empty);
        // else the unified hierarchy.
        let unified = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_string())
        });
        let cgroups = match unified {
            Some(point) if v1_mount(mounts, own, "memory").is_none() => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or_else(|| {
                        CgroupError::Unavailable("no cgroup v2 path in /proc/self/cgroup".into())
                    })?;
                let parent = Path::new(&point).join(path.trim().trim_start_matches('/'));
                let base = v2_base(&parent, name)?;
                Cgroups {
                    version: "v2",
                    bases: vec![(Kind::V2, base)],
                }
            }
            _ => {
                let mut made = Cgroups {
                    version: "v1",
                    bases: Vec::new(),
                };
                for (controller, kind, needed) in [
                    ("memory", Kind::V1Memory, true),
                    ("pids", Kind::V1Pids, true),
                    ("cpu", Kind::V1Cpu, false),
                ] {
                    match v1_mount(mounts, own, controller) {
                        Some(parent) => {
                            let base = parent.join(name);
                            clean_stale(&parent);
                            std::fs::create_dir(&base)
                                .map_err(CgroupError::io("creating", &base))?;
                            made.bases.push((kind, base));
                        }
                        // `made` removes what it holds when dropped.
                        None if needed => {
                            return Err(CgroupError::Unavailable(format!(
                                "no cgroup v2 with its controllers and no v1 `{controller}` hierarchy"
                            )));
                        }
                        None => {}
                    }
                }
                made
            }
        };
        // A first slot proves the limits can be written.
        let probe = cgroups.slot(u32::MAX)?;
        probe.limit(64 << 20, 16)?;
        probe.remove();
        Ok(cgroups)
    }

    /// `v1` or `v2`.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// The cgroups of the slot whose runs have uid `uid` (made on first use).
    pub fn slot(&self, uid: u32) -> Result<RunGroup, CgroupError> {
        let mut dirs = Vec::new();
        for (kind, base) in &self.bases {
            let dir = base.join(format!("run-{uid}"));
            if let Err(e) = std::fs::create_dir(&dir)
                && e.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(CgroupError::io("creating", &dir)(e));
            }
            dirs.push((*kind, dir));
        }
        Ok(RunGroup { dirs })
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for (_, base) in &self.bases {
            remove_tree(base);
        }
    }
}

/// Kills what is left in the cgroup directories below and including `dir`, then removes them.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    kill_procs(dir);
    // A cgroup whose last process was just killed can be busy for a moment.
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

fn kill_procs(dir: &Path) {
    if dir.join("cgroup.kill").exists() {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        return;
    }
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Removes the run directories that hubs which are gone left in `parent` (`sy-{pid}-…`).
fn clean_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sy-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&e.path());
        }
    }
}

/// The mount point of v1 controller `controller` joined with this process's path in it.
fn v1_mount(mounts: &str, own: &str, controller: &str) -> Option<PathBuf> {
    let point = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
            .then(|| f[1].to_string())
    })?;
    let path = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',')
            .any(|c| c == controller)
            .then(|| path.trim().to_string())
    })?;
    let dir = Path::new(&point).join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Makes the hub's run directory under `parent` on cgroup v2, with the memory, pids and cpu
/// controllers enabled for it and for its children. A non-root cgroup that holds processes
/// cannot hand controllers down ("no internal processes"), so the hub first moves itself into a
/// leaf of its own (`switchyard-hub`) beside the run directory.
fn v2_base(parent: &Path, name: &str) -> Result<PathBuf, CgroupError> {
    let controllers = parent.join("cgroup.controllers");
    let available =
        std::fs::read_to_string(&controllers).map_err(CgroupError::io("reading", &controllers))?;
    for needed in ["memory", "pids"] {
        if !available.split_whitespace().any(|c| c == needed) {
            return Err(CgroupError::Unavailable(format!(
                "the cgroup v2 controller `{needed}` is not delegated to {}",
                parent.display()
            )));
        }
    }
    let wanted: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    let enable = wanted
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let control = parent.join("cgroup.subtree_control");
    if write(&control, &enable).is_err() {
        let leaf = parent.join("switchyard-hub");
        if let Err(e) = std::fs::create_dir(&leaf)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            return Err(CgroupError::io("creating", &leaf)(e));
        }
        write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
        write(&control, &enable)?;
    }
    clean_stale(parent);
    let base = parent.join(name);
    std::fs::create_dir(&base).map_err(CgroupError::io("creating", &base))?;
    write(&base.join("cgroup.subtree_control"), &enable)?;
    Ok(base)
}

impl RunGroup {
    /// [`RunGroup::limit`], waiting up to a second while the memory limit cannot be lowered yet:
    /// the processes of the slot's last run (or a worker just replaced) may still be exiting,
    /// and their memory is freed only once they have.
    pub async fn limit_when_free(&self, memory: u64, pids: u64) -> Result<(), CgroupError> {
        let mut tries = 0;
        loop {
            match self.limit(memory, pids) {
                Err(e) if e.busy() && tries < 50 => {
                    tries += 1;
                    self.kill_all();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Sets the slot's limits for the next run: `memory` bytes with no swap, at most `pids`
    /// processes and threads, at most one core of CPU.
    pub fn limit(&self, memory: u64, pids: u64) -> Result<(), CgroupError> {
        for (kind, dir) in &self.dirs {
            match kind {
                Kind::V2 => {
                    write(&dir.join("memory.max"), &memory.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write(&dir.join("memory.swap.max"), "0")?;
                    }
                    write(&dir.join("pids.max"), &pids.to_string())?;
                    if dir.join("cpu.max").exists() {
                        write(
                            &dir.join("cpu.max"),
                            &format!("{CPU_PERIOD_US} {CPU_PERIOD_US}"),
                        )?;
                    }
                }
                Kind::V1Memory => {
                    // memory+swap must stay at least memory: lowering writes memory first,
                    // raising memory+swap first.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    let limit = dir.join("memory.limit_in_bytes");
                    let v = memory.to_string();
                    if memsw.exists() {
                        let current: u64 = std::fs::read_to_string(&limit)
                            .ok()
                            .and_then(|c| c.trim().parse().ok())
                            .unwrap_or(u64::MAX);
                        if memory < current {
                            write(&limit, &v)?;
                            write(&memsw, &v)?;
                        } else {
                            write(&memsw, &v)?;
                            write(&limit, &v)?;
                        }
                    } else {
                        write(&limit, &v)?;
                        write(&dir.join("memory.swappiness"), "0")?;
                    }
                }
                Kind::V1Pids => write(&dir.join("pids.max"), &pids.to_string())?,
                Kind::V1Cpu => {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &CPU_PERIOD_US.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The directories the run joins (`sandbox-exec --cgroup`).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// How many times the kernel has killed a process of this slot for memory.
    pub fn oom_kills(&self) -> u64 {
        self.dirs
            .iter()
            .map(|(kind, dir)| match kind {
                Kind::V2 => counter(&dir.join("memory.events"), "oom_kill"),
                Kind::V1Memory => counter(&dir.join("memory.oom_control"), "oom_kill"),
                _ => 0,
            })
            .sum()
    }

    /// Kills every process still in the slot's cgroups (a run's leftovers).
    pub fn kill_all(&self) {
        for (_, dir) in &self.dirs {
            kill_procs(dir);
        }
    }

    /// Kills what is left and removes the slot's directories.
    pub fn remove(&self) {
        for (_, dir) in &self.dirs {
            remove_tree(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_are_found_from_mounts_and_own_paths() {
        let mounts = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                      cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n";
        let own = "4:memory:/nonexistent/abc\n3:cpu,cpuacct:/\n";
        // The path must exist to be used: a missing directory is no hierarchy.
        assert_eq!(v1_mount(mounts, own, "memory"), None);
        assert_eq!(v1_mount(mounts, own, "pids"), None);
        let got = v1_mount(mounts, own, "cpu");
        assert!(got.is_none() || got == Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
    }

    /// The v2 protocol on a directory tree shaped like a delegated cgroup: controllers handed
    /// down at each level, and a run's limits in v2's files. (This machine's v2 has no
    /// controllers, so the real v2 path is not exercised here; v1 is, by the e2e suite.)
    #[test]
    fn on_v2_controllers_are_handed_down_and_limits_written_in_v2_files() {
        let root = tempfile::tempdir().expect("dir");
        let hub = root.path().join("hub");
        std::fs::create_dir(&hub).expect("hub");
        std::fs::write(
            hub.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("w");
        let mounts = format!("cgroup2 {} cgroup2 rw,nosuid 0 0\n", root.path().display());
        let g = Cgroups::create_from(&mounts, "0::/hub\n", "sy-1-0").expect("v2");
        assert_eq!(g.version(), "v2");
        let base = hub.join("sy-1-0");
        for dir in [&hub, &base] {
            assert_eq!(
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).expect("control"),
                "+memory +pids +cpu"
            );
        }
        let slot = g.slot(200_007).expect("slot");
        slot.limit(300 << 20, 32).expect("limits");
        let run = base.join("run-200007");
        let read = |f: &str| std::fs::read_to_string(run.join(f)).expect(f);
        assert_eq!(read("memory.max"), (300u64 << 20).to_string());
        assert_eq!(read("pids.max"), "32");
        std::fs::write(
            run.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .expect("events");
        assert_eq!(slot.oom_kills(), 1);
        assert_eq!(slot.dirs().count(), 1);
        // Without the memory controller delegated there are no per-run limits.
        std::fs::write(hub.join("cgroup.controllers"), "cpu pids\n").expect("w");
        let err = Cgroups::create_from(&mounts, "0::/hub\n", "sy-1-1").expect_err("no memory");
        assert!(
            matches!(&err, CgroupError::Unavailable(m) if m.contains("memory")),
            "{err}"
        );
    }

    #[test]
    fn counters_are_read_by_key() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("memory.oom_control");
        std::fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(counter(&f, "oom_kill"), 3);
        assert_eq!(counter(&f, "under_oom"), 0);
        assert_eq!(counter(&dir.path().join("missing"), "oom_kill"), 0);
    }
}
