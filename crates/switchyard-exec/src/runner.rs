//! The runner: one executor version and an input in, a stored [`Run`] out; and event hooks.

use crate::broker::Broker;
use crate::capacity::Capacity;
use crate::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::executor::{Executor, ExecutorSpec, Language, Run, RunStatus};
use switchyard_core::hooks::{HookResult, HookRunner};
use switchyard_core::ids::OrgId;
use switchyard_core::time::now_ms;
use switchyard_egress::Clients;
use switchyard_fair::Shares;
use switchyard_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How long compiling an executor's code may take when it is saved.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a run stopped when its caller went away.
pub(crate) const CANCELLED: &str = "cancelled: the caller went away; the code was stopped";

/// Who waits for a run ([`Runner::run_while_waiting`]): until when, how it says it left, and
/// what the run is for.
#[derive(Debug, Clone, Default)]
pub struct Waiting {
    /// The latest the caller waits (`None`: the executor's own timeout).
    pub deadline: Option<Instant>,
    /// Fires when the caller no longer waits (`None`: only dropping the wait says so).
    pub cancel: Option<CancellationToken>,
    /// The event that caused the run (event hooks, synchronous subscriptions).
    pub event_id: Option<switchyard_core::ids::EventId>,
    /// The synchronous hook whose call made it.
    pub hook: Option<String>,
}

/// Who asked for a run, and until when it may take.
pub(crate) struct Call<'a> {
    /// The run's id, known from its start so that its log lines carry it.
    pub(crate) id: switchyard_core::ids::RunId,
    /// The event that caused it (event hooks).
    pub(crate) event_id: Option<&'a switchyard_core::ids::EventId>,
    /// The synchronous hook whose call made it.
    pub(crate) hook: Option<&'a str>,
    /// Executor names from the outermost caller to this run.
    pub(crate) chain: Vec<String>,
    pub(crate) deadline: Instant,
    /// Fires when the caller no longer waits.
    pub(crate) cancel: CancellationToken,
}

/// Runs executors. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    pub(crate) inner: Arc<RunnerInner>,
}

pub(crate) struct RunnerInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clients: Clients,
    isolation: sandbox::Isolation,
    /// JavaScript workers; `None` when no worker program was given.
    js: Option<js::JsPool>,
    /// Run slots, JavaScript workers and memory, shared fairly between organizations.
    capacity: Capacity,
    /// Python, PHP and Node.js interpreters started ahead of their runs; `None`: off.
    warm: Option<crate::warm::WarmPool>,
    /// Executors' packages: installs and their directories; `None`: no packages here.
    packages: Option<crate::packages::Packages>,
    /// Each organization's limits (its key-value quota).
    pub(crate) shares: Arc<Shares>,
    /// The operator's bounds.
    limits: RunnerLimits,
    /// How code reaches the hub's own API (`sdk.api`), plugged in by the hub once it runs.
    pub(crate) self_api: std::sync::OnceLock<Arc<dyn crate::SelfApi>>,
    /// The client `sdk.api` calls this node's API with (the egress guard is for tenant-chosen
    /// addresses; this one goes only to the hub itself).
    pub(crate) self_client: reqwest::Client,
}

/// What the operator bounds runs with.
#[derive(Debug, Clone)]
pub struct RunnerLimits {
    /// The largest private temporary directory per run (MiB).
    pub max_tmp_mb: u32,
    /// Memory of all concurrent runs together (MiB); `None`: half of the machine's.
    pub memory_budget_mb: Option<u32>,
    /// Run Python, PHP and Node.js even where the kernel cannot bound each run (no cgroups).
    pub allow_unbounded_runs: bool,
    /// Python, PHP and Node.js interpreters kept started ahead of their runs, at most (each
    /// in its own sandbox, used by one run only); 0: every run starts its interpreter.
    pub warm_interpreters: u32,
    /// Where executors' packages are installed from and kept; `None`: no packages.
    pub packages: Option<crate::packages::PackageSettings>,
}

