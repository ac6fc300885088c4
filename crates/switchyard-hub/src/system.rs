//! System events: what the delivery engine reports becomes `switchyard.*` events of the
//! organization concerned, published like any other.

use crate::Hub;
use switchyard_core::time::now_ms;
use switchyard_core::{EntityRef, NewEvent};
use switchyard_delivery::EngineEvent;
use tokio::sync::mpsc;

/// Type of the event published when an endpoint is disabled.
pub const ENDPOINT_DISABLED: &str = "switchyard.endpoint.disabled";

impl Hub {
    /// Publishes what the engine reports until shutdown, then what is left.
    pub(crate) async fn listen(self, mut rx: mpsc::UnboundedReceiver<EngineEvent>) {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_engine_event(ev).await,
                    None => return,
                },
                _ = self.inner.cancel.cancelled() => break,
            }
        }
        while let Ok(ev) = rx.try_recv() {
            self.on_engine_event(ev).await;
        }
    }

    async fn on_engine_event(&self, ev: EngineEvent) {
        match ev {
            EngineEvent::EndpointDisabled {
                org_id,
                endpoint_id,
            } => {
                self.forget_routes(&org_id);
                let ep = self
                    .inner
                    .store
                    .get_endpoint(&org_id, &endpoint_id)
                    .await
                    .ok();
                let event = NewEvent {
                    id: switchyard_core::ids::EventId::generate(),
                    event_type: ENDPOINT_DISABLED.to_string(),
                    timestamp: now_ms(),
                    entity: EntityRef {
                        kind: Some("Endpoint".into()),
                        id: Some(endpoint_id.as_str().to_owned()),
                    },
                    data: serde_json::json!({
                        "endpoint_id": endpoint_id,
                        "url": ep.as_ref().map(|e| e.url().to_string()),
                        "reason": ep.as_ref().and_then(|e| e.disabled_reason().map(str::to_string)),
                    }),
                };
                if let Err(e) = self.publish_system(&org_id, vec![event]).await {
                    tracing::error!(error = %e, org = %org_id, "publishing {ENDPOINT_DISABLED} failed");
                }
            }
        }
    }
}
