//! What both backends share: column lists, how secrets are sealed in a row, how a stored value
//! becomes a domain value, and the bookkeeping of health and idempotency that is not SQL.

use crate::*;
use switchyard_core::crypto::MasterKey;
use switchyard_core::health::EndpointHealth;
use switchyard_core::ordering::{HeadFailure, Ordering, OrderingKey};
use switchyard_core::signing::SigningSecret;

pub(crate) const ORG_COLS: &str = "id, name, created_at, retention_s, payload_retention_s, limits";

pub(crate) const EVENT_COLS: &str = "seq, org_id, id, type, timestamp, entity_type, entity_id, data, received_at, payload_dropped_at";

pub(crate) const ENDPOINT_COLS: &str = "id, org_id, url, description, profile, headers, token_enc, token_header, \
     insecure_tls, timeout_ms, retry_schedule, max_in_flight, secrets_enc, enabled, disabled_reason, \
     owner_subscription, created_at, updated_at, max_rps, ordering_key, on_head_failure";

pub(crate) const SUB_COLS: &str =
    "id, org_id, event_types, endpoint_id, entity_id, filter, created_at, executor, mode";

pub(crate) const DELIVERY_COLS: &str = "id, org_id, event_id, endpoint_id, subscription_id, status, attempts, \
     next_attempt_at, created_at, updated_at, executor, ordering_key, claimed_by";

pub(crate) const ATTEMPT_COLS: &str = "id, delivery_id, at, status_code, duration_ms, error, response_body, waited, retry_reason, request_headers, node";

