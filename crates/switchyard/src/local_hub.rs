//! A hub of this binary started as a child process in a temporary data dir, for commands that
//! need one of their own: `bench` (whose memory is then measured alone) and `executors test`
//! (which runs executors on the very runtime the hub uses).

use anyhow::{Context, bail};
use std::process::Stdio;
use std::time::Duration;

/// A hub started by this process; killed, and its data dir removed, when dropped.
pub struct LocalHub {
    pub child: std::process::Child,
    /// The hub's base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its instance admin key.
    pub admin_key: String,
    dir: tempfile::TempDir,
}

impl Drop for LocalHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (this binary's `serve`, its flags and environment set, no `--listen`) on
/// a port of 127.0.0.1 the system picks, and waits up to `bound` until it serves and is ready.
/// The one way the binary's tools and tests start a hub of their own: the hub writes the
/// address it bound to a file (`--addr-file`), so no port is guessed and raced for.
pub async fn launch(
    mut command: std::process::Command,
    client: &reqwest::Client,
    bound: Duration,
) -> anyhow::Result<(std::process::Child, String)> {
    let scratch = tempfile::tempdir()?;
    let addr_file = scratch.path().join("addr");
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--addr-file"])
        .arg(&addr_file)
        .spawn()
        .context("starting a hub")?;
    let started = std::time::Instant::now();
    let mut url = None;
    while started.elapsed() < bound {
        if let Some(status) = child.try_wait()? {
            bail!("the hub stopped at start ({status})");
        }
        if url.is_none()
            && let Ok(addr) = std::fs::read_to_string(&addr_file)
        {
            url = Some(format!("http://{}", addr.trim()));
        }
        if let Some(u) = &url
            && client
                .get(format!("{u}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        {
            return Ok((child, u.clone()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!("the hub did not become ready within {bound:?}")
}

impl LocalHub {
    /// Starts `switchyard serve` on a free loopback port with `config` as its settings file and
    /// `args` added to its command line, and waits until it is ready.
    pub async fn start(
        client: &reqwest::Client,
        config: &str,
        args: &[&str],
    ) -> anyhow::Result<LocalHub> {
        let dir = tempfile::tempdir()?;
        let config_file = dir.path().join("switchyard.toml");
        std::fs::write(&config_file, config)?;
        let admin_key = switchyard_core::crypto::generate_api_key();
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config_file)
            .env("SWITCHYARD_ADMIN_KEY", &admin_key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        let (child, url) = launch(command, client, Duration::from_secs(60)).await?;
        Ok(LocalHub {
            child,
            url,
            admin_key,
            dir,
        })
    }

    /// The hub's data dir (its SQLite database and write-ahead log live there).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
