//! Methods and routes: 405 with `Allow` on every route (`/upload`,
//! `/artifact`, `/status`, `/health`, `/metrics`), 404 for every other target.

use super::case::{Case, case};
use crate::fixtures::tarball;

pub(super) fn cases() -> Vec<Case> {
    let tar = tarball("hostile", super::FILL);
    let mut v: Vec<Case> = Vec::new();
    // --- Methods and routes -------------------------------------------------
    let m = |method: &str, target: &str, allow: &'static str| {
        case("method", format!("{method} {target}"), method, target)
            .expect(
                405,
                "METHOD_NOT_ALLOWED",
                &format!("method {method} is not allowed"),
            )
            .allow(allow)
    };
    v.push(m("GET", "/upload", "POST"));
    v.push(m("PUT", "/upload", "POST"));
    v.push(m("PATCH", "/upload", "POST"));
    v.push(m("OPTIONS", "/upload", "POST"));
    v.push(m("DELETE", "/upload", "POST"));
    v.push(m("GET", "/artifact/1", "POST"));
    v.push(m("PUT", "/artifact/1", "POST"));
    v.push(m("DELETE", "/artifact/{JL}", "POST"));
    v.push(m("DELETE", "/status/a/b", "GET"));
    v.push(m("POST", "/status/good-plugin/1.0.0", "GET"));
    v.push(m("PUT", "/status/good-plugin/1.0.0", "GET"));
    v.push(m("POST", "/health", "GET"));
    v.push(m("DELETE", "/health", "GET"));
    v.push(m("TRACE", "/health", "GET"));
    v.push(m("POST", "/metrics", "GET"));
    v.push(m("FOO", "/health", "GET"));
    v.push(m("get", "/health", "GET"));
    v.push(
        case("method", "HEAD /upload", "HEAD", "/upload")
            .status(405)
            .allow("POST"),
    );
    v.push(
        case("method", "POST /health with a body", "POST", "/health")
            .body(tar.clone())
            .expect(405, "METHOD_NOT_ALLOWED", "method POST is not allowed")
            .allow("GET"),
    );
    let nf = |target: &str| {
        case("route", format!("GET {target}"), "GET", target).expect(404, "NOT_FOUND", "no route")
    };
    v.push(nf("/nope"));
    v.push(nf("/"));
    v.push(nf("/health/"));
    v.push(nf("/HEALTH"));
    v.push(nf("//health"));
    v.push(nf("/health;id"));
    v.push(nf("/artifact/"));
    v.push(nf("/artifact"));
    v.push(nf("/status/good-plugin"));
    v.push(nf("/status/good-plugin/1.0.0/linux"));
    v.push(nf("/../../../etc/passwd"));
    v.push(nf("/%2e%2e/%2e%2e/etc/passwd"));
    v.push(nf("/upload/../health"));
    v.push(nf("*"));
    v.push(nf("/x%0d%0aSet-Cookie:%20pwned=1"));
    v.push(
        case(
            "route",
            "absolute-form target",
            "GET",
            "http://evil.example/nope",
        )
        .expect(404, "NOT_FOUND", "no route"),
    );
    v.push(
        case("route", "raw UTF-8 in path", "GET", "/st\u{0430}tus/a/b")
            .status(400)
            .or(&[404, 0]),
    );
    v
}
