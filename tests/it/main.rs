//! hone-build's integration tests: one test binary (`cargo test --test it`),
//! one module per suite, sharing the support code in `common`.

mod common;

/// The simulator's artifact definition, to compute what it delivers.
#[path = "../../src/bin/perry-hub-sim/artifact.rs"]
mod sim_artifact;

mod artifact;
mod faults;
mod health;
mod hostile;
mod migrations;
mod operations;
mod properties;
mod store_contract;
mod upload;
