//! One file per route group. Handlers validate, call the store, packages and
//! hub client, and return a [`crate::router::Reply`] or an
//! [`crate::error::ApiError`].

pub mod artifact;
pub mod health;
pub mod metrics;
pub mod status;
pub mod upload;
