//! Synchronous hooks: a caller runs an organization's hook now and waits for its answer (an
//! ERP look-up). Input and output are checked against the hook's schemas; answers of a hook
//! with `cache_ttl_s` are reused for equal input (canonical JSON) and concurrent equal calls
//! share one run (single flight); a caller that goes away stops its run.

use crate::Hub;
use moka::Expiry;
use moka::future::Cache;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::SyncHook;
use switchyard_core::executor::{Executor, RunFailure, RunStatus};
use switchyard_core::ids::{OrgId, RunId};
use switchyard_core::schema::{Schema, SchemaViolation};
use switchyard_core::sync_hook::canonical_json;
use switchyard_exec::Waiting;
use switchyard_store::StoreError;

/// Bytes of cached answers (with their keys) the hub holds at most, all organizations together;
/// each organization's answers take at most its share (limit `hook_cache_bytes`).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Synchronous hook calls in progress at once, all organizations together; each organization
/// has at most its share (limit `hook_calls`) and is refused with 429 beyond it.
pub const HOOK_CALLS: u64 = 1024;
/// How long a hook's definition and its executor are trusted without reading them again. A
/// change through this node is seen at once; one made through another node within this time.
const DEFINITION_TTL: Duration = Duration::from_secs(5);
/// Hook definitions and executors kept in memory at most.
const MAX_DEFINITIONS: u64 = 10_000;

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// The hook caches nothing: the executor ran.
    Off,
    /// Not cached: the executor ran and its answer is cached now.
    Miss,
    /// From the cache (or from a concurrent equal call's run): the executor did not run.
    Hit,
}

impl CacheUse {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Off => "off",
            CacheUse::Miss => "miss",
            CacheUse::Hit => "hit",
        }
    }
}

/// A hook's answer.
#[derive(Debug, Clone)]
pub struct HookAnswer {
    pub output: Value,
    /// The run that produced it (for a cache hit, the earlier run).
    pub run_id: RunId,
    pub cache: CacheUse,
}

/// Why a call has no answer; each maps to what the caller sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no hook `{0}` in this organization")]
    NoHook(String),
    #[error("the hook's executor `{0}` does not exist")]
    NoExecutor(String),
    #[error("the input fails the hook's input schema at {}: {}", .0.path, .0.message)]
    Input(SchemaViolation),
    #[error("{reason}")]
    Failed { run_id: RunId, reason: String },
    #[error("{reason}")]
    Timeout { run_id: RunId, reason: String },
    #[error("the executor's output fails the hook's output schema at {}: {}", .violation.path, .violation.message)]
    Output {
        run_id: RunId,
        violation: SchemaViolation,
    },
    #[error("the hook's {0} cannot be used; replace the hook")]
    Schema(&'static str),
    /// The organization has its share of hook calls in progress, or the run found no room
    /// within the hook's timeout: the caller may retry.
    #[error("{reason}")]
    Busy {
        run_id: Option<RunId>,
        reason: String,
    },
    #[error(transparent)]
    Store(StoreError),
}

/// A cached answer and how long it lives.
struct Cached {
    output: Value,
    run_id: RunId,
    ttl: Duration,
}

struct ByTtl;

impl Expiry<String, Arc<Cached>> for ByTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A hook's definition with its schemas compiled.
struct LoadedHook {
    hook: SyncHook,
    input_schema: Option<Schema>,
    output_schema: Option<Schema>,
}

impl LoadedHook {
    fn compile(hook: SyncHook) -> Result<LoadedHook, CallError> {
        let compile = |doc: &Option<Value>, what: &'static str| {
            doc.as_ref()
                .map(Schema::compile)
                .transpose()
                .map_err(|_| CallError::Schema(what))
        };
        Ok(LoadedHook {
            input_schema: compile(&hook.input_schema, "input schema")?,
            output_schema: compile(&hook.output_schema, "output schema")?,
            hook,
        })
    }
}

/// Why an answer's computation did not go into the cache.
#[derive(Clone)]
enum NotCached {
    /// The call failed.
    Failed(CallError),
    /// The organization's answers fill its share of the cache: the answer is given, not kept.
    Full(Arc<Cached>),
}

/// The hub's cache of answers, and what it needs to key and check them.
pub(crate) struct HookCache {
    answers: Cache<String, Arc<Cached>>,
    /// Bytes of cached answers by organization (the key's first part), for its share.
    bytes: Arc<Mutex<HashMap<String, u64>>>,
    shares: Arc<switchyard_fair::Shares>,
    /// Calls in progress, shared fairly between organizations.
    pub(crate) calls: switchyard_fair::FairPool,
    /// Per (organization, hook), bumped when its cache is emptied: older keys are never read
    /// again and age out.
    generations: Mutex<HashMap<(String, String), u64>>,
    /// Hook definitions, compiled, by (organization, hook).
    hooks: Cache<(String, String), Arc<LoadedHook>>,
    /// Executors (their latest version) by (organization, executor).
    executors: Cache<(String, String), Arc<Executor>>,
}

