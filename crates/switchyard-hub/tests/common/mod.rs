//! What the hub's test binaries share: an event to publish, an endpoint to subscribe, and a
//! wait on a condition.

use std::time::{Duration, Instant};
use switchyard_core::egress::EgressPolicy;
use switchyard_core::endpoint::{Change, EndpointChanges};
use switchyard_core::ids::{EventId, OrgId};
use switchyard_core::time::now_ms;
use switchyard_core::{Endpoint, EntityRef, NewEvent};

/// An event of `event_type` with `data`, about no entity, stamped now.
pub fn event(id: &str, event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: EventId::stored(id.into()),
        event_type: event_type.into(),
        timestamp: now_ms(),
        entity: EntityRef::default(),
        data,
    }
}

/// A new endpoint of `org` to an address nothing answers on (not yet stored).
pub fn endpoint_to_nowhere(org: &OrgId) -> Endpoint {
    let mut ep = Endpoint::new(org, now_ms());
    let settings = EndpointChanges {
        url: Some("https://receiver.invalid/hook".into()),
        ..Default::default()
    };
    ep.apply(settings, Change::Create, &EgressPolicy::default())
        .expect("valid settings");
    ep
}

/// A generous bound for a condition on a loaded two-core machine.
pub const MINUTE: Duration = Duration::from_secs(60);

/// Waits (up to `bound` of real time) until `f` holds, asking every 50 ms; past it, fails
/// naming `what`.
pub async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    bound: Duration,
    mut f: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !f().await {
        assert!(started.elapsed() < bound, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
