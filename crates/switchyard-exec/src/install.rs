//! Package installs in the sandbox: an installer (pip, npm, Composer) runs like a run — its own
//! namespaces, new root, uid (of the install range), cgroup, size-limited tmpfs, rlimits,
//! Landlock — but with one network: the hub's [`IndexProxy`] to the configured package indexes,
//! through the forwarder on its loopback (`index_proxy.rs`). Its seccomp filter allows TCP
//! sockets and `connect`, which reach nothing else in its network namespace. It never runs user
//! code, and never at run time.

use crate::SetupError;
use crate::index_proxy::IndexProxy;
use crate::process::read_capped;
use crate::runtime::program_tree;
use crate::sandbox::{self, Confine, Isolation, Limits, UidSlots};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The host's CA certificates, bound read-only into installers' roots.
pub const TRUST_STORE: &str = "/etc/ssl/certs";

/// Processes an installer may run at once (npm starts a few dozen threads).
const INSTALL_PROCESSES: u32 = 256;

/// One installer run: a host program, its arguments and environment, files staged into its
/// `/tmp` (its working directory), its memory and `/tmp` size, its deadline.
pub struct InstallRun<'a> {
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub files: Vec<(String, Vec<u8>)>,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    pub timeout: Duration,
    /// A host directory bound read-write at `/out` in its root, for what it installs.
    pub out: Option<&'a Path>,
    /// More host paths it reads (the installer's own files, its settings), read-only.
    pub ro: Vec<std::path::PathBuf>,
    /// Most MiB one connection through the index proxy may bring in.
    pub download_mb: u32,
}

/// What an installer run did.
#[derive(Debug, Clone)]
pub struct InstallOutput {
    /// Its exit status; `None` when it was killed (its deadline, a signal).
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs installers, each in its sandbox, a few at once.
pub struct Installer {
    isolation: Isolation,
    proxy: IndexProxy,
    slots: UidSlots,
}

impl Installer {
    pub fn new(isolation: Isolation, proxy: IndexProxy) -> Installer {
        Installer {
            isolation,
            proxy,
            slots: UidSlots::new(sandbox::INSTALL_UID_BASE, sandbox::INSTALL_SLOTS),
        }
    }

    /// Runs `run` and reports how it ended. Installs need every layer (a new root, namespaces,
    /// a uid, cgroups): without them nothing runs.
    pub async fn run(&self, run: InstallRun<'_>) -> Result<InstallOutput, SetupError> {
        let iso = &self.isolation;
        if !(iso.new_root() && iso.unprivileged_user && iso.groups.is_some()) {
            return Err(SetupError::of("installing packages")(format!(
                "installs need the whole sandbox (namespaces, a new root, uids, cgroups); this host gives `{}`",
                iso.level()
            )));
        }
        let slot = self
            .slots
            .take(run.timeout)
            .await
            .ok_or_else(|| SetupError::of("installing packages")("no install slot was free"))?;
        let group = iso
            .groups
            .as_ref()
            .map(|g| g.slot(slot.uid))
            .transpose()
            .map_err(SetupError::of("cannot prepare the install's cgroup"))?;
        if let Some(g) = &group {
            g.limit_when_free(
                u64::from(run.memory_mb + run.tmp_mb) << 20,
                u64::from(INSTALL_PROCESSES),
            )
            .await
            .map_err(SetupError::of("cannot set the install's limits"))?;
        }
        let dir = tempfile::Builder::new()
            .prefix("switchyard-install-")
            .tempdir()
            .map_err(SetupError::of("cannot create the install's directory"))?;
        for (name, bytes) in &run.files {
            std::fs::write(dir.path().join(name), bytes)
                .map_err(SetupError::of("cannot stage the install's files"))?;
        }
        let limits = Limits {
            address_space_bytes: None,
            cpu_seconds: Some(run.timeout.as_secs() + 1),
            file_size_bytes: u64::from(run.tmp_mb) << 20,
            processes: INSTALL_PROCESSES,
        };
        let confine = Confine {
            uid: Some(slot.uid),
            stage: Some(dir.path()),
            tmp_mb: run.tmp_mb,
            ro: {
                // The host's trust store, for HTTPS indexes (TLS is end to end through the proxy).
                let mut ro = program_tree(run.program);
                ro.extend(run.ro.iter().cloned());
                ro.extend(
                    [TRUST_STORE]
                        .map(std::path::PathBuf::from)
                        .into_iter()
                        .filter(|p| p.is_dir()),
                );
                ro
            },
            exe: false,
            cgroup: group.as_ref(),
            index_proxy: true,
            out: run.out,
            packages: None,
        };
        let argv = iso.wrap(&limits, &confine, &run.program.to_string_lossy(), &run.args);
        let (hub_end, child_end) = std::os::unix::net::UnixStream::pair()
            .map_err(SetupError::of("cannot open the proxy channel"))?;
        let proxy_url = format!("http://127.0.0.1:{}", crate::sandbox_exec::INDEX_PROXY_PORT);
        let work = iso.work_dir(dir.path());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &work)
            .env("TMPDIR", &work)
            .env("LANG", "C.UTF-8")
            .env("HTTP_PROXY", &proxy_url)
            .env("HTTPS_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("https_proxy", &proxy_url)
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(OwnedFd::from(child_end)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        drop(cmd);
        let mut child = spawned.map_err(SetupError::of("cannot start the installer"))?;
        let serving = self.proxy.serve(
            hub_end,
            crate::index_proxy::Allowance {
                deadline: run.timeout,
                max_bytes: u64::from(run.download_mb) << 20,
            },
        );
        let out = tokio::spawn(read_capped(child.stdout.take().expect("piped")));
        let err = tokio::spawn(read_capped(child.stderr.take().expect("piped")));
        let waited = tokio::time::timeout(run.timeout, child.wait()).await;
        crate::process::kill_group(child.id());
        let _ = child.start_kill();
        let _ = child.wait().await;
        if let Some(g) = &group {
            g.kill_all();
        }
        serving.abort();
        let text = |r: Result<Result<Vec<u8>, Vec<u8>>, _>| {
            let bytes = match r {
                Ok(Ok(b) | Err(b)) => b,
                Err(_) => Vec::new(),
            };
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (stdout, stderr) = (text(out.await), text(err.await));
        Ok(match waited {
            Ok(status) => InstallOutput {
                exit: status.ok().and_then(|s| s.code()),
                timed_out: false,
                stdout,
                stderr,
            },
            Err(_) => InstallOutput {
                exit: None,
                timed_out: true,
                stdout,
                stderr,
            },
        })
    }
}
