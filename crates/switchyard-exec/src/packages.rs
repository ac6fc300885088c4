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

/// The installer's own memory (pip resolving, npm's tree).
const INSTALLER_MB: u32 = 512;

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

    /// pip, wheels only (no package's code runs), from the configured index.
    async fn pip_install(&self, requirements: &[String]) -> Result<Installed, InstallFailed> {
        let mut file = requirements.join("\n");
        file.push('\n');
        let scratch = self.pip(&file, false).await?;
        let report = std::fs::read(scratch.path().join("report.json"))
            .map_err(|e| InstallFailed::Installer(format!("pip wrote no report: {e}")))?;
        let lock = pip_lock(&report)?;
        self.keep("pip", &lock, &scratch.path().join("site"))
    }

    /// Runs pip on `requirements` (a requirements file's text); `locked`: exactly those,
    /// each with its hash, nothing resolved beyond them.
    async fn pip(&self, requirements: &str, locked: bool) -> Result<Scratch, InstallFailed> {
        let s = &self.settings;
        let scratch = Scratch::mount(&s.root, s.max_mb)?;
        let mut args = vec![
            "-I",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            "/out/site",
            "--report",
            "/out/report.json",
            "--index-url",
            s.pip_index.as_str(),
            "-r",
            "requirements.txt",
        ];
        if locked {
            args.extend(["--require-hashes", "--no-deps"]);
        }
        let run = InstallRun {
            program: Path::new("/usr/bin/python3"),
            args: args.into_iter().map(String::from).collect(),
            env: Vec::new(),
            files: vec![("requirements.txt".into(), requirements.as_bytes().to_vec())],
            memory_mb: INSTALLER_MB,
            tmp_mb: 64,
            timeout: s.timeout,
            out: Some(scratch.path()),
            ro: Vec::new(),
            download_mb: s.download_mb(),
        };
        self.installed_by(run).await?;
        Ok(scratch)
    }

    /// npm, from the configured registry, with no install scripts (`--ignore-scripts`, unless
    /// the operator allows them): no package's code runs.
    async fn npm_install(&self, packages: &[String]) -> Result<Installed, InstallFailed> {
        let scratch = Scratch::mount(&self.settings.root, self.settings.max_mb)?;
        self.npm(&scratch, "install", packages).await?;
        let lock =
            std::fs::read_to_string(scratch.path().join("package-lock.json")).map_err(|e| {
                InstallFailed::Installer(format!("npm wrote no package-lock.json: {e}"))
            })?;
        self.keep("npm", &lock, scratch.path())
    }

    /// Runs `npm COMMAND PACKAGES…` on the install's output directory.
    async fn npm(
        &self,
        scratch: &Scratch,
        command: &str,
        packages: &[String],
    ) -> Result<(), InstallFailed> {
        let s = &self.settings;
        let npm_cli = std::fs::canonicalize("/usr/bin/npm")
            .or_else(|_| std::fs::canonicalize("/usr/local/bin/npm"))
            .map_err(|_| InstallFailed::Setup("npm is not installed on this hub".into()))?;
        let node = crate::runtime::interpreter_path(Language::Node)
            .map_err(|e| InstallFailed::Setup(e.to_string()))?;
        let proxy = format!("http://127.0.0.1:{}", crate::sandbox_exec::INDEX_PROXY_PORT);
        let mut args: Vec<String> = vec![
            npm_cli.to_string_lossy().into_owned(),
            command.into(),
            "--no-audit".into(),
            "--no-fund".into(),
            "--no-update-notifier".into(),
            "--save-exact".into(),
            "--cache".into(),
            "/tmp/.npm".into(),
            "--registry".into(),
            s.npm_registry.to_string(),
            "--proxy".into(),
            proxy.clone(),
            "--https-proxy".into(),
            proxy,
            "--prefix".into(),
            "/out".into(),
            "--".into(),
        ];
        if !s.install_scripts {
            args.insert(2, "--ignore-scripts".into());
        }
        args.extend(packages.iter().cloned());
        // Node.js trusts its own CA list; the host's store too (a mirror or proxy with the
        // operator's CA).
        let bundle = format!("{}/ca-certificates.crt", crate::install::TRUST_STORE);
        let env = if Path::new(&bundle).is_file() {
            vec![("NODE_EXTRA_CA_CERTS".to_string(), bundle)]
        } else {
            Vec::new()
        };
        self.tool(&node, args, env, Vec::new(), scratch).await
    }

    /// Runs an installer that writes into `scratch` (npm, Composer): the install's limits.
    async fn tool(
        &self,
        program: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
        ro: Vec<PathBuf>,
        scratch: &Scratch,
    ) -> Result<(), InstallFailed> {
        let s = &self.settings;
        self.installed_by(InstallRun {
            program,
            args,
            env,
            files: Vec::new(),
            memory_mb: INSTALLER_MB,
            tmp_mb: s.max_mb.max(64),
            timeout: s.timeout,
            out: Some(scratch.path()),
            ro,
            download_mb: s.download_mb(),
        })
        .await
    }

    /// Composer, from the configured repository alone (Packagist only when it is the one
    /// configured), with no scripts and no plugins (unless the operator allows them): no
    /// package's code runs.
    async fn composer_install(
        &self,
        packages: &BTreeMap<String, String>,
    ) -> Result<Installed, InstallFailed> {
        let scratch = Scratch::mount(&self.settings.root, self.settings.max_mb)?;
        self.composer(&scratch, packages, None).await?;
        let lock = std::fs::read_to_string(scratch.path().join("composer.lock")).map_err(|e| {
            InstallFailed::Installer(format!("Composer wrote no composer.lock: {e}"))
        })?;
        self.keep_vendor(&lock, &scratch)
    }

    /// Keeps what Composer installed, `vendor/` alone (mounted, it is `/packages/vendor`).
    fn keep_vendor(&self, lock: &str, scratch: &Scratch) -> Result<Installed, InstallFailed> {
        for file in ["composer.json", "composer.lock"] {
            std::fs::remove_file(scratch.path().join(file))
                .map_err(|e| InstallFailed::Setup(format!("clearing {file}: {e}")))?;
        }
        self.keep("composer", lock, scratch.path())
    }

    /// Runs `composer install` in the install's output directory: resolving `require` (and
    /// writing `composer.lock`), or, given a `lock`, installing exactly what it holds.
    async fn composer(
        &self,
        scratch: &Scratch,
        require: &BTreeMap<String, String>,
        lock: Option<&str>,
    ) -> Result<(), InstallFailed> {
        let s = &self.settings;
        let php = crate::runtime::interpreter_path(Language::Php)
            .map_err(|e| InstallFailed::Setup(e.to_string()))?;
        let composer = COMPOSER
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| InstallFailed::Setup("Composer is not installed on this hub".into()))?;
        let setup = |e: std::io::Error| InstallFailed::Setup(format!("staging composer.json: {e}"));
        std::fs::write(
            scratch.path().join("composer.json"),
            composer_manifest(require, &s.composer_repository, s.install_scripts),
        )
        .map_err(setup)?;
        if let Some(lock) = lock {
            std::fs::write(scratch.path().join("composer.lock"), lock).map_err(setup)?;
        }
        let mut args = [
            composer.to_str().unwrap_or("/usr/bin/composer"),
            "install",
            "--no-dev",
            "--no-interaction",
            "--no-progress",
            "--prefer-dist",
            "--working-dir",
            "/out",
        ]
        .map(String::from)
        .to_vec();
        if !s.install_scripts {
            args.extend(["--no-scripts".into(), "--no-plugins".into()]);
        }
        let env = [
            ("COMPOSER_HOME", "/tmp/.composer"),
            ("COMPOSER_CACHE_DIR", "/tmp/.composer/cache"),
            ("COMPOSER_NO_INTERACTION", "1"),
            ("COMPOSER_DISABLE_XDEBUG_WARN", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        let mut ro = vec![PathBuf::from(composer)];
        // Composer runs with the host's PHP command-line settings (the extensions it needs:
        // iconv or mbstring, phar), read-only; runs never see them.
        ro.extend(
            [PHP_CLI_SETTINGS]
                .map(PathBuf::from)
                .into_iter()
                .filter(|p| p.is_dir()),
        );
        self.tool(&php, args, env, ro, scratch).await
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
        let installed = if key.starts_with("pip-") {
            let scratch = self.pip(lock, true).await?;
            self.keep("pip", lock, &scratch.path().join("site"))?
        } else if key.starts_with("npm-") {
            let scratch = Scratch::mount(&self.settings.root, self.settings.max_mb)?;
            std::fs::write(scratch.path().join("package-lock.json"), lock)
                .and_then(|()| {
                    std::fs::write(scratch.path().join("package.json"), npm_manifest(lock))
                })
                .map_err(|e| InstallFailed::Setup(format!("staging the lock: {e}")))?;
            self.npm(&scratch, "ci", &[]).await?;
            self.keep("npm", lock, scratch.path())?
        } else if key.starts_with("composer-") {
            let scratch = Scratch::mount(&self.settings.root, self.settings.max_mb)?;
            self.composer(&scratch, &composer_locked(lock), Some(lock))
                .await?;
            self.keep_vendor(lock, &scratch)?
        } else {
            return Err(InstallFailed::Refused(format!("no installer for `{key}`")));
        };
        self.flights.lock().await.remove(key);
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
            let ours = ["pip-", "npm-", "composer-"]
                .iter()
                .any(|eco| name.starts_with(eco));
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

/// The lock of a pip install: each distribution its report says it installed, with the hash
/// of what was downloaded, sorted.
fn pip_lock(report: &[u8]) -> Result<String, InstallFailed> {
    let bad = |why: &str| InstallFailed::Installer(format!("pip's report: {why}"));
    let v: serde_json::Value = serde_json::from_slice(report).map_err(|e| bad(&e.to_string()))?;
    let mut lines = Vec::new();
    for item in v["install"].as_array().ok_or_else(|| bad("no `install`"))? {
        let name = item["metadata"]["name"]
            .as_str()
            .ok_or_else(|| bad("a name"))?;
        let version = item["metadata"]["version"]
            .as_str()
            .ok_or_else(|| bad("a version"))?;
        let hash = item["download_info"]["archive_info"]["hashes"]["sha256"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                item["download_info"]["archive_info"]["hash"]
                    .as_str()
                    .and_then(|h| h.strip_prefix("sha256="))
                    .map(str::to_string)
            })
            .ok_or_else(|| bad(&format!("no sha256 for {name}")))?;
        lines.push(format!(
            "{}=={version} --hash=sha256:{hash}",
            name.to_ascii_lowercase()
        ));
    }
    lines.sort();
    Ok(lines.join("\n") + "\n")
}

/// The `package.json` an npm lock was made from: its root's dependencies.
fn npm_manifest(lock: &str) -> String {
    let deps = serde_json::from_str::<serde_json::Value>(lock)
        .ok()
        .and_then(|l| l["packages"][""]["dependencies"].as_object().cloned())
        .unwrap_or_default();
    serde_json::json!({"dependencies": deps}).to_string()
}

/// Where Composer may be installed on the hub.
const COMPOSER: [&str; 2] = ["/usr/bin/composer", "/usr/local/bin/composer"];

/// Whether the hub has the installer of `ecosystem` (pip for `/usr/bin/python3`, npm, Composer).
pub fn installer_present(ecosystem: Ecosystem) -> bool {
    match ecosystem {
        Ecosystem::Pip => Path::new("/usr/bin/python3").is_file(),
        Ecosystem::Npm => ["/usr/bin/npm", "/usr/local/bin/npm"]
            .iter()
            .any(|p| Path::new(p).exists()),
        Ecosystem::Composer => COMPOSER.iter().any(|p| Path::new(p).is_file()),
    }
}

/// Where the host's PHP keeps its settings (Debian's layout), for Composer.
const PHP_CLI_SETTINGS: &str = "/etc/php";

/// The `composer.json` an install runs on: `require`, the configured repository alone
/// (Packagist is off unless it is that one), plugins only when `plugins`, a fixed autoloader
/// name (so a lock installs the same files on every node), plain HTTP only when the
/// repository is.
fn composer_manifest(
    require: &BTreeMap<String, String>,
    repository: &url::Url,
    plugins: bool,
) -> String {
    serde_json::json!({
        "require": require,
        "repositories": [
            {"type": "composer", "url": repository.as_str().trim_end_matches('/')},
            {"packagist.org": false}
        ],
        "config": {
            "allow-plugins": plugins,
            "secure-http": repository.scheme() == "https",
            "notify-on-install": false,
            "autoloader-suffix": "Switchyard",
            "lock": true
        }
    })
    .to_string()
}

/// What a `composer.lock` holds, as `require` (each package at its locked version): the
/// `composer.json` a node installs that lock with.
fn composer_locked(lock: &str) -> BTreeMap<String, String> {
    let lock: serde_json::Value = serde_json::from_str(lock).unwrap_or_default();
    lock["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_string(),
                p["version"].as_str()?.to_string(),
            ))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pip_lock_is_sorted_names_versions_and_hashes() {
        let report = br#"{"install": [
            {"metadata": {"name": "Zed", "version": "1"}, "download_info": {"archive_info": {"hash": "sha256=bb"}}},
            {"metadata": {"name": "abc", "version": "2"}, "download_info": {"archive_info": {"hashes": {"sha256": "aa"}}}}
        ]}"#;
        assert_eq!(
            pip_lock(report).expect("lock"),
            "abc==2 --hash=sha256:aa\nzed==1 --hash=sha256:bb\n"
        );
    }
}
