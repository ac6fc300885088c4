//! What this node tells the other nodes sharing its database, and what it does with what they
//! tell it: a change made through one node's API drops the matching cache entries on every
//! node (routes, endpoint settings, event types' schemas, hook definitions and answers,
//! executors, schedules, revoked keys), and deliveries one node leaves due
//! wake the node that holds their endpoint's lease. On SQLite there is one node and nothing to
//! tell.

use crate::Hub;
use switchyard_core::ids::{EndpointId, OrgId};
use switchyard_store::Notice;
use tokio::sync::mpsc;

impl Hub {
    /// Tells the other nodes of `notice` (it has been applied on this node already). Sent after
    /// the change committed; a notice that is lost is covered by the caches' own expiry.
    pub(crate) fn announce(&self, notice: Notice) {
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.notify(&notice).await {
                tracing::warn!(error = %e, ?notice, "telling the other nodes of a change failed");
            }
        });
    }

    /// An event type's schema changed through this node: dropped here, and on every node.
    pub(crate) async fn event_type_changed(&self, org: &OrgId, name: &str) {
        self.forget_schema(org, name).await;
        self.announce(Notice::EventType {
            org: org.to_string(),
            name: name.to_string(),
        });
    }

    /// Applies what other nodes tell until the store stops listening or the hub stops.
    pub(crate) async fn notice_loop(self, mut rx: mpsc::UnboundedReceiver<Notice>) {
        let cancel = self.inner.cancel.clone();
        loop {
            let notice = tokio::select! {
                n = rx.recv() => match n { Some(n) => n, None => return },
                _ = cancel.cancelled() => return,
            };
            self.apply(notice).await;
        }
    }

    /// Drops what `notice` makes stale on this node, or wakes the work it announces.
    async fn apply(&self, notice: Notice) {
        let org = |o: &str| OrgId::stored(o.to_string());
        match &notice {
            Notice::Due {
                org: o,
                endpoints,
                hooks,
            } => {
                let endpoints: Vec<EndpointId> =
                    endpoints.iter().cloned().map(EndpointId::stored).collect();
                self.inner.engine.due_elsewhere(&org(o), &endpoints, *hooks);
            }
            Notice::Endpoint { org: o, endpoint } => {
                self.inner.engine.endpoint_changed(endpoint);
                self.forget_routes(&org(o));
                self.inner.engine.wake();
            }
            Notice::Routing { org: o } => self.forget_routes(&org(o)),
            Notice::Hook { org: o, name } => self.forget_hook(&org(o), name).await,
            Notice::Executor { org: o, name } => self.forget_executor(&org(o), name).await,
            Notice::Schedules => self.inner.schedule_wake.notify_one(),
            Notice::Org { org: o } => self.reload_limits(Some(&org(o))).await,
            Notice::EventType { org: o, name } => self.forget_schema(&org(o), name).await,
            Notice::Key { key_id } => self.forget_key(key_id),
            Notice::Lost => {
                self.inner.keys.invalidate_all();
                self.inner.orgs.invalidate_all();
                self.inner.schemas.invalidate_all();
                if let Ok(mut r) = self.inner.routes.lock() {
                    r.clear();
                }
                self.inner.engine.forget_endpoints();
                self.inner.hook_cache.clear();
                self.reload_limits(None).await;
                self.inner.schedule_wake.notify_one();
                self.inner.engine.wake();
            }
        }
    }
}