impl Runner {
    /// `js_worker` is the switchyard binary, whose `js-worker` subcommand runs JavaScript.
    /// `limits` are the operator's bounds on runs; `shares` each organization's part of them.
    pub fn new(
        store: Arc<dyn Store>,
        clients: Clients,
        isolation: sandbox::Isolation,
        js_worker: Option<std::path::PathBuf>,
        mut limits: RunnerLimits,
        shares: Arc<Shares>,
    ) -> Runner {
        let js = js_worker.map(|p| js::JsPool::new(p, isolation.clone()));
        limits.max_tmp_mb = limits.max_tmp_mb.clamp(1, sandbox::MAX_TMP_MB);
        let budget_mb = limits
            .memory_budget_mb
            .unwrap_or_else(sandbox::default_budget_mb)
            .max(1);
        let packages = limits.packages.clone().map(|settings| {
            let proxy =
                crate::index_proxy::IndexProxy::new(settings.indexes(), clients.policy().clone());
            crate::packages::Packages::new(
                settings,
                crate::install::Installer::new(isolation.clone(), proxy),
            )
        });
        Runner {
            inner: Arc::new(RunnerInner {
                store,
                clients,
                warm: crate::warm::WarmPool::new(isolation.clone(), limits.warm_interpreters),
                packages,
                isolation,
                js,
                capacity: Capacity::new(shares.clone(), budget_mb),
                shares,
                limits,
                self_api: std::sync::OnceLock::new(),
                self_client: reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_default(),
            }),
        }
    }

    /// Lets code call the hub's own API through `api` (`sdk.api`); the first one plugged in
    /// stays.
    pub fn plug_self_api(&self, api: Arc<dyn crate::SelfApi>) {
        let _ = self.inner.self_api.set(api);
    }

    /// Whether this hub installs packages of `ecosystem` (its `[packages]` settings, and a
    /// sandbox whole enough to run installers in).
    pub fn installs_packages(&self, ecosystem: switchyard_core::packages::Ecosystem) -> bool {
        let iso = &self.inner.isolation;
        self.inner.packages.is_some()
            && crate::packages::installer_present(ecosystem)
            && iso.new_root()
            && iso.unprivileged_user
            && iso.groups.is_some()
    }

    /// Resolves and installs `set` (never run at run time: when a version is saved).
    pub async fn install_packages(
        &self,
        set: &switchyard_core::packages::PackageSet,
    ) -> Result<crate::packages::Installed, crate::packages::InstallFailed> {
        use crate::packages::InstallFailed;
        let Some(packages) = &self.inner.packages else {
            return Err(InstallFailed::Refused(
                "this hub installs no packages".into(),
            ));
        };
        packages.install(set).await
    }

    /// The directory of an executor's installed packages for a run, installed from its lock
    /// first when this node lacks it: `Ok(None)` without packages; `Err` says why the run
    /// cannot have them (installing, failed, not installable here).
    async fn packages_of(&self, ex: &Executor) -> Result<Option<std::path::PathBuf>, String> {
        use switchyard_core::packages::PackageState;
        match &ex.packages_state {
            None => Ok(None),
            Some(PackageState::Installing) => Err(
                "the executor's packages are still installing; it runs once `packages_install.state` is `ready`"
                    .into(),
            ),
            Some(PackageState::Failed { output }) => Err(format!(
                "the executor's packages failed to install: {}",
                output.lines().last().unwrap_or_default()
            )),
            Some(PackageState::Ready { key, lock }) => {
                let packages = self
                    .inner
                    .packages
                    .as_ref()
                    .ok_or("this hub installs no packages")?;
                packages.ensure(key, lock).await.map(Some).map_err(|e| {
                    format!("the executor's packages could not be installed on this node: {e}")
                })
            }
        }
    }