impl HookCache {
    /// Counts `answer` against its organization's share of the cache: `false` (and nothing
    /// counted) if it does not fit, and it is not cached.
    fn make_room(&self, key: &str, answer: &Cached) -> bool {
        let org = key_org(key);
        let share = self.shares.limits(org).hook_cache_bytes;
        let w = weight(key, answer);
        let Ok(mut b) = self.bytes.lock() else {
            return false;
        };
        let used = b.entry(org.to_string()).or_insert(0);
        if *used + w > share {
            return false;
        }
        *used += w;
        true
    }

    /// Forgets everything cached (notices from other nodes may have been missed).
    pub(crate) fn clear(&self) {
        self.hooks.invalidate_all();
        self.executors.invalidate_all();
        self.answers.invalidate_all();
    }
}

/// What an answer costs the cache.
fn weight(key: &str, v: &Cached) -> u64 {
    (key.len() + v.output.to_string().len() + 64) as u64
}

/// The organization an answer's key belongs to.
fn key_org(key: &str) -> &str {
    key.split('\u{0}').next().unwrap_or_default()
}

impl HookCache {
    pub(crate) fn new(shares: Arc<switchyard_fair::Shares>) -> Self {
        let bytes: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let counted = bytes.clone();
        HookCache {
            answers: Cache::builder()
                .max_capacity(CACHE_BYTES)
                .weigher(|k: &String, v: &Arc<Cached>| {
                    u32::try_from(weight(k, v)).unwrap_or(u32::MAX)
                })
                .expire_after(ByTtl)
                .eviction_listener(move |k: Arc<String>, v: Arc<Cached>, _cause| {
                    if let Ok(mut b) = counted.lock()
                        && let Some(n) = b.get_mut(key_org(&k))
                    {
                        *n = n.saturating_sub(weight(&k, &v));
                        if *n == 0 {
                            b.remove(key_org(&k));
                        }
                    }
                })
                .build(),
            bytes,
            calls: switchyard_fair::FairPool::new(
                "synchronous hook calls",
                "hook_calls",
                HOOK_CALLS,
                shares.clone(),
                |l, _| l.hook_calls,
            ),
            shares,
            generations: Mutex::new(HashMap::new()),
            hooks: Cache::builder()
                .max_capacity(MAX_DEFINITIONS)
                .time_to_live(DEFINITION_TTL)
                .build(),
            executors: Cache::builder()
                .max_capacity(MAX_DEFINITIONS)
                .time_to_live(DEFINITION_TTL)
                .build(),
        }
    }
}

