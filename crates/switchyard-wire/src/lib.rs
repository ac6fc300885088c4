//! The JSON wire format of the Switchyard API: every request and response body, with its
//! OpenAPI schema. The server renders these; the CLI and the console read and send the same
//! types. No HTTP framework here: serde, utoipa and the domain types only.

pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod executors;
pub mod orgs;
pub mod runs;
pub mod secrets;
pub mod subscriptions;
