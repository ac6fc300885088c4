//! End-to-end tests: the real application on real sockets, real SQLite files, real receivers.

mod helpers;

mod cli;
mod cluster;
mod console;
mod delivery;
mod durability;
mod egress;
mod executors;
mod fairness;
mod input;
mod install_network;
mod isolation;
mod keys;
mod mcp;
mod operations;
mod packages;
mod packages_composer;
mod platforms;
mod policy;
mod readme;
mod retention;
mod sandbox;
mod schedules;
mod self_api;
mod signatures;
mod sync_hooks;
mod sync_subscriptions;
mod tenant_safety;
mod walkthrough;
mod warm;
