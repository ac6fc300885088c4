//! Subscriptions: what events go where (types and patterns, one entity, a filter), the target
//! they go to and whether the publish waits for it.

use crate::egress::EgressPolicy;
use crate::endpoint::{Change, EndpointChanges};
use crate::error::CoreError;
use crate::event::EntityRef;
use crate::ids::{EndpointId, OrgId, SubscriptionId};
use crate::{Endpoint, filter::SubscriptionFilter};
use serde_json::Value;

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
///
/// What it matches and where it goes are checked when it is made ([`Subscription::define`]) and
/// cannot be changed behind that check: they are read through methods. The store, which only
/// hands back what was checked when it was saved, rebuilds one with [`Subscription::stored`].
pub struct Subscription {
    pub id: crate::ids::SubscriptionId,
    pub org_id: crate::ids::OrgId,
    pub(crate) event_types: Vec<String>,
    pub(crate) target: Target,
    pub(crate) entity_id: Option<String>,
    /// The filter, as given and parsed.
    pub(crate) filter: Option<crate::filter::SubscriptionFilter>,
    /// Whether the publish waits for this subscription's target.
    pub(crate) mode: Mode,
    pub created_at: i64,
}

/// A subscription as the store keeps it, already checked when it was saved.
#[derive(Debug, Clone)]
pub struct StoredSubscription {
    pub id: crate::ids::SubscriptionId,
    pub org_id: crate::ids::OrgId,
    pub event_types: Vec<String>,
    pub target: Target,
    pub entity_id: Option<String>,
    pub filter: Option<crate::filter::SubscriptionFilter>,
    pub mode: Mode,
    pub created_at: i64,
}

impl Subscription {
    /// A subscription read back from the store (checked when it was saved).
    pub fn stored(s: StoredSubscription) -> Subscription {
        Subscription {
            id: s.id,
            org_id: s.org_id,
            event_types: s.event_types,
            target: s.target,
            entity_id: s.entity_id,
            filter: s.filter,
            mode: s.mode,
            created_at: s.created_at,
        }
    }
    /// The event type names and patterns it matches.
    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The one entity whose events it matches, if it matches one.
    pub fn entity_id(&self) -> Option<&str> {
        self.entity_id.as_deref()
    }
    pub fn filter(&self) -> Option<&crate::filter::SubscriptionFilter> {
        self.filter.as_ref()
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
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

/// A subscription as a caller defines it, before [`Subscription::define`] checks it: every
/// front (the API, a platform's own shape, a configuration file) fills one in.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionDefinition {
    /// Event type names or patterns (`ticket.*`).
    pub event_types: Vec<String>,
    /// A filter on the envelope (`null` or absent: none).
    pub filter: Option<Value>,
    /// `async` (the default) or `sync`.
    pub mode: Option<String>,
    /// One entity's events only: a string or a number.
    pub entity_id: Option<Value>,
    /// `true` says "every entity" outright; `false` needs an `entity_id`.
    pub all_entities: Option<bool>,
    /// The target: exactly one of an existing endpoint, a URL (an endpoint made for this
    /// subscription) and an executor.
    pub endpoint_id: Option<String>,
    pub url: Option<String>,
    pub executor: Option<String>,
    /// How the endpoint of an inline `url` delivers (only with `url`).
    pub delivery: Option<EndpointChanges>,
    /// A description for the endpoint of an inline `url`.
    pub url_description: Option<String>,
}

impl Subscription {
    /// Checks a definition and makes the subscription of `org` it defines, with, for an inline
    /// `url`, the endpoint it owns (to be stored with it, in one write). Whether an existing
    /// endpoint or executor it names exists is the store's to check.
    pub fn define(
        org: &OrgId,
        def: SubscriptionDefinition,
        now: i64,
        policy: &EgressPolicy,
    ) -> Result<(Subscription, Option<Endpoint>), CoreError> {
        let filter = Subscription::check_matching(&def.event_types, def.filter)?;
        let mode = match def.mode.as_deref() {
            None => Mode::Async,
            Some(m) => Mode::parse(m).ok_or_else(|| {
                CoreError::invalid(format!("`mode` must be `async` or `sync`, not `{m}`"))
            })?,
        };
        let entity_id = match &def.entity_id {
            Some(v) => EntityRef::id_from(v, "entity_id")?,
            None => None,
        };
        match (def.all_entities, &entity_id) {
            (Some(true), Some(_)) => {
                return Err(CoreError::invalid(
                    "give `entity_id` or `all_entities: true`, not both",
                ));
            }
            (Some(false), None) => {
                return Err(CoreError::invalid(
                    "`all_entities: false` needs an `entity_id`",
                ));
            }
            _ => {}
        }
        let id = SubscriptionId::generate();
        let inline = def.delivery.is_some();
        let (target, owned) = match (def.endpoint_id, def.url, def.executor) {
            (None, None, Some(_)) if inline => {
                return Err(CoreError::invalid(
                    "delivery settings do not apply to an executor subscription",
                ));
            }
            (None, None, Some(name)) => (Target::Executor(name), None),
            (Some(_), None, None) if inline => {
                return Err(CoreError::invalid(
                    "delivery settings belong to the endpoint; with `endpoint_id` change them there",
                ));
            }
            (Some(ep), None, None) => {
                let ep_id = EndpointId::parse(&ep)
                    .ok_or_else(|| CoreError::invalid(format!("endpoint `{ep}` does not exist")))?;
                (Target::Endpoint(ep_id), None)
            }
            (None, Some(url), None) => {
                let mut ep = Endpoint::new(org, now);
                ep.owner_subscription = Some(id.clone());
                let description = def
                    .url_description
                    .unwrap_or_else(|| format!("inline URL of subscription {id}"));
                let settings = EndpointChanges {
                    url: Some(url),
                    description: Some(description),
                    ..def.delivery.unwrap_or_default()
                };
                ep.apply(settings, Change::Create, policy)?;
                (Target::Endpoint(ep.id.clone()), Some(ep))
            }
            _ => {
                return Err(CoreError::invalid(
                    "give exactly one of `endpoint_id`, `url` and `executor`",
                ));
            }
        };
        let sub = Subscription {
            id,
            org_id: org.clone(),
            event_types: def.event_types,
            target,
            entity_id,
            filter,
            mode,
            created_at: now,
        };
        Ok((sub, owned))
    }

