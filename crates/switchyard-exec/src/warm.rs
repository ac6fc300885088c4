//! Warm interpreters: Python, PHP and Node.js processes started ahead of their runs, each in a
//! sandbox of its own — namespaces, new root, uid, cgroup, private tmpfs, rlimits, Landlock,
//! seccomp, exactly as a run's — with the SDK loaded, waiting on the SDK channel for their
//! code. A run of the same shape (language, memory, temporary space) takes one, sends it its
//! code and input, and from there it is that run's process alone: it is never given a second
//! run, and when the run ends it is killed like any other. The interpreter's start-up leaves
//! the run's critical path; the isolation does not change.
//!
//! The pool learns which shapes are used: a run that finds none warm marks its shape, and one
//! is started for the next run. Each shape keeps at most [`PER_SHAPE`] waiting, the pool at
//! most the operator's `warm_interpreters` (each holding a uid of its own,
//! [`sandbox::WARM_UID_BASE`] on); a shape not used for [`IDLE`] is let go.

use crate::process::{self, Launch, SdkChannel, Spawned};
use crate::sandbox::{self, Isolation, UidSlot, UidSlots};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use switchyard_core::executor::{Language, MAX_TIMEOUT_MS};
use tokio::io::AsyncReadExt;

/// Interpreters waiting per shape at most.
pub const PER_SHAPE: usize = 2;
/// A shape unused this long has its waiting interpreters stopped.
pub const IDLE: Duration = Duration::from_secs(300);
/// How long a starting interpreter may take to say it is ready (a loaded machine is slow).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// What a warm interpreter is started for: a run must match it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    pub language: Language,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    /// The installed packages bound into its root: an executor with packages is as warm as
    /// one without.
    pub packages: Option<PathBuf>,
}

/// An interpreter in its sandbox, waiting for its code. Dropped unused, it is killed.
pub struct Warm {
    parts: Option<(Spawned, tokio::net::UnixStream, tempfile::TempDir, UidSlot)>,
}

impl Warm {
    /// Its process, its end of the SDK channel, its staging directory and its uid, for the run
    /// that takes it.
    pub(crate) fn into_parts(
        mut self,
    ) -> (Spawned, tokio::net::UnixStream, tempfile::TempDir, UidSlot) {
        self.parts.take().expect("a warm interpreter is taken once")
    }

    fn has_ended(&mut self) -> bool {
        self.parts.as_mut().is_none_or(|p| p.0.has_ended())
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        if let Some((spawned, ..)) = self.parts.take() {
            spawned.discard();
        }
    }
}

#[derive(Default)]
struct Entry {
    ready: VecDeque<Warm>,
    starting: usize,
    used: Option<Instant>,
}

struct Inner {
    isolation: Isolation,
    slots: UidSlots,
    shapes: Mutex<HashMap<Shape, Entry>>,
    sweeping: std::sync::atomic::AtomicBool,
}

/// The warm interpreters of this hub. Cheap to clone.
#[derive(Clone)]
pub struct WarmPool {
    inner: Arc<Inner>,
}

/// What the pool holds now, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmCount {
    pub ready: usize,
    pub starting: usize,
}

