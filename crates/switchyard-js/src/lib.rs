//! The JavaScript worker: a process that runs executors in QuickJS, one at a time, each in a
//! fresh runtime with a memory limit and an interrupt deadline.
//!
//! The engine alone cannot bound wall-clock time (its interrupt handler is polled only every
//! ~10,000 operations and a loop of expensive built-ins outruns it), out-of-memory is catchable
//! in JavaScript, and some out-of-memory states abort the process. So the hub talks to this
//! worker over stdin/stdout and kills it at the deadline or after an out-of-memory; this crate
//! holds only the in-process half and stays out of other crates' rebuilds.
//!
//! [`protocol`] is what the two halves say to each other, typed once for both; the hub uses it
//! without the engine (`default-features = false`).

pub mod protocol;
#[cfg(feature = "engine")]
mod worker;
#[cfg(feature = "engine")]
pub use worker::worker_main;
