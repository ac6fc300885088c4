//! The JSON wire format of the Switchyard API: every request and response body, with its
//! OpenAPI schema. The server renders these; the CLI and the console read and send the same
//! types. No HTTP framework here: serde, utoipa and the domain types only.

pub mod catalogs;
pub mod compat;
pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod executors;
pub mod orgs;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod storage;
pub mod subscriptions;
pub mod sync_hooks;
pub mod tools;

use serde::{Deserialize, Deserializer};

/// Distinguishes an absent field (keep) from an explicit `null` (clear) in a PATCH.
pub(crate) fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Every list answer: the items, and where the next page starts (`next_cursor`, passed back as
/// `cursor`; absent on the last page). Lists of configuration (endpoints, subscriptions,
/// executors, hooks, schedules, secrets, keys, event types, organizations) come whole, so their
/// `next_cursor` is always absent; the shape is the same as the paged lists' (events,
/// deliveries), so one client reads them all.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct List<T: utoipa::ToSchema> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: utoipa::ToSchema> List<T> {
    /// A whole list: every item, no next page.
    pub fn whole(data: Vec<T>) -> Self {
        List {
            data,
            next_cursor: None,
        }
    }
}
