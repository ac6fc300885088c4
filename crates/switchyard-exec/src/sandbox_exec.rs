//! `switchyard sandbox-exec`: the last wrapper before user code. Started as root inside the
//! run's fresh namespaces (when the host allows them), it builds the run's world from nothing
//! but what it grants, and then gives up every privilege before executing the interpreter:
//!
//! 1. the run's cgroups (`--cgroup`, joined first, so everything after is counted against the
//!    run's memory, process and CPU limits);
//! 2. a new root (`--root`): a small tmpfs holding only the allowlist ([`ROOT_TREES`] read-only,
//!    the [`ETC_FILES`] of `/etc`, a passwd naming the run's user, the four [`DEV_FILES`], a
//!    fresh `/proc` of the run's own PID namespace, the `--ro` paths the interpreter needs, and
//!    the run's private size-limited tmpfs on `/tmp` with the files the hub staged), entered with
//!    `pivot_root`; the host's tree is detached, so no host socket, `/run`, `/var`, `/home` or
//!    data dir has a name in the run;
//! 3. resource limits (`setrlimit`: address space, CPU seconds, file size, open files,
//!    processes, no core dumps);
//! 4. the run's own unprivileged user (a uid per concurrent run slot, so the process limit of
//!    one run is not shared with another's);
//! 5. Landlock (read-only granted paths, read-write only the run directory) and a seccomp
//!    filter (no `connect`, no socket but a Unix stream, no ptrace, mounts, namespaces, kernel
//!    keyrings, BPF, io_uring, module loading, fd theft…).
//!
//! Steps 3–5 need no namespaces, so they also work where a container forbids them. Any step the
//! hub asked for that fails stops the run: the helper fails closed.

use crate::SetupError;
use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Trees of the host bound read-only into a run's root: the interpreters and the libraries
/// they load. `/bin`, `/sbin`, `/lib`, `/lib64` follow the host: the same symlink into `/usr`
/// where the host has merged them (Debian 12 does), else bound read-only like `/usr`.
pub const ROOT_TREES: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// The only files of the host's `/etc` a run sees: the dynamic loader's cache (where shared
/// libraries are) and the time zone. Nothing else of `/etc` exists in a run.
pub const ETC_FILES: &[&str] = &["ld.so.cache", "localtime"];

/// The devices a run sees, bound from the host's `/dev`.
pub const DEV_FILES: &[&str] = &["null", "zero", "random", "urandom"];

/// Where the run's private temporary directory is mounted inside its root.
pub const PRIVATE_TMP: &str = "/tmp";

/// Where `--exe` binds the program in the new root (wherever it lives on the host, even under
/// the host's `/tmp`, which the run's own `/tmp` hides).
pub const PROGRAM: &str = "/program";

/// Size of the tmpfs that holds the new root's own directories and files (not the run's files).
const ROOT_TMPFS: &str = "size=1m,nr_inodes=256,mode=0755";

/// Largest staged file the helper copies into the private directory (code, input, SDK).
const MAX_STAGED_BYTES: u64 = 16 * 1024 * 1024;

/// Why the helper could not confine a run: a command line it does not understand, or a step
/// of setting up the sandbox that failed (with the system's error).
#[derive(Debug, thiserror::Error)]
enum HelperError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Maps an error of doing `what` to the helper's error.
fn fail<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> HelperError {
    let of = SetupError::of(what);
    move |e| HelperError::Setup(of(e))
}

impl From<&str> for HelperError {
    fn from(m: &str) -> Self {
        HelperError::Usage(m.into())
    }
}

impl From<String> for HelperError {
    fn from(m: String) -> Self {
        HelperError::Usage(m)
    }
}

