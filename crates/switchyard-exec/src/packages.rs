//! Executors' packages on disk: an installer run in its sandbox (`install.rs`) resolves what an
//! executor declares against the configured index and installs it into a size-limited tmpfs;
//! what it installed becomes a content-addressed, read-only directory keyed by the ecosystem
//! and the resolved lock (`pip-<sha256 of the lock>`), shared by every version and organization
//! with the same lock. The lock (for pip: each resolved distribution, `name==version
//! --hash=sha256:…`; npm's `package-lock.json`; Composer's `composer.lock`) is what makes a
//! version reproducible.

use crate::install::{InstallRun, Installer};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::executor::Language;
use switchyard_core::packages::{Ecosystem, PackageSet};

mod ecosystems;
pub use ecosystems::installer_present;

/// Where installs come from and how large they may be.
#[derive(Debug, Clone)]
pub struct PackageSettings {
    /// Where the installed directories live (the data dir's `packages/`).
    pub root: PathBuf,
    /// pip's index (a PEP 503 simple index).
    pub pip_index: url::Url,
    /// npm's registry.
    pub npm_registry: url::Url,
    /// Composer's repository (a `composer` repository: Packagist, or the operator's mirror).
    pub composer_repository: url::Url,
    /// More hosts installs may download from (where an index keeps its files: PyPI's are on
    /// files.pythonhosted.org).
    pub file_hosts: Vec<url::Url>,
    /// Let npm run packages' install scripts and Composer its plugins (still in the
    /// installer's sandbox); off by default, so no package's code runs when it is installed.
    pub install_scripts: bool,
    /// Largest install, MiB (the installer's output tmpfs).
    pub max_mb: u32,
    /// Longest install.
    pub timeout: Duration,
}

/// An installed lock.
#[derive(Debug, Clone)]
pub struct Installed {
    /// `pip-<sha256 of the lock>`: the directory's name under the root.
    pub key: String,
    pub dir: PathBuf,
    pub lock: String,
}

/// Why an install did not give a directory.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallFailed {
    /// What was declared cannot be installed as it is (the message names the rule).
    #[error("{0}")]
    Refused(String),
    /// The installer failed: its output says why (a missing package, no wheel, no space).
    #[error("the installer failed: {0}")]
    Installer(String),
    /// The sandbox or the disk failed.
    #[error("{0}")]
    Setup(String),
}

/// Installs packages and keeps their directories.
#[derive(Clone)]
pub struct Packages {
    settings: Arc<PackageSettings>,
    installer: Arc<Installer>,
    /// One install from a lock at a time per directory (a node lacking it, asked by runs).
    flights:
        Arc<tokio::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl PackageSettings {
    /// Most MiB one connection of an install brings in: past the install's size limit (an
    /// archive is smaller than what it unpacks to, so the disk says no first and says why),
    /// a bound on an index that sends without end.
    fn download_mb(&self) -> u32 {
        self.max_mb.saturating_mul(2).saturating_add(64)
    }

    /// The indexes installs may reach.
    pub fn indexes(&self) -> Vec<crate::index_proxy::Index> {
        let mut all: Vec<crate::index_proxy::Index> = [
            &self.pip_index,
            &self.npm_registry,
            &self.composer_repository,
        ]
        .into_iter()
        .chain(&self.file_hosts)
        .filter_map(crate::index_proxy::Index::of)
        .collect();
        all.dedup();
        all
    }
}

impl Packages {
    /// Where the directory of `key` is (whether or not it is installed here).
    pub fn dir_of(&self, key: &str) -> PathBuf {
        self.settings.root.join(key)
    }

    pub fn new(settings: PackageSettings, installer: Installer) -> Packages {
        Packages {
            settings: Arc::new(settings),
            installer: Arc::new(installer),
            flights: Arc::default(),
        }
    }

    /// Resolves and installs what `set` declares, once it is checked (its one ecosystem, each
    /// package a name and a version, never an option, a URL or a path).
    pub async fn install(&self, set: &PackageSet) -> Result<Installed, InstallFailed> {
        let language = if !set.npm.is_empty() {
            Language::Node
        } else if !set.composer.is_empty() {
            Language::Php
        } else {
            Language::Python
        };
        match set
            .check(language)
            .map_err(|e| InstallFailed::Refused(e.to_string()))?
        {
            Ecosystem::Pip => self.pip_install(&set.pip).await,
            Ecosystem::Npm => self.npm_install(&set.npm).await,
            Ecosystem::Composer => self.composer_install(&set.composer).await,
        }
    }

