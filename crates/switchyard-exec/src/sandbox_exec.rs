//! `switchyard sandbox-exec`: the last wrapper before user code. Started as root inside the
//! run's fresh namespaces (when the host allows them), it builds the run's private world and then
//! gives up every privilege before executing the interpreter:
//!
//! 1. a private temporary directory: a size-limited tmpfs mounted on `/tmp` of the run's own
//!    mount namespace, owned by the run's user, holding the files the hub staged for it (the
//!    host's `/tmp`, other runs and their channels are not visible; `/proc` is the run's own,
//!    mounted by `unshare --mount-proc`);
//! 2. resource limits (`setrlimit`: address space, CPU seconds, file size, open files,
//!    processes, no core dumps);
//! 3. the run's own unprivileged user (a uid per concurrent run slot, so the process limit of
//!    one run is not shared with another's);
//! 4. Landlock (read-only system directories, read-write only the run directory) and a seccomp
//!    filter (no ptrace, mounts, namespaces, kernel keyrings, BPF, module loading, fd theft…).
//!
//! Steps 2–4 need no namespaces, so they also work where a container forbids them. Any step the
//! hub asked for that fails stops the run: the helper fails closed.

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Directories user code may read (interpreters, their libraries and configuration).
const READ_ONLY: &[&str] = &[
    "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/opt",
];

/// Where the run's private temporary directory is mounted inside its mount namespace.
pub const PRIVATE_TMP: &str = "/tmp";

/// Largest staged file the helper copies into the private directory (code, input, SDK).
const MAX_STAGED_BYTES: u64 = 16 * 1024 * 1024;

/// System calls user code never needs; they fail with EPERM.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_userfaultfd,
    libc::SYS_acct,
    libc::SYS_quotactl,
];

/// What the hub asked the helper to set up.
#[derive(Debug, Default)]
struct Options {
    probe: bool,
    /// Size of the private tmpfs on `/tmp` in MiB (needs a private mount namespace).
    tmp_mb: Option<u32>,
    /// A directory of the hub's whose files are copied into the private tmpfs.
    stage: Option<PathBuf>,
    /// The user (and group) to become.
    uid: Option<u32>,
    rlimits: Vec<(Resource, u64)>,
    rw: Vec<String>,
    program: Vec<String>,
}

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

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    let value = |i: usize| {
        args.get(i + 1)
            .cloned()
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--probe" => {
                o.probe = true;
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
            // The first word that is not an option starts the program.
            _ => break,
        }
        i += 2;
    }
    o.program = args[i..].to_vec();
    Ok(o)
}

/// Reads the staged files (regular files directly in `dir`) into memory.
fn read_stage(dir: &Path) -> Result<Vec<(std::ffi::OsString, Vec<u8>)>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("stage {}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("stage: {e}"))?;
        let meta = entry.metadata().map_err(|e| format!("stage: {e}"))?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_STAGED_BYTES {
            return Err(format!("stage: {:?} is too large", entry.file_name()));
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| format!("stage: {e}"))?;
        files.push((entry.file_name(), bytes));
    }
    Ok(files)
}

fn mount_private_tmp(size_mb: u32, uid: u32) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    let data = format!("size={size_mb}m,nr_inodes=16384,mode=0700,uid={uid},gid={uid}");
    mount(
        Some("tmpfs"),
        PRIVATE_TMP,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| format!("mounting the private {PRIVATE_TMP}: {e}"))
}

fn drop_to(uid: u32) -> Result<(), String> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(uid));
    setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    setresgid(g, g, g).map_err(|e| format!("setresgid({uid}): {e}"))?;
    setresuid(u, u, u).map_err(|e| format!("setresuid({uid}): {e}"))?;
    // Paranoia: a process that could become root again is not confined.
    if setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok() {
        return Err("the uid drop did not hold".into());
    }
    Ok(())
}

fn landlock(rw: &[String]) -> Result<bool, String> {
    let abi = ABI::V3;
    let own_dir: Vec<std::path::PathBuf> = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .into_iter()
        .collect();
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(READ_ONLY, AccessFs::from_read(abi))))
        // The directory of this binary: the JavaScript worker is this binary too.
        .and_then(|r| r.add_rules(path_beneath_rules(own_dir.iter(), AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_all(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(rw, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

fn seccomp() -> Result<(), String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

/// Builds the private world and drops privileges, in the order the steps need: the tmpfs is
/// mounted while still root, files are written as the run's user, Landlock and seccomp last.
fn confine(o: &Options) -> Result<(), String> {
    let staged = o.stage.as_deref().map(read_stage).transpose()?;
    if let Some(mb) = o.tmp_mb {
        mount_private_tmp(mb, o.uid.unwrap_or(0))?;
    }
    for (r, n) in &o.rlimits {
        setrlimit(*r, *n, *n).map_err(|e| format!("setrlimit {r:?}: {e}"))?;
    }
    if let Some(uid) = o.uid {
        drop_to(uid)?;
    }
    if let (Some(files), Some(_)) = (&staged, o.tmp_mb) {
        let dir = Path::new(PRIVATE_TMP);
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).map_err(|e| format!("copying {name:?}: {e}"))?;
        }
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {PRIVATE_TMP}: {e}"))?;
    }
    landlock(&o.rw)?;
    seccomp()
}

/// Entry point. `--probe` applies what it is given, then confines itself and prints what held as
/// `{"tmpfs", "uid", "rlimits", "landlock", "seccomp"}`; otherwise it confines itself and
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
        let tmpfs = o.tmp_mb.map(|mb| mount_private_tmp(mb, 0).is_ok());
        let rlimits = o.rlimits.iter().all(|(r, n)| setrlimit(*r, *n, *n).is_ok());
        let uid = o.uid.map(|u| drop_to(u).is_ok());
        let landlock = landlock(&[]).unwrap_or(false);
        let seccomp = seccomp().is_ok();
        println!(
            "{}",
            serde_json::json!({"tmpfs": tmpfs, "uid": uid, "rlimits": rlimits,
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
    let err = std::process::Command::new(program)
        .args(&o.program[1..])
        .exec();
    eprintln!("sandbox-exec: cannot execute {program}: {err}");
    126
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_stop_at_the_program() {
        let args: Vec<String> = [
            "--tmp-mb", "64", "--uid", "70001", "--rlimit", "nproc=32", "--rw", "/tmp", "--",
            "python3", "--rw", "x",
        ]
        .map(String::from)
        .to_vec();
        let o = parse(&args).expect("parse");
        assert_eq!(o.tmp_mb, Some(64));
        assert_eq!(o.uid, Some(70001));
        assert_eq!(o.rlimits, vec![(Resource::RLIMIT_NPROC, 32)]);
        assert_eq!(o.rw, vec!["/tmp".to_string()]);
        assert_eq!(
            o.program,
            ["python3", "--rw", "x"].map(String::from).to_vec()
        );
        assert!(parse(&["--rlimit".into(), "bogus=1".into()]).is_err());
        assert!(parse(&["--uid".into()]).is_err());
    }
}
