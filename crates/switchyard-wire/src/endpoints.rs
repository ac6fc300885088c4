//! Endpoints: settings in (create, patch), the endpoint out, rotation and replay.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchyard_core::endpoint::EndpointChanges;
use switchyard_core::signing::Scheme;
use switchyard_core::time::{now_ms, to_rfc3339};
use switchyard_core::*;
use utoipa::ToSchema;

use crate::double_option;

/// The endpoint settings a create or a patch may carry.
#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// Full URL; `https` unless the instance allows `http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `standard` (default), `enreach` or `enate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Extra headers sent with every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A static token sent in `token_header` (Enreach's `Secret`); `null` removes it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "double_option"
    )]
    #[schema(value_type = Option<String>)]
    pub token: Option<Option<String>>,
    /// Header carrying `token` (default `X-Benemen-Token` for `enreach`, else `X-Switchyard-Token`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "double_option"
    )]
    #[schema(value_type = Option<String>)]
    pub token_header: Option<Option<String>>,
    /// Accept self-signed certificates (Enreach's `InsecureSSL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_tls: Option<bool>,
    /// Per-request timeout, 1–30000 ms (default 15000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// Seconds to wait after each failed attempt; `null` restores the default schedule.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "double_option"
    )]
    #[schema(value_type = Option<Vec<u32>>)]
    pub retry_schedule_s: Option<Option<Vec<u32>>>,
    /// Ordered delivery: deliveries with the same ordering key reach the receiver in publish
    /// order, one at a time, retries included (default `false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// What an ordered endpoint orders by: `entity` (the event's entity type and id, the
    /// default) or a path into the event's data such as `data.ticketId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// When the head of a key fails for good: `skip` (default: it is marked failed and the key
    /// moves on) or `block` (it is marked blocked and the key waits until it is retried).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_head_failure: Option<String>,
    /// Requests per second at most; `null` means unlimited.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "double_option"
    )]
    #[schema(value_type = Option<u32>)]
    pub max_rps: Option<Option<u32>>,
    /// Concurrent requests at most (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// `hmac` (Standard Webhooks `v1`, default) or `ed25519` (`v1a`, receivers verify with the
    /// public key). Set at create; change it with rotate-secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<String>,
    /// Your own `whsec_…` secret (or `whsk_…` key for `ed25519`) instead of a generated one
    /// (create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EndpointOut {
    pub id: String,
    pub url: String,
    pub description: String,
    pub profile: String,
    pub headers: BTreeMap<String, String>,
    /// Whether a token is set (the token itself is never returned).
    pub token_set: bool,
    pub token_header: Option<String>,
    pub insecure_tls: bool,
    pub timeout_ms: u32,
    pub retry_schedule_s: Vec<u32>,
    pub ordered: bool,
    /// For an ordered endpoint: `entity` or a data path.
    pub ordering_key: Option<String>,
    /// For an ordered endpoint: `skip` or `block`.
    pub on_head_failure: Option<String>,
    pub max_rps: Option<u32>,
    pub max_in_flight: u32,
    /// `hmac` (Standard Webhooks `v1`) or `ed25519` (`v1a`).
    pub signing: String,
    /// For `ed25519`: the `whpk_` public keys that verify requests now, current first (two
    /// while a rotated key still signs).
    pub public_keys: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Set when the endpoint belongs to a subscription's inline URL.
    pub subscription_id: Option<String>,
    /// The `whsec_` signing secret of an `hmac` endpoint: present only in the answer to create
    /// and rotate-secret. (An `ed25519` endpoint's secret key is never shown.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl EndpointOut {
    /// Header values may carry credentials: only admins see them; others see the names.
    pub fn for_reader(mut self, p: &switchyard_core::Principal, org: &str) -> Self {
        if !p.may(org, Role::Admin) {
            for v in self.headers.values_mut() {
                *v = "[hidden]".into();
            }
        }
        self
    }

    pub fn from(ep: &Endpoint, show_secret: bool) -> Self {
        EndpointOut {
            id: ep.id.as_str().to_owned(),
            url: ep.url().to_string(),
            description: ep.description().to_string(),
            profile: ep.profile().as_str().into(),
            headers: ep.headers().clone(),
            token_set: ep.token().is_some(),
            token_header: ep.token_header().map(str::to_string),
            insecure_tls: ep.insecure_tls,
            timeout_ms: ep.timeout_ms(),
            retry_schedule_s: ep.schedule().to_vec(),
            ordered: ep.ordering().is_some(),
            ordering_key: ep.ordering().map(|o| o.key.as_setting()),
            on_head_failure: ep.ordering().map(|o| o.on_head_failure.as_str().into()),
            max_rps: ep.max_rps(),
            max_in_flight: ep.max_in_flight(),
            signing: ep.scheme().as_str().into(),
            public_keys: ep.public_keys(now_ms()),
            enabled: ep.enabled(),
            disabled_reason: ep.disabled_reason().map(str::to_string),
            subscription_id: ep
                .owner_subscription
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            // An Ed25519 secret key never leaves the hub: receivers need only the public key.
            secret: ep
                .secrets()
                .first()
                .filter(|s| show_secret && s.secret.scheme() == Scheme::Hmac)
                .map(|s| s.secret.expose()),
            created_at: to_rfc3339(ep.created_at),
            updated_at: to_rfc3339(ep.updated_at),
        }
    }
}