    /// Resolves and installs `requirements` with pip.
    pub async fn install_pip(&self, requirements: &[String]) -> Result<Installed, InstallFailed> {
        self.install(&PackageSet {
            pip: requirements.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Resolves and installs npm `packages`.
    pub async fn install_npm(&self, packages: &[String]) -> Result<Installed, InstallFailed> {
        self.install(&PackageSet {
            npm: packages.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Resolves and installs Composer `packages` (name → constraint).
    pub async fn install_composer(
        &self,
        packages: &BTreeMap<String, String>,
    ) -> Result<Installed, InstallFailed> {
        self.install(&PackageSet {
            composer: packages.clone(),
            ..Default::default()
        })
        .await
    }

    /// Runs an installer; `Err` with the end of what it said when it failed.
    async fn installed_by(&self, run: InstallRun<'_>) -> Result<(), InstallFailed> {
        let timeout = run.timeout;
        let out = self
            .installer
            .run(run)
            .await
            .map_err(|e| InstallFailed::Setup(e.to_string()))?;
        if out.exit == Some(0) {
            return Ok(());
        }
        Err(InstallFailed::Installer(if out.timed_out {
            format!("it ran longer than {} s", timeout.as_secs())
        } else {
            tail(&format!("{}\n{}", out.stdout, out.stderr))
        }))
    }

    /// The directory of `key`, installed from `lock` first when this node lacks it (another
    /// node installed it, or this one lost it): once, however many runs ask at the same time.
    pub async fn ensure(&self, key: &str, lock: &str) -> Result<PathBuf, InstallFailed> {
        let dir = self.dir_of(key);
        if dir.is_dir() {
            return Ok(dir);
        }
        let flight = {
            let mut flights = self.flights.lock().await;
            flights.entry(key.to_string()).or_default().clone()
        };
        let _only = flight.lock().await;
        if dir.is_dir() {
            return Ok(dir);
        }
        let installed = self.install_locked(key, lock).await;
        self.flights.lock().await.remove(key);
        let installed = installed?;
        if installed.key != key {
            return Err(InstallFailed::Installer(format!(
                "the lock installed as {} where the version names {key}",
                installed.key
            )));
        }
        Ok(installed.dir)
    }

    /// Removes the directories no stored version uses (`in_use`: their keys) that were
    /// installed longer than `grace` ago; answers the keys removed.
    pub fn remove_unused(&self, in_use: &[String], grace: Duration) -> Vec<String> {
        let mut removed = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.settings.root) else {
            return removed;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = ecosystems::ecosystem_of(&name).is_some();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() >= grace);
            if ours
                && old
                && !in_use.contains(&name)
                && std::fs::remove_dir_all(entry.path()).is_ok()
            {
                removed.push(name);
            }
        }
        removed
    }

    /// Clears what installs cut short by a stop left (their tmpfs, their staging copies):
    /// call once at start, before any install.
    pub fn clear_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.settings.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".install-") {
                let _ = umount2(&entry.path(), MntFlags::MNT_DETACH);
            }
            if name.starts_with(".install-") || name.starts_with(".staging-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Moves what was installed to its content-addressed place, read-only (kept as it is when
    /// another install of the same lock got there first).
    fn keep(&self, ecosystem: &str, lock: &str, from: &Path) -> Result<Installed, InstallFailed> {
        // What install scripts wrote is part of a tree: a tree made with them is another one.
        let scripts = if self.settings.install_scripts && ecosystem != "pip" {
            "\nwith install scripts"
        } else {
            ""
        };
        let digest = hex(&Sha256::digest(
            format!("{ecosystem}\n{lock}{scripts}").as_bytes(),
        ));
        let key = format!("{ecosystem}-{digest}");
        let dir = self.settings.root.join(&key);
        let setup = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| InstallFailed::Setup(format!("{what}: {e}"))
        };
        if !dir.exists() {
            let staging = tempfile::Builder::new()
                .prefix(".staging-")
                .tempdir_in(&self.settings.root)
                .map_err(setup("staging the packages"))?;
            let tree = staging.path().join("tree");
            copy_tree(from, &tree).map_err(setup("copying the packages"))?;
            read_only(&tree).map_err(setup("making the packages read-only"))?;
            if let Err(e) = std::fs::rename(&tree, &dir)
                && !dir.exists()
            {
                return Err(setup("keeping the packages")(e));
            }
        }
        Ok(Installed {
            key,
            dir,
            lock: lock.to_string(),
        })
    }
}

/// The last lines of what an installer said (its error is at the end).
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies a tree (files, directories, symbolic links as links).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Every file readable and not writable by anyone, every directory searchable.
fn read_only(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            read_only(&entry.path())?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            let exec = if mode & 0o111 != 0 { 0o555 } else { 0o444 };
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(exec))?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}

/// The installer's output: a tmpfs of the install's size limit, mounted by the hub under the
/// packages root and bound into the installer's root; unmounted and removed when dropped.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn mount(root: &Path, max_mb: u32) -> Result<Scratch, InstallFailed> {
        let setup = |what: &'static str| {
            move |e: std::io::Error| InstallFailed::Setup(format!("{what}: {e}"))
        };
        std::fs::create_dir_all(root).map_err(setup("creating the packages directory"))?;
        let dir = tempfile::Builder::new()
            .prefix(".install-")
            .tempdir_in(root)
            .map_err(setup("creating the install's directory"))?;
        let data = format!("size={max_mb}m,nr_inodes=65536,mode=0777");
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|e| InstallFailed::Setup(format!("mounting the install's tmpfs: {e}")))?;
        Ok(Scratch { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
    }
}