    /// Removes the package directories no stored version uses (`in_use`), installed longer
    /// than `grace` ago; answers their keys.
    pub fn remove_unused_packages(&self, in_use: &[String], grace: Duration) -> Vec<String> {
        self.inner
            .packages
            .as_ref()
            .map(|p| p.remove_unused(in_use, grace))
            .unwrap_or_default()
    }

    /// Clears what installs cut short by a stop left behind.
    pub fn clear_package_leftovers(&self) {
        if let Some(p) = &self.inner.packages {
            p.clear_leftovers();
        }
    }

    /// The hub-wide memory budget for all concurrent runs (MiB).
    pub fn memory_budget_mb(&self) -> u32 {
        self.inner.capacity.memory_mb()
    }

    pub fn isolation(&self) -> &sandbox::Isolation {
        &self.inner.isolation
    }

    /// The operator's largest private temporary directory per run (MiB).
    pub fn max_tmp_mb(&self) -> u32 {
        self.inner.limits.max_tmp_mb
    }

    /// Whether this instance can run `language`; `Err` says what is missing.
    pub fn language_available(&self, language: Language) -> Result<(), ExecError> {
        match language {
            Language::Javascript if self.inner.js.is_none() => Err(ExecError::Unavailable(
                "JavaScript is not available on this instance (no worker program)".into(),
            )),
            Language::Javascript => Ok(()),
            other => {
                crate::runtime::interpreter_available(other)?;
                let iso = &self.inner.isolation;
                if iso.groups.is_none() && !self.inner.limits.allow_unbounded_runs {
                    return Err(ExecError::Unavailable(format!(
                        "{} executors need per-run memory and process limits from the kernel \
                         (cgroups), which this host does not offer ({}); start the hub with \
                         --allow-unbounded-runs to run them anyway",
                        other.as_str(),
                        iso.cgroups_unavailable.as_deref().unwrap_or("no cgroups")
                    )));
                }
                Ok(())
            }
        }
    }

