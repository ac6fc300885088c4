//! The rules of executors' packages: what a code executor may declare (pip requirements for
//! Python, npm packages for Node.js, Composer packages for PHP — names and versions, never
//! options, URLs, paths or VCS references, which would reach past the configured index), and
//! the state of a version's install.

use crate::CoreError;
use crate::executor::Language;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Packages one executor may declare.
pub const MAX_PACKAGES: usize = 50;
/// Longest declaration of one package.
const MAX_SPEC: usize = 200;

/// What an executor declares, per ecosystem (one, its language's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSet {
    /// Python: requirements, e.g. `requests==2.32.3`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pip: Vec<String>,
    /// Node.js: packages, e.g. `lodash@4.17.21`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub npm: Vec<String>,
    /// PHP: package → version constraint, e.g. `{"guzzlehttp/guzzle": "^7.9"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub composer: BTreeMap<String, String>,
}

/// The installers a hub has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Pip,
    Npm,
    Composer,
}

impl Ecosystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Pip => "pip",
            Ecosystem::Npm => "npm",
            Ecosystem::Composer => "composer",
        }
    }

    /// The ecosystem code in `language` installs from.
    pub fn of(language: Language) -> Option<Ecosystem> {
        match language {
            Language::Python => Some(Ecosystem::Pip),
            Language::Node => Some(Ecosystem::Npm),
            Language::Php => Some(Ecosystem::Composer),
            Language::Javascript => None,
        }
    }
}

fn plain(s: &str, extra: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '@')
        && s.len() <= MAX_SPEC
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c))
}

impl PackageSet {
    /// Checks a declaration for code in `language`: its one ecosystem, 1–50 packages, each a
    /// name with a version.
    pub fn check(&self, language: Language) -> Result<Ecosystem, CoreError> {
        let Some(eco) = Ecosystem::of(language) else {
            return Err(CoreError::invalid(
                "`packages`: JavaScript executors run in the embedded engine, which loads no packages (use `node` for npm packages)",
            ));
        };
        let given: Vec<Ecosystem> = [
            (!self.pip.is_empty()).then_some(Ecosystem::Pip),
            (!self.npm.is_empty()).then_some(Ecosystem::Npm),
            (!self.composer.is_empty()).then_some(Ecosystem::Composer),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given != [eco] {
            return Err(CoreError::invalid(format!(
                "`packages`: {} code installs from `{}` only, and at least one package",
                language.as_str(),
                eco.as_str()
            )));
        }
        let count = self.pip.len() + self.npm.len() + self.composer.len();
        if count > MAX_PACKAGES {
            return Err(CoreError::invalid(format!(
                "`packages`: at most {MAX_PACKAGES} packages"
            )));
        }
        let refuse = |what: &str, example: &str| {
            CoreError::invalid(format!(
                "`packages.{}`: `{what}` is not a package this hub installs (a name with an optional version, e.g. `{example}`; no options, URLs, paths or VCS references)",
                eco.as_str()
            ))
        };
        for r in &self.pip {
            if !plain(r, "=<>!~,[] ") || r.starts_with('@') {
                return Err(refuse(r, "requests==2.32.3"));
            }
        }
        for p in &self.npm {
            if !plain(p, "@/^~<>= ") {
                return Err(refuse(p, "lodash@4.17.21"));
            }
        }
        for (name, constraint) in &self.composer {
            let constraint_ok = !constraint.trim().is_empty()
                && constraint.len() <= MAX_SPEC
                && constraint
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-^~<>=*|, @".contains(c));
            if !plain(name, "/") || !name.contains('/') || !constraint_ok {
                return Err(refuse(
                    &format!("{name}: {constraint}"),
                    "guzzlehttp/guzzle: ^7.9",
                ));
            }
        }
        Ok(eco)
    }
}

/// Where a version's install stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PackageState {
    /// Being resolved and installed; runs wait for nothing and fail saying so.
    Installing,
    /// Installed: `key` names its directory (`pip-<sha256 of the lock>`), `lock` what was
    /// resolved (a version is reproducible from it).
    Ready { key: String, lock: String },
    /// The install failed; `output` is what the installer said.
    Failed { output: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pip(r: &[&str]) -> PackageSet {
        PackageSet {
            pip: r.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_declaration_names_packages_of_its_languages_ecosystem() {
        assert_eq!(
            pip(&["requests==2.32.3", "pydantic[email]>=2,<3"])
                .check(Language::Python)
                .ok(),
            Some(Ecosystem::Pip)
        );
        let npm = PackageSet {
            npm: vec!["lodash@4.17.21".into(), "@scope/pkg@^1".into()],
            ..Default::default()
        };
        assert_eq!(npm.check(Language::Node).ok(), Some(Ecosystem::Npm));
        let composer = PackageSet {
            composer: BTreeMap::from([("guzzlehttp/guzzle".into(), "^7.9".into())]),
            ..Default::default()
        };
        assert_eq!(
            composer.check(Language::Php).ok(),
            Some(Ecosystem::Composer)
        );
        assert!(npm.check(Language::Python).is_err(), "npm for Python");
        assert!(pip(&["six"]).check(Language::Javascript).is_err());
        assert!(PackageSet::default().check(Language::Python).is_err());
    }

    #[test]
    fn options_urls_paths_and_vcs_references_are_refused() {
        for bad in [
            "-e git+https://x/y",
            "--index-url=https://evil",
            "pkg @ https://evil/pkg.whl",
            "./local",
            "pkg; os_name=='posix'",
        ] {
            assert!(pip(&[bad]).check(Language::Python).is_err(), "{bad}");
        }
        for bad in [
            "git+https://x/y.git",
            "file:../x",
            "https://evil/x.tgz",
            "x@github:a/b",
        ] {
            let set = PackageSet {
                npm: vec![bad.into()],
                ..Default::default()
            };
            assert!(set.check(Language::Node).is_err(), "{bad}");
        }
    }
}
