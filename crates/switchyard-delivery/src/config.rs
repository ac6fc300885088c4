//! The engine's settings: what the hub runs with by default, the claim lease and the margins
//! it must leave for the longest request and run, and the check that refuses settings the
//! engine cannot run with.

use std::time::Duration;
use switchyard_core::health::DisablePolicy;

/// A claimed webhook is sent only while its claim holds at least this long: the longest request
/// an endpoint may take, and 5 s more, so that no other claim can take it mid-request.
pub const REQUEST_MARGIN_MS: i64 = switchyard_core::endpoint::MAX_TIMEOUT_MS as i64 + 5_000;
/// Likewise for an event hook: the longest an executor may run, and 5 s more.
pub const HOOK_MARGIN_MS: i64 = switchyard_core::executor::MAX_TIMEOUT_MS as i64 + 5_000;
/// How long a claimed delivery may wait its turn in memory (its endpoint's flow control, a hook
/// slot) and still be sent under the shortest lease.
const SHORTEST_WAIT_MS: i64 = 60_000;
/// The shortest claim lease: the longer margin plus [`SHORTEST_WAIT_MS`]. Under a shorter one a
/// claimed delivery could never be sent (each claim would end within its margin).
pub const MIN_LEASE_MS: i64 = if REQUEST_MARGIN_MS > HOOK_MARGIN_MS {
    REQUEST_MARGIN_MS
} else {
    HOOK_MARGIN_MS
} + SHORTEST_WAIT_MS;
/// The claim lease the hub runs with: five minutes.
pub const DEFAULT_LEASE_MS: i64 = 5 * 60 * 1000;

/// Settings the engine cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A claim lease under [`MIN_LEASE_MS`].
    LeaseTooShort { lease_ms: i64 },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::LeaseTooShort { lease_ms } => write!(
                f,
                "a claim lease of {lease_ms} ms is too short: a delivery is started only while its \
                 claim holds for the longest request or run it may take ({} ms for a webhook, {} ms \
                 for an event hook), so the lease must be at least {MIN_LEASE_MS} ms",
                REQUEST_MARGIN_MS, HOOK_MARGIN_MS
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The engine's settings. [`EngineConfig::new`] gives the defaults the hub runs with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's id; claims carry it.
    pub node: String,
    /// How often the poller looks for due retries when nothing wakes it.
    pub poll_interval: Duration,
    /// Most deliveries claimed at once (by an endpoint pulling its backlog, or for event hooks).
    pub claim_batch: u32,
    /// How long a claim lasts before another node may take it over (at least
    /// [`MIN_LEASE_MS`]): the publish's own claims, the poller's and each endpoint's.
    pub lease_ms: i64,
    /// How long this node holds an endpoint's lease (only the holder sends to an endpoint, so
    /// `max_rps` and ordering hold across nodes); renewed every third of it, and taken over by
    /// another node when it runs out (a node that died).
    pub endpoint_lease_ms: i64,
    /// Whether this node delivers (`false`: a node of the `api` role, which only publishes,
    /// claims nothing and leaves every delivery due for the nodes that deliver; synchronous
    /// targets are still attempted by the publish).
    pub deliver: bool,
    /// Deliveries an endpoint may hold in memory; beyond this they stay in the store and the
    /// endpoint pulls them when it has room. Event hooks waiting for a slot count as one
    /// endpoint.
    pub max_queued_per_endpoint: usize,
    /// Deliveries all endpoints together may hold in memory, likewise.
    pub max_queued_total: usize,
    /// Requests to endpoints in flight at once, all endpoints together (each endpoint is also
    /// held to its own `max_in_flight`, each organization to its share, limit `requests`).
    /// Bounds the memory and sockets a burst to many endpoints can take.
    pub max_requests_in_flight: usize,
    /// Attempt results held in memory until the store has written them; when this many wait,
    /// no new request starts (backpressure from the store to the endpoints).
    pub max_unrecorded: usize,
    /// When repeated failure disables an endpoint.
    pub disable_policy: DisablePolicy,
    /// How long a cached endpoint configuration is trusted without asking the store again.
    pub endpoint_cache_ttl: Duration,
    /// An idle endpoint worker exits after this long.
    pub worker_idle: Duration,
    /// Event hooks running at once; beyond this they wait (webhooks are not affected). Each
    /// organization runs at most its share (limit `event_hooks`), served in turn.
    pub max_hooks_in_flight: usize,
    /// Seed of the retry jitter; `None` seeds from the operating system.
    pub jitter_seed: Option<u64>,
    /// How long a publish waits for its synchronous targets, together.
    pub sync_deadline: Duration,
}

impl EngineConfig {
    /// The defaults for node `node`.
    pub fn new(node: impl Into<String>) -> EngineConfig {
        EngineConfig {
            node: node.into(),
            poll_interval: Duration::from_millis(200),
            claim_batch: 500,
            lease_ms: DEFAULT_LEASE_MS,
            endpoint_lease_ms: 30_000,
            deliver: true,
            max_queued_per_endpoint: 2_000,
            max_queued_total: 10_000,
            max_requests_in_flight: 256,
            max_unrecorded: 4_096,
            disable_policy: DisablePolicy::default(),
            endpoint_cache_ttl: Duration::from_secs(5),
            worker_idle: Duration::from_secs(60),
            max_hooks_in_flight: 32,
            jitter_seed: None,
            sync_deadline: Duration::from_secs(10),
        }
    }

    /// Whether the engine can run with these settings.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.lease_ms < MIN_LEASE_MS {
            return Err(ConfigError::LeaseTooShort {
                lease_ms: self.lease_ms,
            });
        }
        Ok(())
    }
}