impl From<EndpointIn> for EndpointChanges {
    fn from(b: EndpointIn) -> Self {
        EndpointChanges {
            url: b.url,
            description: b.description,
            profile: b.profile,
            headers: b.headers,
            token: b.token,
            token_header: b.token_header,
            insecure_tls: b.insecure_tls,
            timeout_ms: b.timeout_ms,
            retry_schedule_s: b.retry_schedule_s,
            ordered: b.ordered,
            ordering_key: b.ordering_key,
            on_head_failure: b.on_head_failure,
            max_rps: b.max_rps,
            max_in_flight: b.max_in_flight,
            signing: b.signing,
            secret: b.secret,
            enabled: b.enabled,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// Your own new key (`whsec_…` or `whsk_…`); generated when absent.
    pub secret: Option<String>,
    /// The scheme of the new key, `hmac` or `ed25519` (default: the current one). Changing it
    /// here keeps the old key signing beside the new one until `old_expires_at`.
    pub signing: Option<String>,
    /// RFC 3339; when the replaced keys stop signing (default: in 24 hours; now or earlier
    /// retires them at once).
    pub old_expires_at: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// RFC 3339; events published at or after this time.
    pub since: String,
    /// RFC 3339; events published before this time (default: now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReplayOut {
    /// New deliveries created.
    pub deliveries: u64,
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// The window of recent attempts the rates and latencies cover, in seconds (default 3600,
    /// at most 30 days).
    pub window_s: Option<u64>,
}

/// How an endpoint has been answering.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EndpointHealthOut {
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Attempts failed in a row since the last success.
    pub consecutive_failures: u64,
    /// When the current run of failures began.
    pub failing_since: Option<String>,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    /// What the last failure was (status or error).
    pub last_error: Option<String>,
    pub window: HealthWindowOut,
}

/// Attempts over the recent window (the most recent 10,000 at most).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HealthWindowOut {
    pub since: String,
    pub attempts: u64,
    pub successes: u64,
    /// Successes per attempt; `null` without attempts.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl EndpointHealthOut {
    pub fn from(ep: &Endpoint, h: &switchyard_core::health::EndpointHealth) -> Self {
        EndpointHealthOut {
            enabled: ep.enabled(),
            disabled_reason: ep.disabled_reason().map(str::to_string),
            consecutive_failures: h.consecutive_failures,
            failing_since: h.failing_since.map(to_rfc3339),
            last_success_at: h.last_success_at.map(to_rfc3339),
            last_failure_at: h.last_failure_at.map(to_rfc3339),
            last_error: h.last_error.clone(),
            window: HealthWindowOut {
                since: to_rfc3339(h.window.since),
                attempts: h.window.attempts,
                successes: h.window.successes,
                success_rate: h.window.success_rate(),
                p50_ms: h.window.p50_ms,
                p99_ms: h.window.p99_ms,
            },
        }
    }
}