/// What the hub asked the helper to set up.
#[derive(Debug, Default)]
struct Options {
    probe: bool,
    /// Build a new root from the allowlist (needs a private mount namespace and `stage`).
    root: bool,
    /// Size of the private tmpfs on `/tmp` in MiB (needs a private mount namespace).
    tmp_mb: Option<u32>,
    /// A directory of the hub's whose files are copied into the private tmpfs; with `root`, the
    /// mount point of the new root in this mount namespace too.
    stage: Option<PathBuf>,
    /// The user (and group) to become.
    uid: Option<u32>,
    rlimits: Vec<(Resource, u64)>,
    rw: Vec<String>,
    /// More host paths bound read-only at the same place in the new root (an interpreter that
    /// lives outside `/usr`, the worker binary).
    ro: Vec<PathBuf>,
    /// cgroup directories to join (one per hierarchy).
    cgroups: Vec<PathBuf>,
    /// The program is this host file: bound read-only at [`PROGRAM`] in the new root.
    exe: Option<PathBuf>,
    /// Its only network is the hub's index proxy (an installer's): stdin is the channel to it,
    /// the loopback is brought up and a forwarder listens on [`INDEX_PROXY_PORT`]; the program
    /// gets no stdin and may open TCP connections (in a network namespace with nothing else).
    index_proxy: bool,
    /// A host directory bound read-write at [`OUT_DIR`] in the new root (where an installer
    /// puts what it installed; the hub gives it a size-limited tmpfs).
    out: Option<PathBuf>,
    /// An executor's installed packages: a host directory bound read-only at [`PACKAGES_DIR`]
    /// in the new root (wherever the data dir is, even under the host's `/tmp`).
    packages: Option<PathBuf>,
    program: Vec<String>,
}

/// Where `--packages` binds the executor's installed packages in the new root.
pub const PACKAGES_DIR: &str = "/packages";

/// Where `--out` binds the host directory in the new root.
pub const OUT_DIR: &str = "/out";

/// The loopback port a networked sandbox reaches the hub's index proxy on (as its HTTP proxy).
pub const INDEX_PROXY_PORT: u16 = 3128;

/// The uid the index forwarder runs as (nobody): not the program's, so the program cannot
/// trace or signal it.
const FORWARDER_UID: u32 = 65534;

fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "as" => Resource::RLIMIT_AS,
        "cpu" => Resource::RLIMIT_CPU,
        "fsize" => Resource::RLIMIT_FSIZE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "core" => Resource::RLIMIT_CORE,
        _ => return None,
    })
}

fn parse(args: &[String]) -> Result<Options, HelperError> {
    let mut o = Options::default();
    let mut i = 0;
    let value = |i: usize| {
        args.get(i + 1)
            .cloned()
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--probe" | "--root" | "--index-proxy" => {
                match args[i].as_str() {
                    "--probe" => o.probe = true,
                    "--root" => o.root = true,
                    _ => o.index_proxy = true,
                }
                i += 1;
                continue;
            }
            "--" => {
                i += 1;
                break;
            }
            "--tmp-mb" => o.tmp_mb = Some(value(i)?.parse().map_err(|_| "bad --tmp-mb")?),
            "--stage" => o.stage = Some(PathBuf::from(value(i)?)),
            "--uid" => o.uid = Some(value(i)?.parse().map_err(|_| "bad --uid")?),
            "--rlimit" => {
                let v = value(i)?;
                let (name, n) = v.split_once('=').ok_or("--rlimit takes NAME=VALUE")?;
                let r = resource(name).ok_or_else(|| format!("unknown rlimit `{name}`"))?;
                o.rlimits
                    .push((r, n.parse().map_err(|_| format!("bad rlimit `{v}`"))?));
            }
            "--rw" => o.rw.push(value(i)?),
            "--ro" => o.ro.push(PathBuf::from(value(i)?)),
            "--cgroup" => o.cgroups.push(PathBuf::from(value(i)?)),
            "--exe" => o.exe = Some(PathBuf::from(value(i)?)),
            "--out" => o.out = Some(PathBuf::from(value(i)?)),
            "--packages" => o.packages = Some(PathBuf::from(value(i)?)),
            // The first word that is not an option starts the program.
            _ => break,
        }
        i += 2;
    }
    o.program = args[i..].to_vec();
    if o.root && o.stage.is_none() {
        return Err("--root needs --stage (the new root's mount point)".into());
    }
    if let Some(p) = o.ro.iter().find(|p| p.starts_with(PRIVATE_TMP)) {
        return Err(HelperError::Usage(format!(
            "--ro {}: the run's own {PRIVATE_TMP} would hide it (use --exe for a program)",
            p.display()
        )));
    }
    Ok(o)
}

