//! The HTTP layer: the only code that knows the HTTP library (tiny_http).
//!
//! - [`server`]: the listening socket, the accept loop, the two worker
//!   lanes, overload answers, graceful drain, the access log;
//! - [`request`]: what a handler sees of a request ([`Request`]: method,
//!   path parameters, query, headers, a body reader) and what it returns
//!   ([`Reply`]); the one place an [`crate::error::ApiError`] becomes a response;
//! - [`router`]: matching a request to a [`Route`] of the table it is
//!   given (the table itself lives in `routes`), 404/405, and the request
//!   target as it may be logged.

pub mod request;
pub mod router;
pub mod server;

pub use request::{BodySource, Reply, Request};
pub use router::{Handler, Route};
