//! Switchyard's domain: the types and pure logic every other crate shares, with no IO.
//!
//! Nothing in here opens a socket, a file or a database: the store, the delivery engine and the
//! API build on these types and add the IO themselves.

pub mod catalog;
pub mod crypto;
pub mod egress;
pub mod enate;
pub mod endpoint;
pub mod enreach;
pub mod error;
pub mod executor;
pub mod filter;
pub mod glob;
pub mod health;
pub mod hook_presets;
pub mod hooks;
pub mod ids;
pub mod limits;
pub mod model;
pub mod ordering;
pub mod org;
pub mod retry;
pub mod routing;
pub mod schedule;
pub mod schema;
pub mod signing;
pub mod sync_hook;
pub mod template;
pub mod time;

pub use error::CoreError;
pub use model::*;
pub use schedule::Schedule;
pub use sync_hook::SyncHook;