/// Reads the staged files (regular files directly in `dir`) into memory.
fn read_stage(dir: &Path) -> Result<Vec<(std::ffi::OsString, Vec<u8>)>, HelperError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail(format!("stage {}", dir.display())))? {
        let entry = entry.map_err(fail("stage"))?;
        let meta = entry.metadata().map_err(fail("stage"))?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_STAGED_BYTES {
            return Err(HelperError::Usage(format!(
                "stage: {:?} is too large",
                entry.file_name()
            )));
        }
        let bytes = std::fs::read(entry.path()).map_err(fail("stage"))?;
        files.push((entry.file_name(), bytes));
    }
    Ok(files)
}

/// Moves this process into each cgroup (writing `0` names the writer's process).
fn join_cgroups(dirs: &[PathBuf]) -> Result<(), HelperError> {
    for dir in dirs {
        std::fs::write(dir.join("cgroup.procs"), "0")
            .map_err(fail(format!("joining cgroup {}", dir.display())))?;
    }
    Ok(())
}

fn mount_private_tmp(at: &Path, size_mb: u32, uid: u32) -> Result<(), HelperError> {
    let data = format!("size={size_mb}m,nr_inodes=16384,mode=0700,uid={uid},gid={uid}");
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(fail(format!("mounting the private {PRIVATE_TMP}")))
}

/// Binds host path `src` read-only at `root` + `src` (a file onto a file, a directory onto a
/// directory), creating the mount point in the new root's tmpfs.
fn bind_ro(root: &Path, src: &Path, dev: bool) -> Result<(), HelperError> {
    bind_ro_at(root, src, src, dev)
}

/// Binds host path `src` read-only at `root` + `at`.
fn bind_ro_at(root: &Path, src: &Path, at: &Path, dev: bool) -> Result<(), HelperError> {
    let rel = at
        .strip_prefix("/")
        .map_err(|_| format!("{} is not absolute", at.display()))?;
    let dst = root.join(rel);
    let meta = std::fs::metadata(src).map_err(fail(format!("{}", src.display())))?;
    let parent = dst.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(fail(format!("{}", parent.display())))?;
    if meta.is_dir() {
        std::fs::create_dir_all(&dst)
    } else {
        std::fs::write(&dst, b"")
    }
    .map_err(fail(format!("{}", dst.display())))?;
    let none: Option<&str> = None;
    mount(Some(src), &dst, none, MsFlags::MS_BIND, none)
        .map_err(fail(format!("binding {}", src.display())))?;
    let mut flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    if !dev {
        flags |= MsFlags::MS_NODEV;
    }
    mount(none, &dst, none, flags, none)
        .map_err(fail(format!("making {} read-only", dst.display())))
}

