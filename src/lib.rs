//! hone-build: the build coordinator of the Hone plugin marketplace.
//! See ARCHITECTURE.md for the map of this crate.

pub mod app;
pub mod body;
pub mod buildlog;
pub mod cache;
pub mod codec;
pub mod config;
pub mod error;
pub mod files;
pub mod follow;
pub mod http;
pub mod hub;
pub mod intake;
pub mod jobs;
pub mod metrics;
pub mod platform;
pub mod publish;
pub mod routes;
pub mod store;
pub mod unpack;
pub mod validate;
