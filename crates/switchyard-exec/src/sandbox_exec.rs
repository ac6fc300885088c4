//! `switchyard sandbox-exec`: the last wrapper before user code. It confines itself with
//! Landlock (read-only system directories, read-write only the run directory; the hub's data
//! dir and every other path unreachable) and a seccomp filter (no ptrace, mounts, namespaces,
//! kernel keyrings, BPF, module loading…), then replaces itself with the interpreter, which
//! inherits both. Both need no privileges, so this layer also works where namespaces do not.

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;

/// Directories user code may read (interpreters, their libraries and configuration).
const READ_ONLY: &[&str] = &[
    "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/opt",
];

/// System calls user code never needs; they fail with EPERM.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
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

/// Entry point. `--probe` confines itself and prints `{"landlock": bool, "seccomp": bool}`;
/// `[--rw DIR]… [--] PROGRAM ARGS…` confines itself and executes PROGRAM.
pub fn sandbox_exec_main(args: &[String]) -> i32 {
    if args.first().map(String::as_str) == Some("--probe") {
        let landlock = landlock(&[]).unwrap_or(false);
        let seccomp = seccomp().is_ok();
        println!(
            "{}",
            serde_json::json!({"landlock": landlock, "seccomp": seccomp})
        );
        return 0;
    }
    let mut rw = Vec::new();
    let mut i = 0;
    while i + 1 < args.len() && args[i] == "--rw" {
        rw.push(args[i + 1].clone());
        i += 2;
    }
    // The `--` before the program is optional (argument parsers may already have taken it).
    if args.get(i).map(String::as_str) == Some("--") {
        i += 1;
    }
    let Some(program) = args.get(i) else {
        eprintln!("sandbox-exec: no program after `--`");
        return 125;
    };
    // Fail closed: if a layer the probe found working cannot be applied, run nothing.
    if let Err(e) = landlock(&rw).and_then(|_| seccomp()) {
        eprintln!("sandbox-exec: {e}");
        return 125;
    }
    let err = std::process::Command::new(program)
        .args(&args[i + 1..])
        .exec();
    eprintln!("sandbox-exec: cannot execute {program}: {err}");
    126
}
