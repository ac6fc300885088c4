//! The three installers, as the hub runs them: each one's command line and settings (pip
//! wheels only, npm without install scripts, Composer without scripts or plugins and from the
//! configured repository alone, unless the operator allows them), and how each one's lock is
//! read from what it wrote and turned back into what installs it again on another node.

use super::{InstallFailed, Installed, Packages, Scratch};
use crate::install::InstallRun;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use switchyard_core::executor::Language;
use switchyard_core::packages::Ecosystem;

/// The installer's own memory (pip resolving, npm's tree).
const INSTALLER_MB: u32 = 512;

impl Packages {
    /// Installs `lock` again, exactly, with the installer of the ecosystem `key` names (a node
    /// lacking a version's directory).
    pub(super) async fn install_locked(
        &self,
        key: &str,
        lock: &str,
    ) -> Result<Installed, InstallFailed> {
        match ecosystem_of(key) {
            Some(Ecosystem::Pip) => {
                let scratch = self.pip(lock, true).await?;
                self.keep("pip", lock, &scratch.path().join("site"))
            }
            Some(Ecosystem::Npm) => {
                let scratch = Scratch::mount(&self.settings.root, self.settings.max_mb)?;
                std::fs::write(scratch.path().join("package-lock.json"), lock)
                    .and_then(|()| {
                        std::fs::write(scratch.path().join("package.json"), npm_manifest(lock))
                    })
                    .map_err(|e| InstallFailed::Setup(format!("staging the lock: {e}")))?;
                self.npm(&scratch, "ci", &[]).await?;
                self.keep("npm", lock, scratch.path())
            }
            Some(Ecosystem::Composer) => {
                let scratch = Scratch::mount(&self.settings.root, self.settings.max_mb)?;
                self.composer(&scratch, &composer_locked(lock), Some(lock))
                    .await?;
                self.keep_vendor(lock, &scratch)
            }
            None => Err(InstallFailed::Refused(format!("no installer for `{key}`"))),
        }
    }

    /// pip, wheels only (no package's code runs), from the configured index.
    pub(super) async fn pip_install(
        &self,
        requirements: &[String],
    ) -> Result<Installed, InstallFailed> {
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
    pub(super) async fn npm_install(
        &self,
        packages: &[String],
    ) -> Result<Installed, InstallFailed> {
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
    pub(super) async fn composer_install(
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

/// The ecosystem whose directory `key` names (`pip-<sha256>`, `npm-…`, `composer-…`).
pub(super) fn ecosystem_of(key: &str) -> Option<Ecosystem> {
    [Ecosystem::Pip, Ecosystem::Npm, Ecosystem::Composer]
        .into_iter()
        .find(|e| {
            key.strip_prefix(e.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
        })
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
