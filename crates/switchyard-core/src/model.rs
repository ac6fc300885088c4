//! The domain records: organizations, keys, event types, events, endpoints, subscriptions,
//! deliveries and attempts, as the store hands them out (secrets already decrypted).

use crate::signing::SigningSecret;
use serde_json::Value;
use std::collections::BTreeMap;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Publisher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "publisher" => Some(Role::Publisher),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Who is calling: a key of one organization, or the instance admin (`org == None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub org: Option<crate::ids::OrgId>,
    pub role: Role,
    pub key_id: crate::ids::KeyId,
}

/// An API key as listed: never the key, only what identifies it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: crate::ids::KeyId,
    /// `None` for instance admin keys.
    pub org_id: Option<crate::ids::OrgId>,
    pub role: Role,
    /// The first characters of the key (`sy_AbCd`), to tell keys apart.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Principal {
    /// May this caller act in `org` with at least `role`? The instance admin may act anywhere.
    pub fn may(&self, org: &str, role: Role) -> bool {
        match &self.org {
            None => true,
            Some(o) => o == org && self.role >= role,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: crate::ids::OrgId,
    pub name: String,
    pub created_at: i64,
    /// How long its events and runs are kept, in seconds; `None` follows the hub's default.
    pub retention_s: Option<u64>,
    /// How long the payload of an event whose every delivery succeeded is kept, in seconds;
    /// `None` follows the hub's default (by default payloads live as long as their events).
    pub payload_retention_s: Option<u64>,
    /// Its own shares and quotas, set by the instance admin; unset ones follow the hub's.
    pub limits: crate::limits::OrgLimits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub entity_type: Option<String>,
    pub schema: Option<Value>,
    pub updated_at: i64,
}

/// What an event is about (Enreach's EntityType/EntityId, Enneo's ticket, Enate's packet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityRef {
    pub kind: Option<String>,
    pub id: Option<String>,
}

/// A published event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: crate::ids::EventId,
    pub org_id: crate::ids::OrgId,
    pub event_type: String,
    /// When the event happened (the caller's timestamp, else the time of publishing), ms.
    pub timestamp: i64,
    pub entity: EntityRef,
    pub data: Value,
    /// Store-assigned, strictly increasing position; the cursor of event listings.
    pub seq: i64,
    pub received_at: i64,
    /// When the payload was dropped by the organization's payload retention (`data` is then
    /// `null`); such an event cannot be delivered again.
    pub payload_dropped_at: Option<i64>,
}

impl Event {
    /// The envelope filters look at and the `standard` profile sends:
    /// `{id, type, timestamp, entity: {type, id}, data}`.
    pub fn envelope(&self) -> Value {
        envelope(
            &self.id,
            &self.event_type,
            self.timestamp,
            &self.entity,
            &self.data,
        )
    }
}

/// The envelope of an event: what filters match and receivers get.
fn envelope(id: &str, event_type: &str, timestamp: i64, entity: &EntityRef, data: &Value) -> Value {
    serde_json::json!({
        "id": id,
        "type": event_type,
        "timestamp": crate::time::to_rfc3339(timestamp),
        "entity": {"type": entity.kind, "id": entity.id},
        "data": data,
    })
}

/// An event as submitted for publishing, before the store gives it a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The caller's id (idempotency key) or a generated `evt_…`.
    pub id: crate::ids::EventId,
    pub event_type: String,
    pub timestamp: i64,
    pub entity: EntityRef,
    pub data: Value,
}

impl NewEvent {
    /// What every event an organization publishes must pass, whichever way it came (the API,
    /// a platform's own shape, a schedule): a type of its own. Its data is checked against the
    /// type's schema where the schemas are, in the hub's publish.
    pub fn check(&self) -> Result<(), crate::CoreError> {
        check_publishable_type(&self.event_type, "type")
    }

    /// Whether this is one of the hub's own events.
    pub fn is_system(&self) -> bool {
        self.event_type.starts_with(RESERVED_TYPE_PREFIX)
    }

    /// The envelope this event will have (routing filters match it before the event is stored).
    pub fn envelope(&self) -> Value {
        envelope(
            &self.id,
            &self.event_type,
            self.timestamp,
            &self.entity,
            &self.data,
        )
    }
}

/// How a webhook request is shaped for its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The Switchyard envelope with Standard Webhooks headers.
    Standard,
    /// Enreach (Benemen) receivers: flat envelope, `X-Benemen-Event`, `X-Benemen-Token`.
    Enreach,
    /// Enate receivers: the message fields at top level.
    Enate,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Enreach => "enreach",
            Profile::Enate => "enate",
        }
    }
    /// Whether a receiver of this profile accepted a request it answered with `status`: any
    /// 2xx, except that Enreach re-sends on anything but 200 OK (seed 003).
    pub fn accepts(self, status: u16) -> bool {
        match self {
            Profile::Enreach => status == 200,
            Profile::Standard | Profile::Enate => (200..300).contains(&status),
        }
    }
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "standard" => Some(Profile::Standard),
            "enreach" => Some(Profile::Enreach),
            "enate" => Some(Profile::Enate),
            _ => None,
        }
    }
}

/// A signing secret with, for a rotated-out one, the time it stops signing (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedSecret {
    pub secret: SigningSecret,
    pub expires_at: Option<i64>,
}

/// A delivery destination and how to call it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: crate::ids::EndpointId,
    pub org_id: crate::ids::OrgId,
    pub url: String,
    pub description: String,
    pub profile: Profile,
    pub headers: BTreeMap<String, String>,
    /// Static token sent in `token_header` (Enreach's Secret → X-Benemen-Token).
    pub token: Option<String>,
    pub token_header: Option<String>,
    pub insecure_tls: bool,
    pub timeout_ms: u32,
    /// `None`: the default schedule.
    pub retry_schedule_s: Option<Vec<u32>>,
    pub max_in_flight: u32,
    /// Requests per second at most (`None`: unlimited).
    pub max_rps: Option<u32>,
    /// `Some`: deliveries with the same ordering key arrive in publish order, one at a time.
    pub ordering: Option<crate::ordering::Ordering>,
    /// Newest first; the first one is current, later ones are rotated out and expire.
    pub secrets: Vec<KeyedSecret>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Set when the endpoint was created for a subscription's inline `url`.
    pub owner_subscription: Option<crate::ids::SubscriptionId>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Endpoint {
    /// Secrets that sign at `now`: the current one and rotated ones not yet expired.
    pub fn active_secrets(&self, now: i64) -> Vec<SigningSecret> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|t| t > now))
            .map(|s| s.secret.clone())
            .collect()
    }

    /// How this endpoint's requests are signed: the scheme of its current key.
    pub fn scheme(&self) -> crate::signing::Scheme {
        self.secrets
            .first()
            .map_or(crate::signing::Scheme::Hmac, |s| s.secret.scheme())
    }

    /// The `whpk_` public keys that verify this endpoint's requests at `now`, current first
    /// (none for HMAC keys).
    pub fn public_keys(&self, now: i64) -> Vec<String> {
        self.active_secrets(now)
            .iter()
            .filter_map(SigningSecret::public_key)
            .collect()
    }

    pub fn schedule(&self) -> &[u32] {
        self.retry_schedule_s
            .as_deref()
            .unwrap_or(&crate::retry::DEFAULT_SCHEDULE_S)
    }
}

/// Where a subscription sends events: a webhook endpoint, or an executor (an event hook).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Endpoint(crate::ids::EndpointId),
    Executor(String),
}

impl Target {
    pub fn endpoint_id(&self) -> Option<&crate::ids::EndpointId> {
        match self {
            Target::Endpoint(id) => Some(id),
            Target::Executor(_) => None,
        }
    }
    pub fn executor(&self) -> Option<&str> {
        match self {
            Target::Executor(name) => Some(name),
            Target::Endpoint(_) => None,
        }
    }
    /// From the two nullable columns that store it.
    pub fn from_columns(endpoint_id: Option<String>, executor: Option<String>) -> Option<Target> {
        match (endpoint_id, executor) {
            (Some(e), None) => Some(Target::Endpoint(crate::ids::EndpointId::stored(e))),
            (None, Some(x)) => Some(Target::Executor(x)),
            _ => None,
        }
    }
}

/// Routes events of some types (optionally about one entity, optionally filtered) to a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: crate::ids::SubscriptionId,
    pub org_id: crate::ids::OrgId,
    pub event_types: Vec<String>,
    pub target: Target,
    pub entity_id: Option<String>,
    /// The filter, as given and parsed.
    pub filter: Option<crate::filter::SubscriptionFilter>,
    /// Whether the publish waits for this subscription's target.
    pub mode: Mode,
    pub created_at: i64,
}

/// Checks an event type name: letters, digits and `-_.:`, 1–200 characters.
pub fn valid_type_name(name: &str) -> bool {
    crate::ids::is_valid_name(name, 200) && !name.contains('@')
}

/// Types starting with this are the hub's own events (`switchyard.endpoint.disabled`…); no
/// organization publishes them.
pub const RESERVED_TYPE_PREFIX: &str = "switchyard.";

/// Checks the type of an event an organization publishes (or schedules): a valid name, not
/// one of the hub's own.
pub fn check_publishable_type(name: &str, field: &str) -> Result<(), crate::CoreError> {
    if !valid_type_name(name) {
        return Err(crate::CoreError::invalid(format!(
            "`{field}` must be 1–200 characters of letters, digits and -_.:"
        )));
    }
    if name.starts_with(RESERVED_TYPE_PREFIX) {
        return Err(crate::CoreError::invalid(format!(
            "`{field}`: types starting with `{RESERVED_TYPE_PREFIX}` are reserved for events of the hub itself"
        )));
    }
    Ok(())
}

/// How a subscription's target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Delivered after the publish answered, with retries (the default).
    #[default]
    Async,
    /// Attempted once while the publish waits; the publish answers with its outcome.
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
        }
    }
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "async" => Some(Mode::Async),
            "sync" => Some(Mode::Sync),
            _ => None,
        }
    }
}

/// What one synchronous target of a published event did while the publish waited.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    pub delivery_id: crate::ids::DeliveryId,
    pub subscription_id: crate::ids::SubscriptionId,
    pub target: Target,
    /// Whether the target took the event (a 2xx answer, a successful run).
    pub ok: bool,
    /// The endpoint's HTTP status.
    pub status_code: Option<u16>,
    /// What the target answered: the run's output, or the endpoint's body (JSON when it is).
    pub output: Option<Value>,
    pub error: Option<String>,
    /// The run an executor target made.
    pub run_id: Option<crate::ids::RunId>,
    pub duration_ms: f64,
}

impl Subscription {
    /// Checks what a subscription matches: 1–100 event type names or patterns, and a filter
    /// that parses (`null` is none). Returns the parsed filter. The target's existence is the
    /// store's to check.
    pub fn check_matching(
        event_types: &[String],
        filter: Option<Value>,
    ) -> Result<Option<crate::filter::SubscriptionFilter>, crate::CoreError> {
        use crate::CoreError;
        if event_types.is_empty() || event_types.len() > 100 {
            return Err(CoreError::invalid(
                "`event_types` must list 1–100 names or patterns",
            ));
        }
        if let Some(bad) = event_types
            .iter()
            .find(|t| !crate::glob::is_valid_pattern(t))
        {
            return Err(CoreError::invalid(format!(
                "`{bad}` is not a valid event type or pattern"
            )));
        }
        Ok(filter
            .filter(|f| !f.is_null())
            .map(crate::filter::SubscriptionFilter::parse)
            .transpose()?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    /// The head of an ordering key that failed on an endpoint with `on_head_failure: block`:
    /// its key waits until it is retried by hand.
    Blocked,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Blocked => "blocked",
        }
    }
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            "blocked" => Some(DeliveryStatus::Blocked),
            _ => None,
        }
    }
}

/// One event on its way to one endpoint (or executor).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: crate::ids::DeliveryId,
    pub org_id: crate::ids::OrgId,
    pub event_id: crate::ids::EventId,
    pub target: Target,
    pub subscription_id: Option<crate::ids::SubscriptionId>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due. `None` on a pending delivery: it is being attempted now
    /// (`in_flight`), or it waits for the delivery before it with the same ordering key.
    pub next_attempt_at: Option<i64>,
    /// Claimed by a node and being attempted.
    pub in_flight: bool,
    /// For an ordered endpoint: the key this delivery is ordered by.
    pub ordering_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One HTTP request made for a delivery, and what came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: crate::ids::AttemptId,
    pub delivery_id: crate::ids::DeliveryId,
    pub at: i64,
    pub status_code: Option<u16>,
    pub duration_ms: f64,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    /// What held the attempt back once it was due (flow control), e.g. `120 ms: max_rps`.
    pub waited: Option<String>,
    /// For a failed attempt that will be retried: why the next one waits as long as it does.
    pub retry_reason: Option<String>,
    /// The request's headers as sent, in order, with credentials and signatures redacted
    /// (attempts that sent no HTTP request have none).
    pub request_headers: Option<Vec<(String, String)>>,
    /// The node that made the attempt, as the store recorded it (`None` before it is recorded,
    /// and for attempts recorded before nodes were).
    pub node: Option<String>,
}

/// What happened to an attempt, and so what the delivery becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (ms).
    Retry {
        at: i64,
    },
    /// No more attempts.
    Failed,
}

/// An attempt's result as the delivery engine reports it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// The delivery's organization: every write the result causes is scoped to it.
    pub org_id: crate::ids::OrgId,
    /// The endpoint the attempt went to (`None` for event hooks).
    pub endpoint_id: Option<crate::ids::EndpointId>,
    pub delivery_id: crate::ids::DeliveryId,
    pub attempt: Attempt,
    pub outcome: Outcome,
    /// Disable the endpoint for this reason (e.g. 410 Gone).
    pub disable_endpoint: Option<String>,
}

/// An endpoint that an attempt disabled, with its organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEndpoint {
    pub org_id: crate::ids::OrgId,
    pub endpoint_id: crate::ids::EndpointId,
}

/// An endpoint named with its organization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointRef {
    pub org_id: crate::ids::OrgId,
    pub endpoint_id: crate::ids::EndpointId,
}

/// A delivery that is due, with what the engine needs to make the attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: crate::ids::DeliveryId,
    pub org_id: crate::ids::OrgId,
    pub target: Target,
    pub attempts: u32,
    pub event: std::sync::Arc<Event>,
    /// Until when this node's claim holds (ms); after it, another claim may take the delivery.
    pub lease_until: i64,
    /// How long its first attempt waited behind the head of its ordering key (ms), if it did.
    pub ordering_wait_ms: Option<i64>,
    /// The `sync` subscription that made it, when it was made just now by a publish that
    /// attempts it itself, once, while its caller waits. A claim from the store is never sync:
    /// a sync delivery whose publish did not record it (a crash) is delivered like any other.
    pub sync: Option<crate::ids::SubscriptionId>,
}
