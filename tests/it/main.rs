//! hone-build's integration tests: one test binary (`cargo test --test it`),
//! one module per suite. `common` holds the support (processes, databases,
//! HTTP clients, the both-stores macro), `fixtures` the generated test data.

mod common;
mod fixtures;

mod architecture;
mod artifact;
mod browser;
mod build_logs;
mod build_page;
mod demo;
mod faults;
mod files;
mod follow;
mod health;
mod hostile;
mod logs;
mod metrics;
mod migrations;
mod openapi;
mod operations;
mod properties;
mod sim_real_hub;
mod store_contract;
mod upload;