    /// Checks what a subscription matches: 1–100 event type names or patterns, and a filter
    /// that parses (`null` is none). Returns the parsed filter. The target's existence is the
    /// store's to check.
    pub fn check_matching(
        event_types: &[String],
        filter: Option<Value>,
    ) -> Result<Option<SubscriptionFilter>, CoreError> {
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
            .map(SubscriptionFilter::parse)
            .transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn define(def: SubscriptionDefinition) -> Result<(Subscription, Option<Endpoint>), String> {
        let org = OrgId::stored("o".into());
        Subscription::define(&org, def, 1_000, &EgressPolicy::default()).map_err(|e| e.to_string())
    }

    fn types() -> Vec<String> {
        vec!["ticket.*".into()]
    }

    #[test]
    fn exactly_one_target_and_its_settings_where_they_belong() {
        let refused = |def: SubscriptionDefinition, says: &str| {
            let e = define(def).expect_err("refused");
            assert!(e.contains(says), "{e}");
        };
        refused(
            SubscriptionDefinition {
                event_types: types(),
                ..Default::default()
            },
            "exactly one of",
        );
        refused(
            SubscriptionDefinition {
                event_types: types(),
                url: Some("https://a.example".into()),
                executor: Some("x".into()),
                ..Default::default()
            },
            "exactly one of",
        );
        refused(
            SubscriptionDefinition {
                event_types: types(),
                executor: Some("x".into()),
                delivery: Some(EndpointChanges::default()),
                ..Default::default()
            },
            "do not apply to an executor",
        );
        refused(
            SubscriptionDefinition {
                event_types: types(),
                endpoint_id: Some(EndpointId::generate().to_string()),
                delivery: Some(EndpointChanges::default()),
                ..Default::default()
            },
            "belong to the endpoint",
        );
        refused(
            SubscriptionDefinition {
                event_types: types(),
                endpoint_id: Some("not-an-id".into()),
                ..Default::default()
            },
            "does not exist",
        );
        refused(
            SubscriptionDefinition {
                event_types: vec![],
                executor: Some("x".into()),
                ..Default::default()
            },
            "1–100",
        );
    }

    #[test]
    fn entity_and_mode_rules() {
        let base = || SubscriptionDefinition {
            event_types: types(),
            executor: Some("x".into()),
            ..Default::default()
        };
        let e = define(SubscriptionDefinition {
            entity_id: Some(json!("t-1")),
            all_entities: Some(true),
            ..base()
        })
        .expect_err("both");
        assert!(e.contains("not both"), "{e}");
        let e = define(SubscriptionDefinition {
            all_entities: Some(false),
            ..base()
        })
        .expect_err("neither");
        assert!(e.contains("needs an `entity_id`"), "{e}");
        let e = define(SubscriptionDefinition {
            mode: Some("later".into()),
            ..base()
        })
        .expect_err("mode");
        assert!(e.contains("`mode`"), "{e}");
        let (sub, owned) = define(SubscriptionDefinition {
            entity_id: Some(json!(42)),
            mode: Some("sync".into()),
            ..base()
        })
        .expect("valid");
        assert_eq!(sub.entity_id.as_deref(), Some("42"));
        assert_eq!(sub.mode, Mode::Sync);
        assert_eq!(sub.target, Target::Executor("x".into()));
        assert!(owned.is_none());
    }

    #[test]
    fn an_inline_url_makes_the_endpoint_the_subscription_owns() {
        let (sub, owned) = define(SubscriptionDefinition {
            event_types: types(),
            url: Some("https://a.example/hook".into()),
            delivery: Some(EndpointChanges {
                timeout_ms: Some(5_000),
                ..Default::default()
            }),
            ..Default::default()
        })
        .expect("valid");
        let ep = owned.expect("an endpoint");
        assert_eq!(sub.target, Target::Endpoint(ep.id.clone()));
        assert_eq!(ep.owner_subscription.as_ref(), Some(&sub.id));
        assert_eq!(
            (ep.url(), ep.timeout_ms()),
            ("https://a.example/hook", 5_000)
        );
        let e = define(SubscriptionDefinition {
            event_types: types(),
            url: Some("ftp://a.example".into()),
            ..Default::default()
        })
        .expect_err("scheme");
        assert!(e.contains("scheme"), "{e}");
    }
}
