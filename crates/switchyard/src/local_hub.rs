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
    _dir: tempfile::TempDir,
}

impl Drop for LocalHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let admin_key = switchyard_core::crypto::generate_api_key();
        let exe = std::env::current_exe()?;
        let child = std::process::Command::new(exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(&config_file)
            .env("SWITCHYARD_ADMIN_KEY", &admin_key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("starting a hub")?;
        let mut hub = LocalHub {
            child,
            url: format!("http://127.0.0.1:{port}"),
            admin_key,
            _dir: dir,
        };
        for _ in 0..400 {
            if let Some(status) = hub.child.try_wait()? {
                bail!("the hub stopped at start ({status})");
            }
            if client
                .get(format!("{}/readyz", hub.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(hub);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the hub did not become ready within 20 s")
    }
}