impl WarmPool {
    /// A pool of at most `size` warm interpreters (bounded by [`sandbox::WARM_SLOTS`]); `None`
    /// when `size` is 0.
    pub fn new(isolation: Isolation, size: u32) -> Option<WarmPool> {
        let size = size.min(sandbox::WARM_SLOTS);
        (size > 0).then(|| WarmPool {
            inner: Arc::new(Inner {
                isolation,
                slots: UidSlots::new(sandbox::WARM_UID_BASE, size),
                shapes: Mutex::new(HashMap::new()),
                sweeping: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// A ready interpreter of `shape`, if one is waiting; either way the shape is kept warm
    /// for the next run.
    pub fn take(&self, shape: &Shape) -> Option<Warm> {
        let taken = {
            let mut shapes = self.inner.shapes.lock().ok()?;
            let entry = shapes.entry(shape.clone()).or_default();
            entry.used = Some(Instant::now());
            let mut found = None;
            while let Some(mut w) = entry.ready.pop_front() {
                if !w.has_ended() {
                    found = Some(w);
                    break;
                }
            }
            found
        };
        self.refill(shape);
        metrics::counter!("switchyard_warm_runs_total", "language" => shape.language.as_str(), "warm" => if taken.is_some() { "yes" } else { "no" }).increment(1);
        taken
    }

    /// How many interpreters of `shape` are waiting and starting.
    pub fn count(&self, shape: Shape) -> WarmCount {
        self.inner
            .shapes
            .lock()
            .ok()
            .and_then(|s| {
                s.get(&shape).map(|e| WarmCount {
                    ready: e.ready.len(),
                    starting: e.starting,
                })
            })
            .unwrap_or_default()
    }

    /// Starts interpreters of `shape` until [`PER_SHAPE`] are waiting or starting, as far as
    /// the pool has uids (taking one from the shape used longest ago when it has none).
    fn refill(&self, shape: &Shape) {
        self.start_sweeping();
        loop {
            let slot = {
                let Ok(mut shapes) = self.inner.shapes.lock() else {
                    return;
                };
                let entry = shapes.entry(shape.clone()).or_default();
                if entry.ready.len() + entry.starting >= PER_SHAPE {
                    return;
                }
                let slot = match self.inner.slots.try_take() {
                    Some(s) => Some(s),
                    None => {
                        // Let the least recently used other shape's oldest interpreter go: its
                        // uid comes back when it has been killed.
                        let now = Instant::now();
                        let victim = shapes
                            .iter()
                            .filter(|(s, e)| *s != shape && !e.ready.is_empty())
                            .min_by_key(|(_, e)| e.used.unwrap_or(now))
                            .map(|(s, _)| s.clone());
                        if let Some(v) = victim {
                            drop(shapes.get_mut(&v).and_then(|e| e.ready.pop_front()));
                        }
                        self.inner.slots.try_take()
                    }
                };
                let Some(slot) = slot else { return };
                if let Some(entry) = shapes.get_mut(shape) {
                    entry.starting += 1;
                }
                slot
            };
            let pool = self.clone();
            let shape = shape.clone();
            tokio::spawn(async move {
                let started = pool.start(&shape, slot).await;
                let Ok(mut shapes) = pool.inner.shapes.lock() else {
                    return;
                };
                let language = shape.language;
                let entry = shapes.entry(shape).or_default();
                entry.starting = entry.starting.saturating_sub(1);
                match started {
                    Ok(w) => entry.ready.push_back(w),
                    Err(why) => {
                        tracing::warn!(language = language.as_str(), error = %why, "a warm interpreter did not start");
                    }
                }
            });
        }
    }

    /// Starts one interpreter of `shape` as `slot`'s uid and waits until it says it is ready.
    async fn start(&self, shape: &Shape, slot: UidSlot) -> Result<Warm, String> {
        let isolation = &self.inner.isolation;
        let rt =
            crate::runtime::runtime_to_run(shape.language, shape.memory_mb).ok_or_else(|| {
                format!(
                    "{} does not run as a child process",
                    shape.language.as_str()
                )
            })?;
        let program: PathBuf =
            crate::runtime::interpreter_path(shape.language).map_err(|e| e.to_string())?;
        let dir = tempfile::Builder::new()
            .prefix("switchyard-warm-")
            .tempdir()
            .map_err(|e| format!("cannot create its directory: {e}"))?;
        let owner = (isolation.unprivileged_user && !isolation.private_tmp()).then_some(slot.uid);
        crate::runtime::write_run_dir(dir.path(), &rt, None, owner)
            .map_err(|e| format!("cannot prepare its directory: {e}"))?;
        let work = isolation.work_dir(dir.path());
        let channel = SdkChannel::open().map_err(|e| format!("cannot open its channel: {e}"))?;
        let launch = Launch {
            rt: &rt,
            program: &program,
            shape,
            kernel_mb: crate::runtime::kernel_memory_mb(
                shape.language,
                shape.memory_mb,
                shape.tmp_mb,
            ),
            uid: slot.uid,
            dir: dir.path(),
            work: &work,
            check: false,
            warm: true,
        };
        // Its CPU-time limit is the longest run's: the run's own deadline stops it sooner.
        let longest = Duration::from_millis(u64::from(MAX_TIMEOUT_MS));
        let (mut hub_end, child_end) = (channel.hub_end, channel.child_end);
        let spawned = process::spawn(isolation, &launch, child_end, longest)
            .await
            .map_err(|e| e.to_string())?;
        // It says `ready` once its SDK is loaded, then waits: nothing more can come before it
        // is sent its code, so reading up to the newline reads nothing of a later message.
        let ready = tokio::time::timeout(READY_WITHIN, async {
            let mut said = Vec::with_capacity(8);
            let mut byte = [0u8; 1];
            while said.len() < 16 {
                match hub_end.read(&mut byte).await {
                    Ok(1) if byte[0] == b'\n' => return said == b"ready",
                    Ok(1) => said.push(byte[0]),
                    _ => return false,
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            spawned.discard();
            return Err(format!(
                "it did not say it was ready within {} s",
                READY_WITHIN.as_secs()
            ));
        }
        Ok(Warm {
            parts: Some((spawned, hub_end, dir, slot)),
        })
    }

    /// Stops, every so often, the interpreters of shapes no run has used for [`IDLE`].
    fn start_sweeping(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(IDLE / 4);
            loop {
                tick.tick().await;
                let Some(inner) = pool.upgrade() else { return };
                let idle: Vec<Warm> = match inner.shapes.lock() {
                    Ok(mut shapes) => {
                        let mut idle = Vec::new();
                        shapes.retain(|_, e| {
                            let fresh = e.used.is_some_and(|u| u.elapsed() < IDLE);
                            if !fresh {
                                idle.extend(e.ready.drain(..));
                            }
                            fresh || e.starting > 0
                        });
                        idle
                    }
                    Err(_) => return,
                };
                drop(idle);
            }
        });
    }
}
