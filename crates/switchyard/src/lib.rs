//! The Switchyard binary as a library: settings, start-up and shutdown, and the benchmark,
//! so that integration tests can run the real application in-process.

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod listener;
pub mod local_hub;
pub mod memory;
pub mod verify;

pub use app::Application;
pub use config::{Database, Settings};
