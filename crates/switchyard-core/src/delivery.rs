//! Deliveries and attempts: one event on its way to one target, each request made for it and
//! what it did, as the engine reports it and the store keeps it.

use crate::event::Event;
use crate::subscription::Target;

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