/// Builds the run's root on `at` (the stage directory, already read) and enters it: see the
/// module's documentation for what it holds. `uid` names the run's user in its passwd.
fn enter_new_root(at: &Path, o: &Options, uid: u32) -> Result<(), HelperError> {
    let none: Option<&str> = None;
    // Nothing of what follows propagates back to the host's mount namespace.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(fail("making mounts private"))?;
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(ROOT_TMPFS),
    )
    .map_err(fail("mounting the new root"))?;
    for tree in ROOT_TREES {
        let path = Path::new(tree);
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path).map_err(fail(*tree))?;
            std::os::unix::fs::symlink(&target, at.join(&tree[1..])).map_err(fail(*tree))?;
        } else if meta.is_dir() {
            bind_ro(at, path, false)?;
        }
    }
    for extra in &o.ro {
        // Under a granted tree already (and its read-only bind has no room for a mount point).
        if !ROOT_TREES.iter().any(|t| extra.starts_with(t)) {
            bind_ro(at, extra, false)?;
        }
    }
    if let Some(exe) = &o.exe {
        bind_ro_at(at, exe, Path::new(PROGRAM), false)?;
    }
    if let Some(packages) = &o.packages {
        bind_ro_at(at, packages, Path::new(PACKAGES_DIR), false)?;
    }
    if let Some(out) = &o.out {
        let dst = at.join(&OUT_DIR[1..]);
        std::fs::create_dir_all(&dst).map_err(fail(OUT_DIR))?;
        mount(Some(out.as_path()), &dst, none, MsFlags::MS_BIND, none)
            .map_err(fail(format!("binding {}", out.display())))?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(none, &dst, none, flags, none).map_err(fail(format!("{OUT_DIR} nosuid")))?;
    }
    let etc = at.join("etc");
    std::fs::create_dir_all(&etc).map_err(fail("etc"))?;
    for file in ETC_FILES {
        let src = Path::new("/etc").join(file);
        if src.exists() {
            bind_ro(at, &src, false)?;
        }
    }
    // A user database naming only the run's user, so `getpwuid` answers.
    std::fs::write(
        etc.join("passwd"),
        format!("sandbox:x:{uid}:{uid}:sandbox:{PRIVATE_TMP}:/nonexistent\n"),
    )
    .and_then(|_| std::fs::write(etc.join("group"), format!("sandbox:x:{uid}:\n")))
    .map_err(fail("etc"))?;
    let dev = at.join("dev");
    std::fs::create_dir_all(&dev).map_err(fail("dev"))?;
    for file in DEV_FILES {
        bind_ro(at, &Path::new("/dev").join(file), true)?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(fail("dev"))?;
    }
    let proc_dir = at.join("proc");
    std::fs::create_dir_all(&proc_dir).map_err(fail("proc"))?;
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    )
    .map_err(fail("mounting the run's /proc"))?;
    let tmp = at.join(&PRIVATE_TMP[1..]);
    std::fs::create_dir_all(&tmp).map_err(fail("tmp"))?;
    if let Some(mb) = o.tmp_mb {
        mount_private_tmp(&tmp, mb, uid)?;
    }
    // Enter it: the old root is stacked on the new one by pivot_root(".", ".") and detached.
    std::env::set_current_dir(at).map_err(fail("chdir to the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("detaching the host's root"))?;
    std::env::set_current_dir("/").map_err(fail("chdir /"))?;
    // The root's own directories and files are fixed from here on.
    mount(
        none,
        "/",
        none,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(ROOT_TMPFS),
    )
    .map_err(fail("making the new root read-only"))
}

fn drop_to(uid: u32) -> Result<(), HelperError> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(uid));
    setgroups(&[]).map_err(fail("setgroups"))?;
    setresgid(g, g, g).map_err(fail(format!("setresgid({uid})")))?;
    setresuid(u, u, u).map_err(fail(format!("setresuid({uid})")))?;
    // Paranoia: a process that could become root again is not confined.
    if setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err("the uid drop did not hold".into());
    }
    Ok(())
}

/// The `--ro` paths and the program, where the run sees them.
fn granted(o: &Options) -> Vec<PathBuf> {
    let mut paths = o.ro.clone();
    match (&o.packages, o.root) {
        (Some(_), true) => paths.push(PathBuf::from(PACKAGES_DIR)),
        (Some(dir), false) => paths.push(dir.clone()),
        (None, _) => {}
    }
    match (&o.exe, o.root) {
        (Some(_), true) => paths.push(PathBuf::from(PROGRAM)),
        (Some(exe), false) => paths.push(exe.clone()),
        (None, _) => {}
    }
    paths
}

