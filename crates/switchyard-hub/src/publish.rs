//! Publishing: route with the organization's route table, store at the table's routing
//! version, count, dispatch. A table is built once per routing version and reused; a publish
//! that meets a newer version (a change on this node or another) is routed again.

use crate::{Hub, HubError};
use std::sync::Arc;
use switchyard_core::NewEvent;
use switchyard_core::routing::{RouteTable, Target};
use switchyard_store::{PublishOutcome, Published, RoutedBatch, RoutedEvent};

/// How often a publish is routed again before giving up on an organization whose routing
/// changes under every attempt.
const MAX_ROUTING_ATTEMPTS: usize = 8;

/// One organization's route table and the routing version it was built from.
pub(crate) struct OrgRoutes {
    version: i64,
    table: RouteTable,
}

impl Hub {
    /// Stores `events` of `org` with their deliveries (one durable commit), then starts the
    /// deliveries. An event whose id was published before comes back as a duplicate.
    pub async fn publish(
        &self,
        org: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, HubError> {
        let n = events.len() as u64;
        let mut routes = self.routes(org).await?;
        let mut batch = route_batch(&routes, events);
        for _ in 0..MAX_ROUTING_ATTEMPTS {
            match self.inner.store.publish(org, batch, self.node()).await? {
                PublishOutcome::Committed(mut published) => {
                    metrics::counter!("switchyard_events_published_total").increment(n);
                    for p in &mut published {
                        self.inner
                            .engine
                            .dispatch(std::mem::take(&mut p.new_deliveries));
                    }
                    return Ok(published);
                }
                PublishOutcome::StaleRouting(stale) => {
                    metrics::counter!("switchyard_routing_reloads_total").increment(1);
                    self.routing_changed(org);
                    routes = self.routes(org).await?;
                    batch = route_batch(&routes, stale.events.into_iter().map(|e| e.event));
                }
            }
        }
        Err(HubError::RoutingUnstable)
    }

    /// Where `event` would go if `org` published it now. Nothing is written.
    pub async fn route(&self, org: &str, event: &NewEvent) -> Result<Vec<Target>, HubError> {
        Ok(self.routes(org).await?.table.route(event))
    }

    /// The organization's route table, built from the store on first use and after a change.
    async fn routes(&self, org: &str) -> Result<Arc<OrgRoutes>, HubError> {
        if let Ok(r) = self.inner.routes.lock()
            && let Some(t) = r.get(org)
        {
            return Ok(t.clone());
        }
        let snapshot = self.inner.store.routing(org).await?;
        let routes = Arc::new(OrgRoutes {
            version: snapshot.version,
            table: RouteTable::new(snapshot.subscriptions, snapshot.ordered),
        });
        if let Ok(mut r) = self.inner.routes.lock() {
            // A newer table built meanwhile by another publish wins.
            let keep = r
                .get(org)
                .is_some_and(|cached| cached.version > routes.version);
            if !keep {
                r.insert(org.to_string(), routes.clone());
            }
        }
        Ok(routes)
    }
}

fn route_batch(routes: &OrgRoutes, events: impl IntoIterator<Item = NewEvent>) -> RoutedBatch {
    RoutedBatch {
        routing_version: routes.version,
        events: events
            .into_iter()
            .map(|event| RoutedEvent {
                targets: routes.table.route(&event),
                event,
            })
            .collect(),
    }
}
