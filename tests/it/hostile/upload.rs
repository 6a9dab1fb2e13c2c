//! Hostile requests to `POST /upload`: traversal, shell metacharacters and
//! bad encodings in every query field, duplicate parameters, the upload
//! secret, bodies, and framing (lengths, chunked, early ends).

use super::case::{Case, case};
use super::{FILL, MAX_BODY, SECRET, b64};
use crate::common::Wire;
use crate::fixtures::{chunked, tarball};

pub(super) fn cases() -> Vec<Case> {
    let tar = tarball("hostile", FILL);
    let mut v: Vec<Case> = Vec::new();
    let name_bad = |label: &str, q: &str, msg: &str| {
        case("name", format!("upload name {label}"), "POST", &up_v(q))
            .auth()
            .body(tar.clone())
            .expect(400, "BAD_REQUEST", msg)
    };

    // --- Traversal, shell metacharacters, bad encodings in `name` ----------
    v.push(name_bad("../", "../../{P}", "name may contain only"));
    v.push(name_bad("..%2F", "..%2F..%2Ftmp%2F{P}", "found '/'"));
    v.push(name_bad("%2e%2e%2f", "%2e%2e%2f%2e%2e%2f{P}", "found '/'"));
    v.push(name_bad(";", "a;touch%20{P}", "found ';'"));
    v.push(name_bad("|", "a|touch%20{P}", "found '|'"));
    v.push(name_bad("$(id)", "$(touch%20/tmp/{P})", "found '$'"));
    v.push(name_bad("backticks", "`touch%20/tmp/{P}`", "found '`'"));
    v.push(name_bad("&&", "a%26%26touch%20{P}", "found '&'"));
    v.push(name_bad("space", "a%20{P}", "found ' '"));
    v.push(name_bad("plus=space", "a+{P}", "found ' '"));
    v.push(name_bad("NUL", "a%00{P}", "found '\\0'"));
    v.push(name_bad(
        "overlong %C0%AE",
        "%C0%AE%C0%AE%2F{P}",
        "'name' is not valid UTF-8",
    ));
    v.push(name_bad(
        "overlong %E0%80%AE",
        "%E0%80%AE%E0%80%AE",
        "'name' is not valid UTF-8",
    ));
    v.push(name_bad("lone %FF", "a%FF", "'name' is not valid UTF-8"));
    v.push(name_bad("129 chars", &"n".repeat(129), "at most 128"));
    v.push(name_bad(
        "fullwidth ．．／",
        "%EF%BC%8E%EF%BC%8E%EF%BC%8F{P}",
        "name may contain only",
    ));
    v.push(name_bad(
        "zero-width space",
        "good-plugin%E2%80%8B",
        "name may contain only",
    ));
    v.push(name_bad(
        "cyrillic о lookalike",
        "g%D0%BEod-plugin",
        "name may contain only",
    ));
    v.push(name_bad(".hidden", ".{P}", "name must not start"));
    v.push(name_bad("empty", "", "name is required"));

    // --- `version` ---------------------------------------------------------
    let version_bad = |label: &str, q: &str, msg: &str| {
        case(
            "version",
            format!("upload version {label}"),
            "POST",
            &up_n(q),
        )
        .auth()
        .body(tar.clone())
        .expect(400, "BAD_REQUEST", msg)
    };
    v.push(version_bad(
        "../",
        "../../../{P}",
        "version may contain only",
    ));
    v.push(version_bad(
        "..%2F",
        "1.0.0%2F..%2F..%2F{P}",
        "version may contain only",
    ));
    v.push(version_bad(";", "1.0.0;touch%20{P}", "found ';'"));
    v.push(version_bad("$(id)", "$(id)", "found '$'"));
    v.push(version_bad(
        "overlong %C0%AE",
        "%C0%AE%C0%AE",
        "'version' is not valid UTF-8",
    ));
    v.push(version_bad("a..b", "1..0", "must not contain '..'"));
    v.push(version_bad("129 chars", &"1".repeat(129), "at most 128"));
    v.push(version_bad(
        "fullwidth digit",
        "%EF%BC%91.0.0",
        "version may contain only",
    ));

    // --- `entry`, `platforms`, `displayName`, `description` ----------------
    let field_bad = |group: &'static str, label: &str, q: &str, msg: &str| {
        case(group, format!("upload {label}"), "POST", &up_e(q))
            .auth()
            .body(tar.clone())
            .expect(400, "BAD_REQUEST", msg)
    };
    v.push(field_bad(
        "entry",
        "entry ../",
        "entry=../../{P}/x.ts",
        "entry must not contain a '..' segment",
    ));
    v.push(field_bad(
        "entry",
        "entry absolute",
        "entry=/etc/passwd",
        "entry must be a relative path",
    ));
    v.push(field_bad(
        "entry",
        "entry ..%2F",
        "entry=src%2F..%2F..%2F{P}",
        "entry must not contain a '..' segment",
    ));
    v.push(field_bad(
        "entry",
        "entry $(id)",
        "entry=src/$(touch%20{P}).ts",
        "entry may contain only",
    ));
    v.push(field_bad(
        "entry",
        "entry backslash",
        "entry=..%5C..%5C{P}",
        "entry may contain only",
    ));
    v.push(field_bad(
        "entry",
        "entry NUL",
        "entry=src/index.ts%00.sh",
        "entry may contain only",
    ));
    v.push(field_bad(
        "entry",
        "entry 257 chars",
        &format!("entry={}", "e".repeat(257)),
        "at most 256",
    ));
    v.push(field_bad(
        "entry",
        "entry overlong %C0%AE",
        "entry=%C0%AE%C0%AE/x",
        "'entry' is not valid UTF-8",
    ));
    v.push(field_bad(
        "platform",
        "platform ;",
        "platforms=linux;touch%20{P}",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform ../",
        "platforms=../../{P}",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform NUL",
        "platforms=linux%00",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform fullwidth",
        "platforms=%EF%BD%8Cinux",
        "unknown platform",
    ));
    v.push(field_bad(
        "platform",
        "platform only commas",
        "platforms=,,",
        "no platform given",
    ));
    v.push(field_bad(
        "platform",
        "platform overlong UTF-8",
        "platforms=%C0%AE",
        "'platforms' is not valid UTF-8",
    ));
    v.push(field_bad(
        "text",
        "displayName control char",
        "displayName=a%07b",
        "displayName must not contain control",
    ));
    v.push(field_bad(
        "text",
        "displayName 257 chars",
        &format!("displayName={}", "d".repeat(257)),
        "displayName must be at most 256",
    ));
    v.push(field_bad(
        "text",
        "description 4097 chars",
        &format!("description={}", "d".repeat(4097)),
        "description must be at most 4096",
    ));
    v.push(field_bad(
        "text",
        "description invalid UTF-8",
        "description=%FF%FE",
        "'description' is not valid UTF-8",
    ));

    // --- Duplicate and conflicting query parameters -------------------------
    let dup = |label: &str, target: &str, msg: &str| {
        case("dup-query", label.to_string(), "POST", target)
            .auth()
            .body(tar.clone())
            .expect(400, "BAD_REQUEST", msg)
    };
    v.push(dup(
        "name twice",
        "/upload?name=a&name=b&version=1.0.0&platforms=linux",
        "'name' is given more than once",
    ));
    v.push(dup(
        "encoded key duplicate",
        "/upload?name=a&na%6De=a&version=1.0.0&platforms=linux",
        "'name' is given more than once",
    ));
    v.push(dup(
        "token twice (right, wrong)",
        "/upload?name=a&version=1.0.0&platforms=linux&token={S}&token=x",
        "'token' is given more than once",
    ));
    v.push(dup(
        "token + encoded token",
        "/upload?name=a&version=1.0.0&platforms=linux&token=x&%74oken={S}",
        "'token' is given more than once",
    ));
    v.push(dup(
        "version twice, conflicting",
        "/upload?name=a&version=1.0.0&version=..%2F..&platforms=linux",
        "'version' is given more than once",
    ));
    v.push(dup(
        "platforms twice",
        "/upload?name=a&version=1.0.0&platforms=linux&platforms=macos",
        "'platforms' is given more than once",
    ));
    v.push(dup(
        "key with invalid UTF-8",
        "/upload?name=a&version=1.0.0&%C0%AE=1",
        "query parameter name is not valid UTF-8",
    ));

    // --- Upload authentication -----------------------------------------------
    let ok_target = "/upload?name=auth-plugin&version=1.0.0&platforms=linux";
    let auth_case = |label: &str, target: &str| {
        case("auth", label.to_string(), "POST", target).body(tar.clone())
    };
    v.push(auth_case("upload without secret", ok_target).expect(
        401,
        "UNAUTHORIZED",
        "missing upload secret",
    ));
    v.push(
        auth_case("upload wrong Bearer", ok_target)
            .h("Authorization", "Bearer wrong")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload secret + suffix", ok_target)
            .h("Authorization", "Bearer {S}x")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload secret prefix only", ok_target)
            .h(
                "Authorization",
                &format!("Bearer {}", &SECRET[..SECRET.len() - 1]),
            )
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        // A NUL inside a header value is refused by the HTTP layer (RFC
        // 9112 5.5; issue #11 item 15): 400 and the connection closed,
        // before any route (it used to reach the route: 401).
        auth_case("upload Bearer secret + NUL", ok_target)
            .h("Authorization", "Bearer {S}\0")
            .status(400)
            .must_close(),
    );
    v.push(
        auth_case("upload wrong ?token=", &format!("{ok_target}&token=wrong")).expect(
            401,
            "UNAUTHORIZED",
            "invalid upload secret",
        ),
    );
    v.push(
        auth_case("upload empty ?token=", &format!("{ok_target}&token=")).expect(
            401,
            "UNAUTHORIZED",
            "invalid upload secret",
        ),
    );
    v.push(
        auth_case("upload Basic with secret", ok_target)
            .h(
                "Authorization",
                &format!("Basic {}", b64(format!("admin:{SECRET}").as_bytes())),
            )
            .expect(401, "UNAUTHORIZED", "missing upload secret"),
    );
    v.push(
        auth_case("upload 'Bearer' empty value", ok_target)
            .h("Authorization", "Bearer ")
            .expect(401, "UNAUTHORIZED", "upload secret"),
    );
    v.push(
        auth_case("upload secret w/o scheme", ok_target)
            .h("Authorization", "{S}")
            .expect(401, "UNAUTHORIZED", "missing upload secret"),
    );
    v.push(
        auth_case("upload callback token as secret", ok_target)
            .h("Authorization", "Bearer {TL}")
            .expect(401, "UNAUTHORIZED", "invalid upload secret"),
    );
    v.push(
        auth_case("upload 64 KiB Bearer", ok_target)
            .h(
                "Authorization",
                &format!("Bearer {}", "x".repeat(64 * 1024)),
            )
            .expect(401, "UNAUTHORIZED", "invalid upload secret")
            .or(&[400, 431, 0]),
    );

    // --- Bodies ------------------------------------------------------------
    let good_up = "/upload?name=body-plugin&version=1.0.0&platforms=linux";
    let body_case = |label: &str| case("body", label.to_string(), "POST", good_up).auth();
    v.push(
        body_case("upload invalid base64")
            .body("!!!! not base64 ****")
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        body_case("upload base64 with NUL")
            .body("H4sI\0AAAA")
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        body_case("upload base64 of non-gzip")
            .body(b64(b"#!/bin/sh\ntouch /tmp/pwned\n"))
            .expect(400, "BAD_REQUEST", "not a gzip file"),
    );
    v.push(
        body_case("upload raw non-gzip binary")
            .body(vec![0x7f, b'E', b'L', b'F', 0, 1, 2])
            .expect(400, "BAD_REQUEST", "not valid base64"),
    );
    v.push(
        body_case("upload 1 byte 0x1f")
            .body(vec![0x1f])
            .expect(400, "BAD_REQUEST", "base64"),
    );
    v.push(
        body_case("upload empty body (CL 0)")
            .body(Vec::new())
            .expect(400, "BAD_REQUEST", "body is empty"),
    );
    // Neither Content-Length nor chunked coding: 411 (issue #11 item 6).
    v.push(body_case("upload no body at all").expect(
        411,
        "LENGTH_REQUIRED",
        "needs Content-Length or Transfer-Encoding: chunked",
    ));
    v.push(
        body_case("upload empty body")
            .body("")
            .expect(400, "BAD_REQUEST", "body is empty"),
    );
    v.push(
        body_case("upload whitespace-only base64")
            .body(" \r\n\t \r\n")
            .expect(400, "BAD_REQUEST", "empty after base64"),
    );
    v.push(
        case(
            "body",
            "re-upload while building",
            "POST",
            "/upload?name=good-plugin&version=1.0.0&platforms=linux,macos",
        )
        .auth()
        .body(tar.clone())
        .expect(409, "BUILD_IN_PROGRESS", "still being built"),
    );

    // --- Framing: lengths, chunked, early end --------------------------------
    v.push(
        case(
            "framing",
            "upload CL above MAX_BODY_BYTES",
            "POST",
            &fu("frame1-plugin"),
        )
        .auth()
        .h("Content-Length", "1000000")
        .framed(b"H4sI".to_vec())
        .expect(413, "PAYLOAD_TOO_LARGE", "MAX_BODY_BYTES"),
    );
    v.push(
        case(
            "framing",
            "upload CL above max, no secret",
            "POST",
            &fu("frame2-plugin"),
        )
        .h("Content-Length", "1000000")
        .framed(b"H4sI".to_vec())
        .expect(401, "UNAUTHORIZED", "missing upload secret"),
    );
    v.push(
        case("framing", "upload CL > u64", "POST", &fu("frame3-plugin"))
            .auth()
            .h("Content-Length", "99999999999999999999999")
            .status(400)
            .or(&[413, 0])
            .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL non-numeric",
            "POST",
            &fu("frame4-plugin"),
        )
        .auth()
        .h("Content-Length", "abc")
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL negative",
            "POST",
            &fu("frame5-plugin"),
        )
        .auth()
        .h("Content-Length", "-1")
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL twice, differing",
            "POST",
            &fu("frame6-plugin"),
        )
        .auth()
        .h("Content-Length", "4")
        .h("Content-Length", "9")
        .framed(b"H4sI".to_vec())
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload CL + TE chunked",
            "POST",
            &fu("frame7-plugin"),
        )
        .auth()
        .h("Content-Length", "5")
        .h("Transfer-Encoding", "chunked")
        .framed(b"0\r\n\r\n".to_vec())
        .status(400)
        .or(&[0])
        .must_close(),
    );
    v.push(
        case(
            "framing",
            "upload chunked past the limit",
            "POST",
            &fu("frame8-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "chunked")
        .framed(chunked(&vec![b'A'; MAX_BODY as usize + 40_000], 8192))
        .expect(413, "PAYLOAD_TOO_LARGE", "MAX_BODY_BYTES"),
    );
    v.push(
        case(
            "framing",
            "upload chunked, bad chunk size",
            "POST",
            &fu("frame9-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "chunked")
        .framed(b"zz\r\nH4sI\r\n0\r\n\r\n".to_vec())
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "upload TE gzip (not chunked)",
            "POST",
            &fu("frame10-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "gzip")
        .framed(b"H4sIAAAA".to_vec())
        .wire(Wire::HalfClose)
        .status(501)
        .or(&[400, 0]),
    );
    v.push(
        case(
            "framing",
            "upload chunked, ends early (FIN)",
            "POST",
            &fu("frame11-plugin"),
        )
        .auth()
        .h("Transfer-Encoding", "chunked")
        .framed([b"1000\r\n".to_vec(), tarball("chunk-fin", FILL)].concat())
        .wire(Wire::HalfClose)
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "upload CL <= 1024, body ends early (FIN)",
            "POST",
            &fu("frame12-plugin"),
        )
        .auth()
        .h("Content-Length", "1000")
        .framed(tarball("short", FILL)[..20].to_vec())
        .wire(Wire::HalfClose)
        .status(400)
        .or(&[0]),
    );
    v.push(
        case(
            "framing",
            "upload body stalls (read timeout)",
            "POST",
            &fu("frame13-plugin"),
        )
        .auth()
        .h("Content-Length", "4096")
        .framed(vec![b'A'; 100])
        .wire(Wire::Stall)
        .expect(408, "REQUEST_TIMEOUT", "not received in time")
        .or(&[400, 0]),
    );
    v.push(
        case(
            "framing",
            "body longer than declared: garbage after",
            "POST",
            "/upload?name=a;b&version=1.0.0",
        )
        .auth()
        .h("Content-Length", "4")
        .framed(b"H4sI\x00\x01garbage garbage\r\n\r\n".to_vec())
        .keep_alive()
        .expect(400, "BAD_REQUEST", "found ';'"),
    );
    v.push(
        case(
            "framing",
            "body longer than declared: unauthenticated upload after",
            "POST",
            "/upload?name=a;b&version=1.0.0",
        )
        .auth()
        .h("Content-Length", "4")
        .framed(
            [
                b"H4sI".to_vec(),
                format!(
                    "POST /upload?name=extra-{{P}}&version=1.0.0&platforms=linux HTTP/1.1\r\n\
                     Host: x\r\nContent-Length: {}\r\n\r\n",
                    tar.len()
                )
                .into_bytes(),
                tar.clone(),
            ]
            .concat(),
        )
        .keep_alive()
        .expect(400, "BAD_REQUEST", "found ';'"),
    );
    // Bodies that end early: what arrived must not be taken for the whole.
    v.push(
        case(
            "framing",
            "upload CL 4096, 2000 bytes then FIN",
            "POST",
            "/upload?name=trunc-upload&version=1.0.0&platforms=linux",
        )
        .auth()
        .h("Content-Length", "4096")
        .framed({
            let mut t = tarball("trunc", FILL);
            t.resize(2000, 7);
            t
        })
        .wire(Wire::HalfClose)
        .expect(400, "BAD_REQUEST", "")
        .or(&[0]),
    );
    v
}

/// Shorthands for upload targets.
fn up(q: &str) -> String {
    format!("/upload?{q}")
}
fn fu(name: &str) -> String {
    up(&format!("name={name}&version=1.0.0&platforms=linux"))
}
fn up_v(name_q: &str) -> String {
    up(&format!("name={name_q}&version=1.0.0&platforms=linux"))
}
fn up_n(version_q: &str) -> String {
    up(&format!(
        "name=x-plugin&version={version_q}&platforms=linux"
    ))
}
fn up_e(extra: &str) -> String {
    if extra.starts_with("platforms=") {
        up(&format!("name=x-plugin&version=1.0.0&{extra}"))
    } else {
        up(&format!(
            "name=x-plugin&version=1.0.0&platforms=linux&{extra}"
        ))
    }
}