impl Hub {
    /// Calls hook `name` of `org` with `input` and waits for its answer.
    pub async fn call_hook(
        &self,
        org: &OrgId,
        name: &str,
        input: Value,
    ) -> Result<HookAnswer, CallError> {
        let store = &self.inner.store;
        let cache = &self.inner.hook_cache;
        let hook_key = (org.as_str().to_owned(), name.to_string());
        let loaded = cache
            .hooks
            .try_get_with_by_ref(&hook_key, async {
                let hook = store.get_sync_hook(org, name).await.map_err(|e| match e {
                    StoreError::NotFound(_) => CallError::NoHook(name.to_string()),
                    other => CallError::Store(other),
                })?;
                LoadedHook::compile(hook).map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())?;
        let hook = &loaded.hook;
        if let Some(s) = &loaded.input_schema {
            s.validate_at(&input, "/input").map_err(CallError::Input)?;
        }
        let ex = cache
            .executors
            .try_get_with((org.as_str().to_owned(), hook.executor.clone()), async {
                store
                    .get_executor(org, &hook.executor)
                    .await
                    .map(Arc::new)
                    .map_err(|e| match e {
                        StoreError::NotFound(_) => CallError::NoExecutor(hook.executor.clone()),
                        other => CallError::Store(other),
                    })
            })
            .await
            .map_err(|e| (*e).clone())?;
        let result = match hook.cache_ttl_s {
            None => self
                .run_hook(&loaded, &ex, input)
                .await
                .map(|(output, run_id)| HookAnswer {
                    output,
                    run_id,
                    cache: CacheUse::Off,
                }),
            Some(ttl) => {
                let generation = cache
                    .generations
                    .lock()
                    .ok()
                    .and_then(|g| g.get(&hook_key).copied())
                    .unwrap_or(0);
                // Everything an answer depends on: the hook's definition, the executor's
                // version, the emptying generation and the input.
                let key = format!(
                    "{org}\u{0}{name}\u{0}{}\u{0}{}\u{0}{generation}\u{0}{}",
                    hook.updated_at,
                    ex.version,
                    canonical_json(&input)
                );
                let ttl = Duration::from_secs(u64::from(ttl));
                let entry = cache
                    .answers
                    .entry(key.clone())
                    .or_try_insert_with(async {
                        let (output, run_id) = self
                            .run_hook(&loaded, &ex, input)
                            .await
                            .map_err(NotCached::Failed)?;
                        let answer = Arc::new(Cached {
                            output,
                            run_id,
                            ttl,
                        });
                        if cache.make_room(&key, &answer) {
                            Ok(answer)
                        } else {
                            Err(NotCached::Full(answer))
                        }
                    })
                    .await;
                match entry {
                    Ok(entry) => {
                        let use_ = if entry.is_fresh() {
                            CacheUse::Miss
                        } else {
                            CacheUse::Hit
                        };
                        let v = entry.into_value();
                        Ok(HookAnswer {
                            output: v.output.clone(),
                            run_id: v.run_id.clone(),
                            cache: use_,
                        })
                    }
                    Err(e) => match &*e {
                        NotCached::Failed(e) => Err(e.clone()),
                        NotCached::Full(v) => Ok(HookAnswer {
                            output: v.output.clone(),
                            run_id: v.run_id.clone(),
                            cache: CacheUse::Miss,
                        }),
                    },
                }
            }
        };
        let outcome = match &result {
            Ok(a) => a.cache.as_str(),
            Err(CallError::Timeout { .. }) => "timeout",
            Err(_) => "failed",
        };
        metrics::counter!("switchyard_hook_calls_total", "outcome" => outcome).increment(1);
        result
    }

    /// Hook `name` of `org` was defined again or deleted: its cached definition and answers
    /// are forgotten, on every node.
    pub(crate) async fn hook_changed(&self, org: &OrgId, name: &str) {
        self.forget_hook(org, name).await;
        self.announce_hook(org, name);
    }

    /// Executor `name` of `org` has a new version or was deleted: hooks read it again, on
    /// every node.
    pub(crate) async fn executor_changed(&self, org: &OrgId, name: &str) {
        self.forget_executor(org, name).await;
        self.announce(switchyard_store::Notice::Executor {
            org: org.to_string(),
            name: name.to_string(),
        });
    }

    /// Forgets every cached answer of hook `name` of `org`, on every node.
    pub fn empty_hook_cache(&self, org: &OrgId, name: &str) {
        self.empty_answers(org, name);
        self.announce_hook(org, name);
    }

    fn announce_hook(&self, org: &OrgId, name: &str) {
        self.announce(switchyard_store::Notice::Hook {
            org: org.to_string(),
            name: name.to_string(),
        });
    }

    /// This node's half of [`Hub::hook_changed`].
    pub(crate) async fn forget_hook(&self, org: &OrgId, name: &str) {
        let key = (org.as_str().to_owned(), name.to_string());
        self.inner.hook_cache.hooks.invalidate(&key).await;
        self.empty_answers(org, name);
    }

    /// This node's half of [`Hub::executor_changed`].
    pub(crate) async fn forget_executor(&self, org: &OrgId, name: &str) {
        let key = (org.as_str().to_owned(), name.to_string());
        self.inner.hook_cache.executors.invalidate(&key).await;
    }

    /// Forgets, on this node, every cached answer of hook `name` of `org`.
    fn empty_answers(&self, org: &OrgId, name: &str) {
        if let Ok(mut g) = self.inner.hook_cache.generations.lock() {
            *g.entry((org.as_str().to_owned(), name.to_string()))
                .or_insert(0) += 1;
        }
    }

    /// Runs the hook's executor in a task of its own that stops when the caller goes away (this
    /// future is dropped) or the hook's timeout passes; the run is stored either way.
    async fn run_hook(
        &self,
        loaded: &LoadedHook,
        ex: &Executor,
        input: Value,
    ) -> Result<(Value, RunId), CallError> {
        let hook = &loaded.hook;
        // The organization's share of calls in progress: beyond it, the caller retries.
        let _call = self
            .inner
            .hook_cache
            .calls
            .try_acquire(&ex.org_id, 1)
            .map_err(|r| CallError::Busy {
                run_id: None,
                reason: format!("{r}; retry when some of them have answered"),
            })?;
        let waiting = Waiting {
            deadline: Some(Instant::now() + Duration::from_millis(u64::from(hook.timeout_ms))),
            hook: Some(hook.name.clone()),
            ..Waiting::default()
        };
        let run = self
            .inner
            .runner
            .run_while_waiting(ex, input, waiting)
            .await
            .map_err(CallError::Store)?;
        match run.status {
            RunStatus::Succeeded => {
                let output = run.output.unwrap_or(Value::Null);
                if let Some(s) = &loaded.output_schema {
                    s.validate_at(&output, "/output")
                        .map_err(|violation| CallError::Output {
                            run_id: run.id.clone(),
                            violation,
                        })?;
                }
                Ok((output, run.id))
            }
            RunStatus::Failed => {
                let reason = run.error.unwrap_or_else(|| "the run failed".into());
                match run.failure {
                    Some(RunFailure::NoRoom) => Err(CallError::Busy {
                        run_id: Some(run.id),
                        reason,
                    }),
                    Some(RunFailure::Timeout) => Err(CallError::Timeout {
                        run_id: run.id,
                        reason,
                    }),
                    _ => Err(CallError::Failed {
                        run_id: run.id,
                        reason,
                    }),
                }
            }
        }
    }
}
