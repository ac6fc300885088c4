//! The one door every published event passes, whichever front it came through (the API, a
//! platform's own shape, a schedule): its type (`NewEvent::check`) and its data against its
//! type's schema. Compiled schemas are cached (bounded, briefly) and dropped when their type
//! changes on any node.

use crate::{Hub, HubError};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::NewEvent;
use switchyard_core::ids::OrgId;
use switchyard_core::schema::Schema;
use switchyard_store::StoreError;

/// How long a compiled schema is used before the store is asked again (a change through any
/// node drops it at once; the time bounds a lost notice).
const SCHEMA_TTL: Duration = Duration::from_secs(2);
/// Compiled schemas (or the knowledge that a type has none) kept at most.
const SCHEMAS_KEPT: u64 = 10_000;

/// Compiled event-type schemas by (organization, type).
pub(crate) type SchemaCache = moka::future::Cache<(OrgId, String), Option<Arc<Schema>>>;

pub(crate) fn schema_cache() -> SchemaCache {
    moka::future::Cache::builder()
        .max_capacity(SCHEMAS_KEPT)
        .time_to_live(SCHEMA_TTL)
        .build()
}

/// Why an event of a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRefusal {
    /// A type it may not use (not a valid name, or one of the hub's own).
    Invalid,
    /// Data its type's schema refuses.
    SchemaViolation,
    /// Its type's schema cannot be compiled (saved before a rule got stricter).
    SchemaInvalid,
}

impl Hub {
    /// Checks each of `events` of `org` as every published event is checked: its type, then its
    /// data against the type's schema. The first refused one is named by its position.
    pub(crate) async fn check_events(
        &self,
        org: &OrgId,
        events: Vec<NewEvent>,
    ) -> Result<Vec<NewEvent>, HubError> {
        let mut checked = Vec::with_capacity(events.len());
        for (index, mut event) in events.into_iter().enumerate() {
            let refused = |reason, message: String| HubError::EventRefused {
                index,
                reason,
                message,
            };
            event
                .check()
                .map_err(|e| refused(EventRefusal::Invalid, e.to_string()))?;
            let Some(schema) = self.schema(org, &event.event_type, index).await? else {
                checked.push(event);
                continue;
            };
            let data = std::mem::take(&mut event.data);
            // Off the async workers: a large document never stalls other requests.
            let (verdict, data) =
                tokio::task::spawn_blocking(move || (schema.validate(&data), data))
                    .await
                    .map_err(|e| HubError::Internal(format!("schema validation failed: {e}")))?;
            event.data = data;
            if let Err(v) = verdict {
                return Err(refused(
                    EventRefusal::SchemaViolation,
                    format!(
                        "data does not match the schema of `{}` at {}: {}",
                        event.event_type, v.path, v.message
                    ),
                ));
            }
            checked.push(event);
        }
        Ok(checked)
    }

    /// The compiled schema of `org`'s type `event_type`, if it has one (a schema that does
    /// not compile refuses event `index` of the publish).
    async fn schema(
        &self,
        org: &OrgId,
        event_type: &str,
        index: usize,
    ) -> Result<Option<Arc<Schema>>, HubError> {
        let key = (org.clone(), event_type.to_string());
        if let Some(cached) = self.inner.schemas.get(&key).await {
            return Ok(cached);
        }
        let schema = match self.inner.store.get_event_type(org, event_type).await {
            Ok(t) => match t.schema {
                Some(doc) => Some(Arc::new(Schema::compile(&doc).map_err(|e| {
                    HubError::EventRefused {
                        index,
                        reason: EventRefusal::SchemaInvalid,
                        message: format!(
                            "the schema of `{event_type}` cannot be used ({e}); replace it"
                        ),
                    }
                })?)),
                None => None,
            },
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        self.inner.schemas.insert(key, schema.clone()).await;
        Ok(schema)
    }

    /// Drops `org`'s compiled schema of `event_type` on this node.
    pub(crate) async fn forget_schema(&self, org: &OrgId, event_type: &str) {
        self.inner
            .schemas
            .invalidate(&(org.clone(), event_type.to_string()))
            .await;
    }
}
