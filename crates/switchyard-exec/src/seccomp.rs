//! The seccomp filter of runs and installers: the system calls user code never needs, denied
//! with EPERM, and sockets limited to a Unix stream (installers: TCP too, in a network
//! namespace that holds nothing but their proxy).

use crate::SetupError;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// System calls user code never needs; they fail with EPERM whatever their arguments.
const DENIED: &[i64] = &[
    // No socket leaves the run: its one channel is the inherited SDK descriptor.
    libc::SYS_connect,
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
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    // io_uring performs connects and opens outside the filter's view.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// `arg` of the system call compared with `value`.
fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SetupError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(SetupError::of("seccomp"))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, SetupError> {
    SeccompRule::new(conditions).map_err(SetupError::of("seccomp"))
}

/// The seccomp rules: each listed call is denied when one of its rules matches (no rule: always).
/// With `tcp` (an installer behind the index proxy, in a network namespace holding only the
/// loopback and the forwarder), TCP sockets and `connect` are allowed too.
fn seccomp_rules(tcp: bool) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SetupError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .filter(|&&nr| !(tcp && nr == libc::SYS_connect))
        .map(|&nr| (nr, Vec::new()))
        .collect();
    let unix = libc::AF_UNIX as u64;
    // socket(): a Unix stream socket only (what interpreters use internally); any other family
    // (IP, netlink, packet…) or a datagram socket, which `sendto` could aim at a path, fails.
    let mut socket = if tcp {
        let families = [unix, libc::AF_INET as u64, libc::AF_INET6 as u64];
        let mut refused = Vec::new();
        for family in (0..=64u64).filter(|f| !families.contains(f)) {
            refused.push(rule(vec![cond(0, SeccompCmpOp::Eq, family)?])?);
        }
        refused.push(rule(vec![cond(0, SeccompCmpOp::Gt, 64)?])?);
        refused
    } else {
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, unix)?])?]
    };
    for kind in (0..=15u64).filter(|&k| k != libc::SOCK_STREAM as u64) {
        socket.push(rule(vec![cond(1, SeccompCmpOp::MaskedEq(0xf), kind)?])?);
    }
    rules.insert(libc::SYS_socket, socket);
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, unix)?])?],
    );
    Ok(rules)
}

/// Applies the filter to this process (and what it executes).
pub(crate) fn apply(tcp: bool) -> Result<(), SetupError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(SetupError::of("seccomp"))?;
    let filter = SeccompFilter::new(
        seccomp_rules(tcp)?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(SetupError::of("seccomp"))?;
    let program: BpfProgram = filter.try_into().map_err(SetupError::of("seccomp"))?;
    seccompiler::apply_filter(&program).map_err(SetupError::of("seccomp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_filter_compiles_for_this_machine() {
        let rules = seccomp_rules(false).expect("rules");
        assert!(
            rules[&libc::SYS_connect].is_empty(),
            "connect is denied outright"
        );
        assert_eq!(rules[&libc::SYS_socket].len(), 16);
        let tcp = seccomp_rules(true).expect("rules");
        assert!(
            !tcp.contains_key(&libc::SYS_connect),
            "an installer connects"
        );
        // The 62 families of 0–64 but Unix and IP, those past 64, the 15 types but a stream.
        assert_eq!(tcp[&libc::SYS_socket].len(), 62 + 1 + 15);
    }
}