/// Paths Landlock lets the run read: in a new root, what it holds; without one, the same
/// allowlist on the host's tree (so `/etc`, `/run`, `/home`… stay unreadable there too).
fn readable(ro: &[PathBuf], in_new_root: bool) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = ROOT_TREES.iter().map(PathBuf::from).collect();
    paths.extend(ETC_FILES.iter().map(|f| Path::new("/etc").join(f)));
    if in_new_root {
        // The run's own user database, written by `enter_new_root` (the host's is not granted).
        paths.extend(["/etc/passwd", "/etc/group"].map(PathBuf::from));
    }
    paths.extend(DEV_FILES.iter().map(|f| Path::new("/dev").join(f)));
    paths.push(PathBuf::from("/proc"));
    paths.extend(ro.iter().cloned());
    // Only what exists: a rule on a missing path would fail the whole ruleset.
    paths.retain(|p| p.exists());
    paths
}

fn landlock(ro: &[PathBuf], in_new_root: bool, rw: &[String]) -> Result<bool, HelperError> {
    let abi = ABI::V3;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| {
            r.add_rules(path_beneath_rules(
                readable(ro, in_new_root),
                AccessFs::from_read(abi),
            ))
        })
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_all(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(rw, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(fail("landlock"))?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

/// Builds the run's world and drops privileges, in the order the steps need: the cgroups joined
/// first (everything after is counted), mounts while still root, files written as the run's
/// user, Landlock and seccomp last.
fn confine(o: &Options) -> Result<(), HelperError> {
    join_cgroups(&o.cgroups)?;
    if o.index_proxy {
        start_forwarder()?;
    }
    let (staged, private) = build(o)?;
    for (r, n) in &o.rlimits {
        setrlimit(*r, *n, *n).map_err(fail(format!("setrlimit {r:?}")))?;
    }
    if let Some(uid) = o.uid {
        drop_to(uid)?;
    }
    if let (Some(files), true) = (&staged, private) {
        let dir = Path::new(PRIVATE_TMP);
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).map_err(fail(format!("copying {name:?}")))?;
        }
        std::env::set_current_dir(dir).map_err(fail(format!("chdir {PRIVATE_TMP}")))?;
    } else if o.root {
        std::env::set_current_dir("/").map_err(fail("chdir /"))?;
    }
    let mut rw = o.rw.clone();
    if o.out.is_some() && o.root {
        rw.push(OUT_DIR.to_string());
    }
    landlock(&granted(o), o.root, &rw)?;
    Ok(crate::seccomp::apply(o.index_proxy)?)
}

/// Brings up the loopback of this (new, empty) network namespace and starts the forwarder on
/// it, handing it stdin — the channel to the hub's index proxy — as its own. It runs as nobody
/// in the run's cgroup and PID namespace, and enters the new root with this process (pivot_root
/// moves every process of the mount namespace).
fn start_forwarder() -> Result<(), HelperError> {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("the index proxy needs `ip` (iproute2) to bring up the loopback")?;
    let up = std::process::Command::new(ip)
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(fail("ip link set lo up"))?;
    if !up.success() {
        return Err(format!("ip link set lo up: {up}").into());
    }
    let me = std::env::current_exe().map_err(fail("finding the helper"))?;
    std::process::Command::new(me)
        .arg("sandbox-forward")
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::null())
        .uid(FORWARDER_UID)
        .gid(FORWARDER_UID)
        .spawn()
        .map_err(fail("starting the index forwarder"))?;
    Ok(())
}

/// The staged files read, and the run's world built (a new root, or a private `/tmp`): the
/// files, and whether they go to a private `/tmp`.
type Staged = Option<Vec<(std::ffi::OsString, Vec<u8>)>>;

fn build(o: &Options) -> Result<(Staged, bool), HelperError> {
    let staged = o.stage.as_deref().map(read_stage).transpose()?;
    let uid = o.uid.unwrap_or(0);
    let private = if o.root {
        let at = o.stage.as_deref().ok_or("--root needs --stage")?;
        enter_new_root(at, o, uid)?;
        o.tmp_mb.is_some()
    } else if let Some(mb) = o.tmp_mb {
        mount_private_tmp(Path::new(PRIVATE_TMP), mb, uid)?;
        true
    } else {
        false
    };
    Ok((staged, private))
}

