//! Executors as the fronts define and run them: a definition checked against what this instance
//! can run (its languages, the operator's bounds, the egress policy) and compiled before it is
//! saved; a run now with a given input (a preview); what the sandbox offers, for readiness.

use crate::{Hub, HubError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use switchyard_core::CoreError;
use switchyard_core::executor::{
    Executor, ExecutorSpec, Language, Run, RunFailure, SpecDraft, SpecLimits,
};
use switchyard_core::ids::OrgId;
use switchyard_exec::Waiting;
use switchyard_exec::sandbox::Isolation;

/// An executor as a front defines it, before [`Hub::define_executor`] checks it.
#[derive(Debug, Clone, Default)]
pub struct ExecutorDefinition {
    pub name: String,
    pub description: String,
    pub spec: SpecDraft,
    /// Input property → dot path into the event.
    pub parameters: Option<BTreeMap<String, String>>,
    pub retries: Option<u32>,
    /// Offered to AI agents as this tool.
    pub tool: Option<switchyard_core::tool::ToolDraft>,
    /// The packages its code declares.
    pub packages: Option<switchyard_core::packages::PackageSet>,
}

/// What this instance's sandbox offers, as `/readyz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// The isolation layers in force, in words.
    pub sandbox: String,
    pub isolation: Isolation,
    /// The languages executors can use here.
    pub languages: Vec<&'static str>,
    /// Memory of all runs at once, MiB.
    pub run_memory_budget_mb: u32,
}

/// How long a package directory no stored version uses is kept before it is removed.
pub const PACKAGE_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// How often unused package directories are looked for.
const PACKAGE_SWEEP: std::time::Duration = std::time::Duration::from_secs(600);

impl Hub {
    /// This node's package directories: what installs cut short by a stop left is cleared at
    /// start, and a delivering node starts again the installs a stop cut short; then, every so often, directories no stored version uses are removed once
    /// [`PACKAGE_GRACE`] has passed.
    pub(crate) async fn packages_loop(self, delivers: bool) {
        let runner = self.inner.runner.clone();
        let _ = tokio::task::spawn_blocking(move || runner.clear_package_leftovers()).await;
        // Installs a stop cut short start again (a node that delivers does it; the same lock
        // lands in the same directory, whichever node finishes first).
        if delivers {
            match self.inner.store.executors_installing().await {
                Ok(versions) => {
                    for ex in versions {
                        if let Some(set) = ex.packages().cloned() {
                            self.install_packages(&ex, set);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "installs cut short could not be read"),
            }
        }
        let mut tick = tokio::time::interval(PACKAGE_SWEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.cancel.cancelled() => return,
            }
            let keys = match self.inner.store.packages_in_use().await {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(error = %e, "the package directories in use could not be read");
                    continue;
                }
            };
            let runner = self.inner.runner.clone();
            if let Ok(removed) = tokio::task::spawn_blocking(move || {
                runner.remove_unused_packages(&keys, PACKAGE_GRACE)
            })
            .await
                && !removed.is_empty()
            {
                tracing::info!(?removed, "unused package directories removed");
            }
        }
    }

    /// Checks a definition of an executor of `org` — its spec within what this instance can
    /// run, the executor's own rules, and that its code compiles (the interpreter's message
    /// and line when it does not) — and makes the executor to save with
    /// [`Hub::put_executor`].
    pub async fn define_executor(
        &self,
        org: &OrgId,
        def: ExecutorDefinition,
    ) -> Result<Executor, HubError> {
        let runner = &self.inner.runner;
        // (The limits borrow a closure that is not `Sync`: they end before the check awaits.)
        let spec = {
            let available = |l: Language| {
                runner
                    .language_available(l)
                    .map_err(|e| CoreError::invalid(e.to_string()))
            };
            let limits = SpecLimits {
                policy: self.clients().policy(),
                max_tmp_mb: runner.max_tmp_mb(),
                language_available: &available,
            };
            ExecutorSpec::parse(def.spec, &limits)?
        };
        let ex = Executor::define(
            org,
            &def.name,
            def.description,
            spec,
            def.parameters,
            def.retries,
        )?
        .with_tool(def.tool)?
        .with_packages(def.packages)?;
        if let (Some(_), ExecutorSpec::Code { language, .. }) = (ex.packages(), ex.spec())
            && let Some(eco) = switchyard_core::packages::Ecosystem::of(*language)
            && !self.inner.runner.installs_packages(eco)
        {
            return Err(HubError::Invalid(CoreError::invalid(format!(
                "`packages`: this hub does not install {} packages (its sandbox cannot run installers, `[packages]` is off, or the installer is not installed)",
                eco.as_str()
            ))));
        }
        // Code that does not compile is refused now, not at its first event.
        match runner.check_code(org, ex.spec()).await {
            Ok(()) => Ok(ex),
            Err((RunFailure::NoRoom, why)) => Err(HubError::NoRoom(format!(
                "the code could not be checked: {why}"
            ))),
            Err((_, why)) => Err(HubError::Invalid(CoreError::invalid(format!(
                "the code does not compile: {why}"
            )))),
        }
    }

    /// Runs executor `name` of `org` now with `input` (a preview); the run is stored like any
    /// other. A failure of the code is the run's, not an error.
    pub async fn run_executor(
        &self,
        org: &OrgId,
        name: &str,
        input: Value,
    ) -> Result<Run, HubError> {
        let ex = self.inner.store.get_executor(org, name).await?;
        let run = self
            .inner
            .runner
            .run_while_waiting(&ex, input, Waiting::default());
        Ok(run.await?)
    }

    /// What the sandbox offers on this node.
    pub fn sandbox_report(&self) -> SandboxReport {
        let runner = &self.inner.runner;
        SandboxReport {
            sandbox: runner.isolation().level(),
            isolation: runner.isolation().clone(),
            languages: runner.languages(),
            run_memory_budget_mb: runner.memory_budget_mb(),
        }
    }
}
