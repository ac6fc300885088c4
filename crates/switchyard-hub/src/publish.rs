//! Publishing: route with the organization's route table, store at the table's routing
//! version, count, dispatch. A table is built once per routing version and reused; a publish
//! that meets a newer version (a change on this node or another) is routed again.

use crate::{Hub, HubError};
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Instant;
use switchyard_core::ids::OrgId;
use switchyard_core::routing::{RouteTable, Target};
use switchyard_core::{DueDelivery, NewEvent};
use switchyard_delivery::Reserved;
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
    /// deliveries. An event whose id was published before comes back as a duplicate. Each
    /// event passes the checks every published event passes, or nothing is stored.
    pub async fn publish(
        &self,
        org: &OrgId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, HubError> {
        let events = self.check_events(org, events).await?;
        self.commit(org, events).await
    }

    /// Publishes the hub's own events (`switchyard.…`), which no organization may publish.
    pub(crate) async fn publish_system(
        &self,
        org: &OrgId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, HubError> {
        debug_assert!(events.iter().all(NewEvent::is_system));
        self.commit(org, events).await
    }

    /// Stores checked `events` and starts their deliveries. Every line logged meanwhile names
    /// the organization.
    #[tracing::instrument(name = "publish", skip_all, fields(org = %org, events = events.len()))]
    async fn commit(&self, org: &OrgId, events: Vec<NewEvent>) -> Result<Vec<Published>, HubError> {
        let n = events.len() as u64;
        // The organization's publishes per minute (its own events; the hub's `switchyard.*`
        // events are not counted).
        let counted = events.iter().filter(|e| !e.is_system()).count() as u64;
        let limit = self.limits(org).events_per_minute;
        if let Err(e) = self
            .inner
            .rates
            .take(org, crate::rates::Rate::Events, counted, limit, true)
        {
            return Err(HubError::RateLimited {
                message: format!("publish refused: {}", e.message),
                retry_after_s: e.retry_after_s,
            });
        }
        let engine = &self.inner.engine;
        let mut routes = self.routes(org).await?;
        let mut reserved = Reserved::default();
        let mut batch = route_batch(&routes, events, |t| engine.reserve(org, t, &mut reserved));
        for _ in 0..MAX_ROUTING_ATTEMPTS {
            let outcome = match self.inner.store.publish(org, batch, self.claim()).await {
                Ok(o) => o,
                Err(e) => {
                    engine.unreserve(reserved);
                    return Err(e.into());
                }
            };
            match outcome {
                PublishOutcome::Committed(mut published) => {
                    metrics::counter!("switchyard_events_published_total").increment(n);
                    if self.inner.published.receiver_count() > 0
                        && published.iter().any(|p| !p.duplicate)
                    {
                        let _ = self.inner.published.send(Arc::from(org.as_str()));
                    }
                    let mut due = Vec::new();
                    let mut sync = Vec::new();
                    for (i, p) in published.iter_mut().enumerate() {
                        for d in std::mem::take(&mut p.new_deliveries) {
                            if d.sync.is_some() {
                                sync.push((i, d));
                            } else {
                                due.push(d);
                            }
                        }
                    }
                    engine.dispatch_reserved(due, reserved);
                    if !sync.is_empty() {
                        self.attempt_sync(&mut published, sync).await;
                    }
                    return Ok(published);
                }
                PublishOutcome::StaleRouting(stale) => {
                    metrics::counter!("switchyard_routing_reloads_total").increment(1);
                    engine.unreserve(std::mem::take(&mut reserved));
                    self.forget_routes(org);
                    routes = match self.routes(org).await {
                        Ok(r) => r,
                        Err(e) => return Err(e),
                    };
                    batch = route_batch(&routes, stale.events.into_iter().map(|e| e.event), |t| {
                        engine.reserve(org, t, &mut reserved)
                    });
                }
            }
        }
        engine.unreserve(reserved);
        Err(HubError::RoutingUnstable)
    }

    /// Attempts the synchronous deliveries a publish made (`(index of the event, delivery)`),
    /// all at once and together within the engine's sync deadline, and puts each outcome on
    /// its event. Each attempt runs in its own task: a caller that goes away does not cut one
    /// off before it is recorded.
    async fn attempt_sync(&self, published: &mut [Published], sync: Vec<(usize, DueDelivery)>) {
        let engine = &self.inner.engine;
        let deadline = Instant::now() + engine.config().sync_deadline;
        let tasks: Vec<_> = sync
            .into_iter()
            .map(|(i, d)| {
                let engine = engine.clone();
                (
                    i,
                    tokio::spawn(async move { engine.attempt_now(d, deadline).await }),
                )
            })
            .collect();
        for (i, task) in tasks {
            match task.await {
                Ok(outcome) => {
                    metrics::counter!("switchyard_sync_attempts_total",
                        "outcome" => if outcome.ok { "ok" } else { "failed" })
                    .increment(1);
                    if let Some(p) = published.get_mut(i) {
                        p.sync.push(outcome);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a synchronous attempt did not finish"),
            }
        }
    }

    /// Where `event` would go if `org` published it now. Nothing is written.
    pub async fn route(&self, org: &OrgId, event: &NewEvent) -> Result<Vec<Target>, HubError> {
        Ok(self.routes(org).await?.table.route(event))
    }

    /// The organization's route table, built from the store on first use and after a change.
    /// One build per organization at a time: publishers that find no table together wait for
    /// the first one's instead of each loading every subscription (32 publishers at once, an
    /// organization of 10,000 subscriptions: 80 MB more held, and a heap left fragmented).
    async fn routes(&self, org: &OrgId) -> Result<Arc<OrgRoutes>, HubError> {
        if let Some(t) = self.cached_routes(org) {
            return Ok(t);
        }
        let gate = self
            .inner
            .route_builds
            .lock()
            .ok()
            .map(|mut b| b.entry(org.clone()).or_default().clone());
        let Some(gate) = gate else {
            return self.build_routes(org).await;
        };
        let built = {
            let _building = gate.lock().await;
            match self.cached_routes(org) {
                Some(t) => Ok(t),
                None => self.build_routes(org).await,
            }
        };
        if let Ok(mut b) = self.inner.route_builds.lock()
            && b.get(org).is_some_and(|g| Arc::strong_count(g) == 2)
        {
            // Nobody else waits on it (the map's and ours are the only holders).
            b.remove(org);
        }
        built
    }

    fn cached_routes(&self, org: &OrgId) -> Option<Arc<OrgRoutes>> {
        self.inner.routes.lock().ok()?.get(org).cloned()
    }

    /// Route tables this node has built since it started (each loads an organization's
    /// subscriptions; also the metric `switchyard_route_tables_built_total`).
    pub fn route_tables_built(&self) -> u64 {
        self.inner.route_tables_built.load(AtomicOrdering::Relaxed)
    }

    /// Builds the organization's route table from the store and keeps it.
    async fn build_routes(&self, org: &OrgId) -> Result<Arc<OrgRoutes>, HubError> {
        self.inner
            .route_tables_built
            .fetch_add(1, AtomicOrdering::Relaxed);
        metrics::counter!("switchyard_route_tables_built_total").increment(1);
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
                r.insert(org.clone(), routes.clone());
            }
        }
        Ok(routes)
    }
}

/// Routes `events` with `routes`; `room` says for each event's targets which ones this node
/// takes at once.
fn route_batch(
    routes: &OrgRoutes,
    events: impl IntoIterator<Item = NewEvent>,
    mut room: impl FnMut(&[Target]) -> Vec<bool>,
) -> RoutedBatch {
    RoutedBatch {
        routing_version: routes.version,
        events: events
            .into_iter()
            .map(|event| {
                let targets = routes.table.route(&event);
                RoutedEvent {
                    claim: room(&targets),
                    targets,
                    event,
                }
            })
            .collect(),
    }
}