/// Entry point. `--probe` applies what it is given, then confines itself and prints what held as
/// `{"root", "tmpfs", "uid", "rlimits", "landlock", "seccomp"}`; otherwise it confines itself and
/// executes the program that follows the options.
pub fn sandbox_exec_main(args: &[String]) -> i32 {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sandbox-exec: {e}");
            return 125;
        }
    };
    if o.probe {
        let root = o.stage.as_deref().filter(|_| o.root).map(|at| {
            enter_new_root(at, &o, o.uid.unwrap_or(0))
                .map_err(|e| eprintln!("sandbox-exec probe: {e}"))
                .is_ok()
        });
        let tmpfs = match (o.root, o.tmp_mb) {
            (false, Some(mb)) => Some(mount_private_tmp(Path::new(PRIVATE_TMP), mb, 0).is_ok()),
            (true, Some(_)) => root,
            _ => None,
        };
        let rlimits = o.rlimits.iter().all(|(r, n)| setrlimit(*r, *n, *n).is_ok());
        let uid = o.uid.map(|u| drop_to(u).is_ok());
        let landlock = landlock(&granted(&o), o.root, &[]).unwrap_or(false);
        let seccomp = crate::seccomp::apply(false).is_ok();
        println!(
            "{}",
            serde_json::json!({"root": root, "tmpfs": tmpfs, "uid": uid, "rlimits": rlimits,
                               "landlock": landlock, "seccomp": seccomp})
        );
        return 0;
    }
    let Some(program) = o.program.first() else {
        eprintln!("sandbox-exec: no program to run");
        return 125;
    };
    // Fail closed: if a layer the probe found working cannot be applied, run nothing.
    if let Err(e) = confine(&o) {
        eprintln!("sandbox-exec: {e}");
        return 125;
    }
    // A program bound by --exe is at its place in the new root.
    let program = match (&o.exe, o.root) {
        (Some(_), true) => PROGRAM,
        _ => program.as_str(),
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(&o.program[1..]);
    if o.index_proxy {
        // stdin was the channel to the hub's proxy: the forwarder has it, the program does not.
        cmd.stdin(std::process::Stdio::null());
    }
    let err = cmd.exec();
    eprintln!("sandbox-exec: cannot execute {program}: {err}");
    126
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_stop_at_the_program() {
        let args: Vec<String> = [
            "--root",
            "--stage",
            "/s",
            "--tmp-mb",
            "64",
            "--uid",
            "70001",
            "--rlimit",
            "nproc=32",
            "--rw",
            "/tmp",
            "--ro",
            "/opt/node",
            "--cgroup",
            "/sys/fs/cgroup/x",
            "--",
            "python3",
            "--rw",
            "x",
        ]
        .map(String::from)
        .to_vec();
        let o = parse(&args).expect("parse");
        assert!(o.root);
        assert_eq!(o.tmp_mb, Some(64));
        assert_eq!(o.uid, Some(70001));
        assert_eq!(o.rlimits, vec![(Resource::RLIMIT_NPROC, 32)]);
        assert_eq!(o.rw, vec!["/tmp".to_string()]);
        assert_eq!(o.ro, vec![PathBuf::from("/opt/node")]);
        assert_eq!(o.cgroups, vec![PathBuf::from("/sys/fs/cgroup/x")]);
        assert_eq!(
            o.program,
            ["python3", "--rw", "x"].map(String::from).to_vec()
        );
        assert!(parse(&["--rlimit".into(), "bogus=1".into()]).is_err());
        assert!(parse(&["--uid".into()]).is_err());
        assert!(
            parse(&["--root".into()]).is_err(),
            "a root needs its mount point"
        );
    }
}