    /// The languages this instance can run, for `/readyz`.
    pub fn languages(&self) -> Vec<&'static str> {
        [
            Language::Javascript,
            Language::Python,
            Language::Php,
            Language::Node,
        ]
        .into_iter()
        .filter(|l| self.language_available(*l).is_ok())
        .map(Language::as_str)
        .collect()
    }

    /// Runs `ex` with `input` for a caller that waits for it: every run starts here (a preview,
    /// an event hook, a synchronous subscription's target, a hook call). The code is stopped
    /// at its own timeout or at `waiting.deadline`, whichever comes first (the run fails as a
    /// `timeout`), or as soon as the caller goes away — `waiting.cancel` fires, or this future
    /// is dropped — (the run fails as `cancelled`). The run is stored in every case, also when
    /// the caller is gone, and returned.
    pub async fn run_while_waiting(
        &self,
        ex: &Executor,
        input: Value,
        waiting: Waiting,
    ) -> Result<Run, StoreError> {
        let own = Instant::now() + Duration::from_millis(u64::from(ex.timeout_ms()));
        let deadline = waiting.deadline.map_or(own, |d| d.min(own));
        let cancel = waiting.cancel.unwrap_or_default();
        // A caller that goes away drops this future: the run's own task then stops the code
        // and still records the run.
        let stop_on_drop = cancel.clone().drop_guard();
        let (runner, ex) = (self.clone(), ex.clone());
        let run = tokio::spawn(async move {
            let call = Call {
                id: switchyard_core::ids::RunId::generate(),
                event_id: waiting.event_id.as_ref(),
                hook: waiting.hook.as_deref(),
                chain: vec![ex.name().to_string()],
                deadline,
                cancel,
            };
            runner.run_in_chain(&ex, input, call).await
        })
        .await
        .map_err(|e| StoreError::caused_by("the run's task ended", e))?;
        stop_on_drop.disarm();
        run
    }

    /// Compiles the code of `spec` (of organization `org`) in the sandbox without running it:
    /// `Err` is the interpreter's message, naming the line (kind [`RunFailure::Code`]), or why
    /// the check could not run (no room for it, say). API calls need no check.
    pub async fn check_code(&self, org: &OrgId, spec: &ExecutorSpec) -> Result<(), Failed> {
        let ExecutorSpec::Code {
            language, source, ..
        } = spec
        else {
            return Ok(());
        };
        let timeout = CHECK_TIMEOUT;
        let broker = Broker {
            runner: self,
            org,
            api_role: switchyard_core::auth::Role::Viewer,
            chain: Vec::new(),
            deadline: Instant::now() + timeout,
            cancel: CancellationToken::new(),
            seen_secrets: Mutex::new(Vec::new()),
        };
        let inner = &self.inner;
        let outcome = match (language, &inner.js) {
            (Language::Javascript, Some(pool)) => {
                pool.run(
                    source,
                    64,
                    &Value::Null,
                    timeout,
                    &inner.capacity,
                    &broker,
                    true,
                )
                .await
            }
            (Language::Javascript, None) => return Ok(()),
            (language, _) => {
                let spec = process::RunSpec {
                    language: *language,
                    source,
                    memory_mb: 128,
                    tmp_mb: 8,
                    input: &Value::Null,
                    timeout,
                    check: true,
                    packages: None,
                };
                process::run(&inner.isolation, &inner.capacity, None, spec, &broker).await
            }
        };
        match outcome.failure {
            None => Ok(()),
            Some(f) => Err(f),
        }
    }

    /// Runs `ex` within `call`'s chain, in a span naming the organization, the executor, its
    /// version and the run, so that every line the run logs (and the SDK calls it makes) can
    /// be followed.
    pub(crate) async fn run_in_chain(
        &self,
        ex: &Executor,
        input: Value,
        call: Call<'_>,
    ) -> Result<Run, StoreError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "run",
            org = %ex.org_id,
            executor = %ex.name(),
            version = ex.version,
            run = %call.id,
            event = call.event_id.map(|e| e.as_str()),
        );
        self.run_traced(ex, input, call).instrument(span).await
    }

    async fn run_traced(
        &self,
        ex: &Executor,
        input: Value,
        call: Call<'_>,
    ) -> Result<Run, StoreError> {
        let started = Instant::now();
        let at = now_ms();
        let deadline = call.deadline;
        let broker = Broker {
            runner: self,
            org: &ex.org_id,
            api_role: ex.api_role().role(),
            chain: call.chain,
            deadline,
            cancel: call.cancel.clone(),
            seen_secrets: Mutex::new(Vec::new()),
        };
        let own = Duration::from_millis(u64::from(ex.timeout_ms()));
        let timeout = own.min(deadline.saturating_duration_since(Instant::now()));
        let outcome = match ex.spec() {
            ExecutorSpec::ApiCall {
                method,
                url,
                headers,
                ..
            } => tokio::select! {
                o = api_call::run(&broker, method, url, headers, &input, timeout) => o,
                _ = call.cancel.cancelled() => Outcome::failed(RunFailure::Cancelled, CANCELLED),
            },
            ExecutorSpec::Code { language, .. }
                if let Err(e) = self.language_available(*language) =>
            {
                Outcome::failed(RunFailure::Crashed, e.to_string())
            }
            ExecutorSpec::Code {
                language: Language::Javascript,
                source,
                memory_mb,
                ..
            } => match &self.inner.js {
                Some(pool) => {
                    let capacity = &self.inner.capacity;
                    pool.run(
                        source, *memory_mb, &input, timeout, capacity, &broker, false,
                    )
                    .await
                }
                None => Outcome::failed(
                    RunFailure::Crashed,
                    "JavaScript is not available on this instance (no worker program)",
                ),
            },
            ExecutorSpec::Code {
                language,
                source,
                memory_mb,
                tmp_mb,
                ..
            } => match self.packages_of(ex).await {
                Err(why) => Outcome::failed(RunFailure::Crashed, why),
                Ok(packages) => {
                    let spec = process::RunSpec {
                        language: *language,
                        source,
                        memory_mb: *memory_mb,
                        tmp_mb: (*tmp_mb).min(self.inner.limits.max_tmp_mb),
                        input: &input,
                        timeout,
                        check: false,
                        packages: packages.as_deref(),
                    };
                    let inner = &self.inner;
                    let warm = inner.warm.as_ref();
                    process::run(&inner.isolation, &inner.capacity, warm, spec, &broker).await
                }
            },
        };
        let outcome = cap_outcome(outcome);
        let (failure, error) = outcome.failure.unzip();
        let mut run = Run {
            id: call.id.clone(),
            org_id: ex.org_id.clone(),
            executor: ex.name().to_string(),
            version: ex.version,
            event_id: call.event_id.cloned(),
            status: if failure.is_none() {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed
            },
            input,
            output: if failure.is_none() {
                outcome.output
            } else {
                None
            },
            error,
            failure,
            logs: outcome.logs,
            stderr: outcome.stderr,
            exit: outcome.exit,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            at,
            hook: call.hook.map(str::to_string),
        };
        broker.redact(&mut run);
        self.inner.store.record_run(&run).await?;
        Ok(run)
    }
}

