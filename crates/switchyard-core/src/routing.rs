//! Routing: which subscriptions an event goes to.
//!
//! A [`RouteTable`] is built once per organization from its subscriptions (as of one routing
//! version) and reused for every publish until that version changes. Routing needs no store:
//! a table answers where an event would go before anything is written. Exact event-type names are looked up in a
//! hash map, so the cost of routing an event does not grow with the number of subscriptions to
//! other types; only glob patterns (`Ticket*`, `*`) are scanned.

use crate::event::NewEvent;
use crate::filter::SubscriptionFilter;
use crate::glob;
use crate::ids::{EndpointId, SubscriptionId};
use crate::ordering::OrderingKey;
use crate::subscription::{Mode, Subscription, Target as Destination};
use std::collections::HashMap;

/// One subscription, ready to match.
#[derive(Debug, Clone)]
struct Route {
    subscription_id: SubscriptionId,
    target: Destination,
    sync: bool,
    entity_id: Option<String>,
    filter: Option<SubscriptionFilter>,
}

/// The subscriptions of one organization, indexed by event type.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<usize>>,
    globs: Vec<(String, usize)>,
    routes: Vec<Route>,
    /// What each ordered endpoint orders by.
    ordered: HashMap<EndpointId, OrderingKey>,
}

/// Where one event goes: the subscription and its endpoint or executor, and for an ordered
/// endpoint the key the delivery is ordered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub subscription_id: SubscriptionId,
    pub target: Destination,
    pub ordering_key: Option<String>,
    /// Attempted by the publish itself while its caller waits (never ordered: it cannot wait
    /// behind other deliveries).
    pub sync: bool,
}

impl RouteTable {
    /// Builds the table from subscriptions whose endpoints are enabled and the ordering keys of
    /// the ordered endpoints among them.
    pub fn new(
        subs: impl IntoIterator<Item = Subscription>,
        ordered: HashMap<EndpointId, OrderingKey>,
    ) -> RouteTable {
        let mut t = RouteTable {
            ordered,
            ..RouteTable::default()
        };
        for s in subs {
            let idx = t.routes.len();
            t.routes.push(Route {
                subscription_id: s.id,
                target: s.target,
                sync: s.mode == Mode::Sync,
                entity_id: s.entity_id,
                filter: s.filter,
            });
            for p in s.event_types {
                if glob::is_glob(&p) {
                    t.globs.push((p, idx));
                } else {
                    t.exact.entry(p).or_default().push(idx);
                }
            }
        }
        t
    }

    /// The targets of `event`, one per endpoint or executor (two subscriptions of the same
    /// endpoint that both match deliver once).
    pub fn route(&self, event: &NewEvent) -> Vec<Target> {
        let mut hits: Vec<usize> = self
            .exact
            .get(&event.event_type)
            .map(|v| v.to_vec())
            .unwrap_or_default();
        hits.extend(
            self.globs
                .iter()
                .filter(|(p, _)| glob::matches(p, &event.event_type))
                .map(|(_, i)| *i),
        );
        hits.sort_unstable();
        hits.dedup();
        let mut envelope = None;
        let mut out: Vec<Target> = Vec::new();
        for i in hits {
            let r = &self.routes[i];
            if let Some(want) = &r.entity_id
                && event.entity.id.as_deref() != Some(want.as_str())
            {
                continue;
            }
            if let Some(f) = &r.filter {
                let env = envelope.get_or_insert_with(|| event.envelope());
                if !f.matches(env) {
                    continue;
                }
            }
            if out.iter().any(|t| t.target == r.target) {
                continue;
            }
            let ordering_key = match &r.target {
                _ if r.sync => None,
                Destination::Endpoint(ep) => self
                    .ordered
                    .get(ep)
                    .map(|k| k.key_of(&event.entity, &event.data)),
                Destination::Executor(_) => None,
            };
            out.push(Target {
                subscription_id: r.subscription_id.clone(),
                target: r.target.clone(),
                ordering_key,
                sync: r.sync,
            });
        }
        out
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EntityRef;
    use serde_json::json;

    fn sub(
        id: &str,
        ep: &str,
        types: &[&str],
        entity: Option<&str>,
        filter: Option<serde_json::Value>,
    ) -> Subscription {
        Subscription {
            id: SubscriptionId::stored(id.into()),
            org_id: crate::ids::OrgId::stored("o".into()),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            target: Destination::Endpoint(EndpointId::stored(ep.into())),
            entity_id: entity.map(str::to_string),
            filter: filter.map(|f| SubscriptionFilter::parse(f).expect("a valid filter")),
            mode: Mode::Async,
            created_at: 0,
        }
    }

    fn ev(t: &str, entity: &str, data: serde_json::Value) -> NewEvent {
        NewEvent {
            id: crate::ids::EventId::stored("e".into()),
            event_type: t.into(),
            timestamp: 0,
            entity: EntityRef {
                kind: Some("Ticket".into()),
                id: Some(entity.into()),
            },
            data,
        }
    }

    #[test]
    fn routes_by_type_glob_entity_and_filter() {
        let t = RouteTable::new(
            vec![
                sub("s1", "ep1", &["TicketCreated"], None, None),
                sub("s2", "ep2", &["Ticket*"], Some("456"), None),
                sub(
                    "s3",
                    "ep3",
                    &["*"],
                    None,
                    Some(json!({"data.priority": {"$in": ["high"]}})),
                ),
                sub("s4", "ep1", &["Ticket*"], None, None),
                sub("s5", "ep5", &["QueueCallIn*"], None, None),
            ],
            HashMap::from([(EndpointId::stored("ep2".into()), OrderingKey::Entity)]),
        );
        let ids = |e: &NewEvent| {
            t.route(e)
                .into_iter()
                .map(|x| x.subscription_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&ev("TicketCreated", "1", json!({}))), vec!["s1"]);
        assert_eq!(
            ids(&ev("TicketCreated", "456", json!({}))),
            vec!["s1", "s2"]
        );
        assert_eq!(
            ids(&ev("TicketUpdated", "9", json!({"priority": "high"}))),
            vec!["s3", "s4"]
        );
        assert_eq!(ids(&ev("QueueCallInArrived", "9", json!({}))), vec!["s5"]);
        assert!(ids(&ev("ProfileCreated", "9", json!({}))).is_empty());
        let keys: Vec<_> = t
            .route(&ev("TicketCreated", "456", json!({})))
            .into_iter()
            .map(|x| x.ordering_key)
            .collect();
        assert_eq!(keys, vec![None, Some("Ticket/456".to_string())]);
    }

    #[test]
    fn a_sync_route_is_marked_and_never_ordered() {
        let mut sync = sub("s1", "ep1", &["TicketUpdated"], None, None);
        sync.mode = Mode::Sync;
        let t = RouteTable::new(
            vec![sync, sub("s2", "ep2", &["Ticket*"], None, None)],
            HashMap::from([
                (EndpointId::stored("ep1".into()), OrderingKey::Entity),
                (EndpointId::stored("ep2".into()), OrderingKey::Entity),
            ]),
        );
        let routed = t.route(&ev("TicketUpdated", "7", json!({})));
        let got: Vec<_> = routed
            .iter()
            .map(|x| {
                (
                    x.subscription_id.as_str(),
                    x.sync,
                    x.ordering_key.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("s1", true, None), ("s2", false, Some("Ticket/7"))]
        );
    }
}
