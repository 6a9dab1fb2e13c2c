//! Hostile requests to `GET /status/:name/:version`: traversal and bad
//! characters in the path segments.

use super::case::{Case, case};

pub(super) fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    // --- /status ---------------------------------------------------------
    let st = |label: &str, target: &str, msg: &str| {
        case("status", label.to_string(), "GET", target).expect(400, "BAD_REQUEST", msg)
    };
    v.push(st(
        "status ..%2F name",
        "/status/..%2F..%2Fetc/passwd",
        "name may contain only",
    ));
    v.push(st(
        "status %2e%2e name",
        "/status/%2e%2e/%2e%2e",
        "name must not start",
    ));
    v.push(st(
        "status ..%2F version",
        "/status/good-plugin/..%2F{P}",
        "version may contain only",
    ));
    v.push(st(
        "status ; version",
        "/status/good-plugin/1.0.0;id",
        "found ';'",
    ));
    v.push(st("status $(id) name", "/status/$(id)/1.0.0", "found '$'"));
    v.push(st(
        "status NUL",
        "/status/good-plugin%00/1.0.0",
        "found '\\0'",
    ));
    v.push(st(
        "status overlong UTF-8",
        "/status/good-plugin/%C0%AE",
        "path segment is not valid UTF-8",
    ));
    v.push(st(
        "status 129-char name",
        &format!("/status/{}/1.0.0", "n".repeat(129)),
        "at most 128",
    ));
    v.push(st(
        "status fullwidth dot",
        "/status/good-plugin/1%EF%BC%8E0%EF%BC%8E0",
        "version may contain only",
    ));
    v.push(st(
        "status '+' is not a space",
        "/status/good+plugin/1.0.0",
        "found '+'",
    ));
    v.push(
        case(
            "status",
            "status raw ../ segments",
            "GET",
            "/status/../../health",
        )
        .expect(404, "NOT_FOUND", "no route")
        .or(&[400]),
    );
    v.push(
        case(
            "status",
            "status unknown version",
            "GET",
            "/status/good-plugin/9.9.9",
        )
        .expect(404, "NOT_FOUND", "no builds"),
    );
    v
}
