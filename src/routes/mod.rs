//! The routing table and one thin file per route group. A handler parses
//! and authorizes its request, calls the module that does the work
//! (`publish`, `intake`, the store) and answers with a
//! [`crate::http::Reply`] or an [`crate::error::ApiError`].

use crate::http::Route;

pub mod artifact;
pub mod builds;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod status;
pub mod upload;

/// Every route the service answers (docs/api.md).
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        pattern: "/health",
        name: "health",
        handler: health::get,
    },
    Route {
        method: "GET",
        pattern: "/metrics",
        name: "metrics",
        handler: metrics::get,
    },
    Route {
        method: "GET",
        pattern: "/openapi.json",
        name: "openapi",
        handler: openapi::get,
    },
    Route {
        method: "POST",
        pattern: "/upload",
        name: "upload",
        handler: upload::post,
    },
    Route {
        method: "POST",
        pattern: "/artifact/:callbackId",
        name: "artifact",
        handler: artifact::post,
    },
    Route {
        method: "GET",
        pattern: "/status/:name/:version",
        name: "status",
        handler: status::get,
    },
    Route {
        method: "GET",
        pattern: "/builds/:name/:version",
        name: "build_page",
        handler: builds::get,
    },
    Route {
        method: "GET",
        pattern: "/logs/:name/:version/:platform",
        name: "logs",
        handler: logs::get,
    },
];
