//! The HTTP layer itself, on `/health` (and `/upload`): huge and malformed
//! headers, request targets, `Expect`, the `HTTP/2.0` request line.

use super::READ_TIMEOUT_SECS;
use super::case::{Case, case};
use crate::fixtures::tarball;
use std::time::Duration;

pub(super) fn cases() -> Vec<Case> {
    let tar = tarball("hostile", super::FILL);
    let mut v: Vec<Case> = Vec::new();
    let good_up = "/upload?name=body-plugin&version=1.0.0&platforms=linux";
    // --- Headers -----------------------------------------------------------
    v.push(
        case("headers", "64 KiB header value", "GET", "/health")
            .h("X-Big", &"v".repeat(64 * 1024))
            .status(200)
            .or(&[400, 431, 0]),
    );
    v.push({
        let mut c = case("headers", "2000 headers", "GET", "/health")
            .status(200)
            .or(&[400, 431, 0]);
        for i in 0..2000 {
            c = c.h(&format!("X-H{i}"), "x");
        }
        c
    });
    v.push(
        case("headers", "4 MiB header value", "GET", "/health")
            .h("X-Huge", &"h".repeat(4 << 20))
            .status(200)
            .or(&[400, 431, 0]),
    );
    v.push(
        case(
            "headers",
            "64 KiB request target",
            "GET",
            &format!("/{}", "p".repeat(64 * 1024)),
        )
        .expect(404, "NOT_FOUND", "no route")
        .or(&[400, 414, 431, 0]),
    );
    v.push(
        case("headers", "header without colon", "GET", "/health")
            .verbatim(b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec())
            .status(400)
            .or(&[0]),
    );
    v.push(
        case("headers", "space before colon", "POST", good_up)
            .verbatim(
                b"POST /upload?name=a&version=1 HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nH4sI"
                    .to_vec(),
            )
            .status(400)
            .or(&[0]),
    );
    v.push(
        case("headers", "non-ASCII header bytes", "GET", "/health")
            .verbatim(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\xc0\xae\r\n\r\n".to_vec())
            .status(400)
            .or(&[0]),
    );
    v.push(
        case("headers", "obsolete line folding", "GET", "/health")
            .verbatim(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n".to_vec())
            .status(400)
            .or(&[200, 0]),
    );
    v.push(
        case("headers", "unknown Expect", "POST", good_up)
            .auth()
            .h("Expect", "200-ok")
            .body(tar.clone())
            .status(417)
            .or(&[400, 0]),
    );
    v.push(
        case("headers", "HTTP/2.0 request line", "GET", "/health")
            .verbatim(b"GET /health HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec())
            .status(505)
            .or(&[400, 0])
            .timeout(Duration::from_secs(READ_TIMEOUT_SECS + 2)),
    );
    v
}