/// The directory keys of the `ready` package states among `states` (JSON), each once.
pub(crate) fn package_keys(states: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = states
        .iter()
        .filter_map(|s| serde_json::from_str::<switchyard_core::packages::PackageState>(s).ok())
        .filter_map(|s| match s {
            switchyard_core::packages::PackageState::Ready { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

pub(crate) const EXECUTOR_COLS: &str = "org_id, name, version, description, spec, parameters, retries, created_at, tool, packages, packages_state";

pub(crate) const RUN_COLS: &str = "id, org_id, executor, version, event_id, status, input, output, error, logs, stderr, exit, duration_ms, at, hook, failure";

pub(crate) const SYNC_HOOK_COLS: &str = "org_id, name, description, executor, timeout_ms, cache_ttl_s, \
     input_schema, output_schema, created_at, updated_at, tool";

pub(crate) const SCHEDULE_COLS: &str = "org_id, name, description, cron, timezone, event_type, data, \
     enabled, misfire, next_fire_at, last_fired_at, created_at, updated_at";

pub(crate) const HEALTH_COLS: &str =
    "consecutive_failures, failing_since, last_success_at, last_failure_at, last_error";

/// An endpoint's signing secret as sealed in its row.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSecret {
    s: String,
    exp: Option<i64>,
}

fn secrets_ctx(id: &str) -> String {
    format!("endpoint:{id}:secrets")
}

fn token_ctx(id: &str) -> String {
    format!("endpoint:{id}:token")
}

/// What the database keeps sealed with its master key, so that a node opening it with another
/// key stops at start instead of failing on every secret later.
const KEY_CHECK_CTX: &str = "switchyard:master-key-check";
const KEY_CHECK_PLAIN: &[u8] = b"secrets of this database are sealed with this key";

/// The seal written by the first node that opens a database.
pub(crate) fn key_check_seal(key: &MasterKey) -> Vec<u8> {
    key.encrypt(KEY_CHECK_CTX, KEY_CHECK_PLAIN)
}

/// Whether `key` is the master key that sealed `sealed`.
pub(crate) fn key_check_verify(key: &MasterKey, sealed: &[u8]) -> Result<()> {
    match key.decrypt(KEY_CHECK_CTX, sealed) {
        Ok(plain) if plain == KEY_CHECK_PLAIN => Ok(()),
        _ => Err(StoreError::database(
            "this database's secrets are sealed with another master key: every node on one \
             database needs the same SWITCHYARD_MASTER_KEY (or the same <data-dir>/master.key)",
        )),
    }
}

/// The context an organization's secret `name` is sealed with.
pub(crate) fn secret_ctx(org: &str, name: &str) -> String {
    format!("secret:{org}:{name}")
}

/// An endpoint's signing secrets, sealed for its row.
pub(crate) fn encrypt_secrets(key: &MasterKey, ep: &Endpoint) -> Vec<u8> {
    let stored: Vec<StoredSecret> = ep
        .secrets()
        .iter()
        .map(|s| StoredSecret {
            s: s.secret.expose(),
            exp: s.expires_at,
        })
        .collect();
    let plain = serde_json::to_vec(&stored).unwrap_or_default();
    key.encrypt(&secrets_ctx(&ep.id), &plain)
}

/// An endpoint's bearer token, sealed for its row.
pub(crate) fn encrypt_token(key: &MasterKey, ep: &Endpoint) -> Option<Vec<u8>> {
    ep.token()
        .as_ref()
        .map(|t| key.encrypt(&token_ctx(&ep.id), t.as_bytes()))
}

/// An endpoint's token and signing secrets opened from their sealed columns; the error names
/// what did not open.
pub(crate) fn open_endpoint_secrets(
    key: &MasterKey,
    id: &str,
    token_enc: Option<Vec<u8>>,
    secrets_enc: &[u8],
) -> std::result::Result<(Option<String>, Vec<KeyedSecret>), String> {
    let bad = |what: &str, e: String| format!("endpoint {id}: {what}: {e}");
    let token = match token_enc {
        None => None,
        Some(b) => Some(
            String::from_utf8(
                key.decrypt(&token_ctx(id), &b)
                    .map_err(|e| bad("token", e.to_string()))?,
            )
            .map_err(|e| bad("token", e.to_string()))?,
        ),
    };
    let plain = key
        .decrypt(&secrets_ctx(id), secrets_enc)
        .map_err(|e| bad("secrets", e.to_string()))?;
    let stored: Vec<StoredSecret> =
        serde_json::from_slice(&plain).map_err(|e| bad("secrets", e.to_string()))?;
    let secrets = stored
        .into_iter()
        .map(|s| {
            Ok(KeyedSecret {
                secret: SigningSecret::parse(&s.s).map_err(|e| bad("secret", e.to_string()))?,
                expires_at: s.exp,
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok((token, secrets))
}

/// An endpoint's ordering from its two columns (`ordering_key` NULL: unordered); the error
/// names the column that does not parse.
pub(crate) fn ordering_of(
    key: Option<String>,
    failure: Option<String>,
) -> std::result::Result<Option<Ordering>, (&'static str, String)> {
    let Some(key) = key else {
        return Ok(None);
    };
    let failure = failure.unwrap_or_else(|| "skip".into());
    Ok(Some(Ordering {
        key: OrderingKey::parse(&key).map_err(|_| ("ordering key", key.clone()))?,
        on_head_failure: HeadFailure::parse(&failure)
            .map_err(|_| ("on_head_failure", failure.clone()))?,
    }))
}

/// A delivery's next attempt as shown and whether it is being attempted: a claim's lease is kept
/// in `next_attempt_at`, and while it runs the delivery has no next attempt yet.
pub(crate) fn delivery_timing(claimed: bool, next: Option<i64>) -> (Option<i64>, bool) {
    let in_flight = claimed && next.is_some_and(|t| t > switchyard_core::time::now_ms());
    (if in_flight { None } else { next }, in_flight)
}

/// A run status as stored.
pub(crate) fn run_status_str(s: &switchyard_core::executor::RunStatus) -> &'static str {
    match s {
        switchyard_core::executor::RunStatus::Succeeded => "succeeded",
        switchyard_core::executor::RunStatus::Failed => "failed",
    }
}

pub(crate) fn parse_run_status(s: &str) -> Option<switchyard_core::executor::RunStatus> {
    match s {
        "succeeded" => Some(switchyard_core::executor::RunStatus::Succeeded),
        "failed" => Some(switchyard_core::executor::RunStatus::Failed),
        _ => None,
    }
}

/// What differs between a stored event and a new one with the same id (the timestamp is not
/// compared: it defaults to the time of publishing).
pub(crate) fn idempotency_conflict(stored: &Event, new: &NewEvent) -> Option<&'static str> {
    if stored.event_type != new.event_type {
        Some("type")
    } else if stored.entity != new.entity {
        Some("entity")
    } else if stored.data != new.data {
        Some("data")
    } else {
        None
    }
}

/// The error a publish answers for an id published before with other content.
pub(crate) fn idempotency_error(id: &str, what: &str) -> StoreError {
    StoreError::Conflict(format!(
        "event `{id}` was published before with a different {what}; an id identifies one event"
    ))
}

/// The error a manual retry answers for a delivery whose payload is gone.
pub(crate) fn payload_dropped_error() -> StoreError {
    StoreError::Conflict(
        "the payload of this delivery's event was dropped by the organization's payload retention; it cannot be delivered again".into(),
    )
}

/// The error a manual retry answers for a delivery that waits for its key's head.
pub(crate) fn waits_for_head_error() -> StoreError {
    StoreError::Conflict(
        "this delivery waits for the delivery before it with the same ordering key; retry that one"
            .into(),
    )
}

/// How an attempt's outcome is stored: the delivery's status and its next attempt.
pub(crate) fn outcome_columns(o: &Outcome) -> (&'static str, Option<i64>) {
    match o {
        Outcome::Delivered => ("delivered", None),
        Outcome::Retry { at } => ("pending", Some(*at)),
        Outcome::Failed => ("failed", None),
    }
}

/// Why an attempt failed, as the endpoint's health records it (`None`: it succeeded).
pub(crate) fn failure_of(res: &AttemptResult) -> Option<String> {
    match res.outcome {
        Outcome::Delivered => None,
        _ => Some(
            res.attempt
                .error()
                .map(str::to_string)
                .or_else(|| res.attempt.status_code().map(|s| format!("HTTP {s}")))
                .unwrap_or_else(|| "failed".into()),
        ),
    }
}

pub(crate) fn push_once(v: &mut Vec<EndpointRef>, ep: &EndpointRef) {
    if !v.contains(ep) {
        v.push(ep.clone());
    }
}

/// The attempts of one batch to one endpoint, in order, as they change its health.
#[derive(Default)]
pub(crate) struct HealthDelta {
    /// The last success in the batch.
    last_success: Option<i64>,
    /// Failures after the last success (or all, without one): count, first, last and why.
    failures_after: u64,
    first_failure_after: Option<i64>,
    last_failure: Option<(i64, String)>,
}

impl HealthDelta {
    pub(crate) fn add(&mut self, at: i64, failure: Option<String>) {
        match failure {
            None => {
                self.last_success = Some(at);
                self.failures_after = 0;
                self.first_failure_after = None;
            }
            Some(why) => {
                self.failures_after += 1;
                self.first_failure_after.get_or_insert(at);
                self.last_failure = Some((at, why));
            }
        }
    }

    /// The health after this batch, and whether the batch brought back an endpoint that was
    /// failing before it.
    pub(crate) fn apply(&self, before: &EndpointHealth) -> (EndpointHealth, bool) {
        let mut h = before.clone();
        let recovered = self.last_success.is_some() && before.consecutive_failures > 0;
        if let Some(ok) = self.last_success {
            h.last_success_at = Some(ok);
            h.consecutive_failures = self.failures_after;
            h.failing_since = self.first_failure_after;
        } else {
            h.consecutive_failures += self.failures_after;
            if h.failing_since.is_none() {
                h.failing_since = self.first_failure_after;
            }
        }
        if let Some((at, why)) = &self.last_failure {
            h.last_failure_at = Some(*at);
            h.last_error = Some(why.clone());
        }
        (h, recovered)
    }
}

/// How stale a stored `last_success_at` may be: a healthy endpoint's row is written again only
/// when its last success moved by more than this (or anything else changed), so that a
/// thousand endpoints answering do not cost a health write per attempt result.
pub(crate) const LAST_SUCCESS_GRAIN_MS: i64 = 1000;

/// Whether `after` must be written over `before` (the stored row, if any).
pub(crate) fn health_changed(before: Option<&EndpointHealth>, after: &EndpointHealth) -> bool {
    let Some(before) = before else {
        return true;
    };
    let moved = match (before.last_success_at, after.last_success_at) {
        (Some(b), Some(a)) => a - b > LAST_SUCCESS_GRAIN_MS,
        (b, a) => b != a,
    };
    moved
        || before.consecutive_failures != after.consecutive_failures
        || before.failing_since != after.failing_since
        || before.last_failure_at != after.last_failure_at
        || before.last_error != after.last_error
}

/// An event a retention pass looks at: its sequence, its id, whether its payload is dropped.
pub(crate) type Scanned = (i64, String, bool);

/// Of the next events after a retention cursor, as (seq, id, received_at, payload dropped), those
/// received before `before`, and whether none is left after them. Sequence order follows
/// arrival, so the scan stops at the first event inside the retention.
pub(crate) fn retention_cut(
    rows: Vec<(i64, String, i64, bool)>,
    before: i64,
    limit: u32,
) -> (Vec<Scanned>, bool) {
    let mut done = rows.len() < limit as usize;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, id, received_at, dropped) in rows {
        if received_at >= before {
            done = true;
            break;
        }
        out.push((seq, id, dropped));
    }
    (out, done)
}

/// Refuses a key-value write that grows the organization's bytes past `max_bytes`.
pub(crate) fn check_kv_quota(used: i64, old: i64, new: i64, max_bytes: u64) -> Result<()> {
    let after = used - old + new;
    if new > old && after > i64::try_from(max_bytes).unwrap_or(i64::MAX) {
        return Err(StoreError::Quota(format!(
            "quota `kv_bytes` exceeded: this value would make the organization's key-value \
             storage {after} bytes, and its limit is {max_bytes}; delete some keys, or ask the \
             instance admin to raise the limit"
        )));
    }
    Ok(())
}

/// What an organization stores, for its quotas: one row of counts (`$1`/`?1` is the
/// organization), in the order of [`usage_from`]. `BYTES(x)` is the dialect's byte length.
pub(crate) fn usage_sql(param: &str, bytes: fn(&str) -> String) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM endpoints WHERE org_id = {param}),
                (SELECT COUNT(*) FROM subscriptions WHERE org_id = {param}),
                (SELECT COUNT(DISTINCT name) FROM executors WHERE org_id = {param}),
                (SELECT COUNT(*) FROM schedules WHERE org_id = {param}),
                (SELECT COALESCE(SUM({}), 0) FROM schedules WHERE org_id = {param}),
                (SELECT kv_bytes FROM orgs WHERE id = {param})",
        bytes("data")
    )
}

/// The counts of [`usage_sql`], as stored (never negative).
pub(crate) fn usage_from(v: [i64; 6]) -> switchyard_core::limits::Usage {
    let u = |i: usize| u64::try_from(v[i]).unwrap_or(0);
    switchyard_core::limits::Usage {
        endpoints: u(0),
        subscriptions: u(1),
        executors: u(2),
        schedules: u(3),
        schedule_bytes: u(4),
        kv_bytes: u(5),
    }
}

/// Runs a lookup `f` and names what its "no row" was ([`StoreError::missing`]).
pub(crate) async fn naming<T>(
    what: Missing,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    f.await.map_err(StoreError::missing(what))
}
