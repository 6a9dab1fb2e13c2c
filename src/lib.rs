//! hone-build: the build coordinator of the Hone plugin marketplace.
//! See ARCHITECTURE.md for the map of this crate.

pub mod app;
pub mod body;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod packages;
pub mod platform;
pub mod router;
pub mod routes;
pub mod server;
pub mod store;
pub mod unpack;
pub mod validate;