/// Fails a run whose output or logs are larger than [`OUTPUT_CAP`], keeping the logs that fit.
fn cap_outcome(mut outcome: Outcome) -> Outcome {
    let mut used = 0;
    let fit = outcome
        .logs
        .iter()
        .take_while(|l| {
            used += l.len() + 1;
            used <= OUTPUT_CAP
        })
        .count();
    if fit < outcome.logs.len() {
        outcome.logs.truncate(fit);
        outcome.fail_first(RunFailure::OutputLimit, || {
            format!(
                "output too large: the logs are longer than {} MiB",
                OUTPUT_CAP >> 20
            )
        });
    }
    let out_len = outcome.output.as_ref().map_or(0, |v| v.to_string().len());
    if out_len > OUTPUT_CAP {
        outcome.output = None;
        outcome.fail_first(RunFailure::OutputLimit, || {
            format!(
                "output too large: the output is {out_len} bytes as JSON, more than {} MiB",
                OUTPUT_CAP >> 20
            )
        });
    }
    outcome
}

/// Event hooks: the delivery engine runs a subscription's executor through this.
impl HookRunner for Runner {
    fn run_hook<'a>(
        &'a self,
        org: &'a OrgId,
        executor: &'a str,
        event: &'a switchyard_core::Event,
        deadline: Option<Instant>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HookResult> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            let fail = |error: String, permanent: bool, retries: Option<u32>| HookResult {
                run_id: None,
                error: Some(error),
                permanent,
                retries,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                output: None,
            };
            let ex = match self.inner.store.get_executor(org, executor).await {
                Ok(ex) => ex,
                Err(StoreError::NotFound(_)) => {
                    return fail(format!("executor `{executor}` does not exist"), true, None);
                }
                Err(e) => {
                    return fail(
                        format!("cannot load executor `{executor}`: {e}"),
                        false,
                        None,
                    );
                }
            };
            let input = ex.input_for_event(&event.envelope());
            let waiting = Waiting {
                deadline,
                event_id: Some(event.id.clone()),
                ..Waiting::default()
            };
            match self.run_while_waiting(&ex, input, waiting).await {
                Ok(run) => HookResult {
                    error: match run.status {
                        RunStatus::Succeeded => None,
                        RunStatus::Failed => {
                            Some(run.error.unwrap_or_else(|| "the run failed".into()))
                        }
                    },
                    run_id: Some(run.id),
                    permanent: false,
                    retries: ex.retries,
                    duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                    output: run.output,
                },
                Err(e) => fail(format!("cannot record the run: {e}"), false, ex.retries),
            }
        })
    }
}
