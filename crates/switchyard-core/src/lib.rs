//! Switchyard's domain: the types and pure logic every other crate shares, with no IO.
//!
//! Nothing in here opens a socket, a file or a database: the store, the delivery engine and the
//! API build on these types and add the IO themselves.

pub mod auth;
pub mod catalog;
pub mod crypto;
pub mod delivery;
pub mod egress;
pub mod enate;
pub mod endpoint;
pub mod enreach;
pub mod error;
pub mod event;
pub mod executor;
pub mod filter;
pub mod glob;
pub mod health;
pub mod hook_presets;
pub mod hooks;
pub mod ids;
pub mod limits;
pub mod ordering;
pub mod org;
pub mod packages;
pub mod path;
pub mod retry;
pub mod routing;
pub mod schedule;
pub mod schema;
pub mod signing;
pub mod storage;
pub mod subscription;
pub mod sync_hook;
pub mod template;
pub mod time;
pub mod tool;

pub use auth::{ApiKeyInfo, Principal, Role};
pub use delivery::{
    Attempt, AttemptResult, Delivery, DeliveryStatus, DisabledEndpoint, DueDelivery, EndpointRef,
    Outcome, Seen, StoredAttempt,
};
pub use endpoint::{Endpoint, KeyedSecret, Profile, StoredEndpoint};
pub use error::CoreError;
pub use event::{
    EntityRef, Event, EventType, NewEvent, RESERVED_TYPE_PREFIX, check_publishable_type,
    valid_type_name,
};
pub use org::Org;
pub use schedule::Schedule;
pub use subscription::{Mode, StoredSubscription, Subscription, SyncOutcome, Target};
pub use sync_hook::SyncHook;
