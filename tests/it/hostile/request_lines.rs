//! Garbage and `HTTP/2.0` request lines, and request lines that try to
//! forge access-log lines.

use super::{READ_TIMEOUT_SECS, fds_of, start_service, statuses, threads_of};
use crate::common::{Wire, exchange, http, wait_until};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// 200 connections in a row sending garbage request lines: each is
/// answered 400 (or closed) promptly, and the service stays healthy with
/// no thread left behind.
#[test]
fn garbage_request_lines_leave_the_service_healthy() {
    let (mut svc, _sim) = start_service(&[]);
    // Worker threads start after the "listening" line: settle first.
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let base_threads = threads_of(&svc);
    let fixed: Vec<Vec<u8>> = vec![
        b"\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /health\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1 extra\r\n\r\n".to_vec(),
        b"GET /health HTTP/9.9\r\n\r\n".to_vec(),
        b"GET /health FTP/1.0\r\n\r\n".to_vec(),
        b"GET  /health  HTTP/1.1\r\n\r\n".to_vec(),
        b"\x00\x00\x00\x00\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), // TLS ClientHello
        b"SSH-2.0-OpenSSH_9.0\r\n\r\n".to_vec(),
        b"G\xc3\x89T /health HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1 x\r\n\r\n", "a".repeat(20_000)).into_bytes(),
        b"POST /upload HTTP/1.1\r\nContent-Length: 5\r\nContent-Length\r\n\r\n".to_vec(),
        b"\n\n\n\n".to_vec(),
        b"GET /health HTTP/1.1\nHost: x\n\n".to_vec(),
    ];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut hung = Vec::new();
    let start = Instant::now();
    for i in 0..200 {
        let line: Vec<u8> = if i % 2 == 0 {
            fixed[(i / 2) % fixed.len()].clone()
        } else {
            // Random bytes, no space-separated three-part shape guaranteed.
            let n = 1 + (next() % 300) as usize;
            let mut l: Vec<u8> = (0..n).map(|_| (next() % 256) as u8).collect();
            l.extend_from_slice(b"\r\n\r\n");
            l
        };
        // The client half-closes after its garbage, so that lines waiting
        // for a CRLF end at once instead of at the read timeout.
        let a = exchange(
            svc.addr(),
            &line,
            Wire::HalfClose,
            Duration::from_secs(READ_TIMEOUT_SECS + 2),
            Duration::ZERO,
        );
        if a.status == 0 && !a.closed {
            hung.push(format!(
                "#{i}: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(60)])
            ));
        }
        *answers.entry(a.status.to_string()).or_default() += 1;
    }
    println!(
        "200 garbage request lines in {:?}; answers by status (0 = closed): {answers:?}",
        start.elapsed()
    );
    assert!(
        hung.is_empty(),
        "connections neither answered nor closed: {hung:?}"
    );
    assert!(svc.is_running());
    let h = http("GET", &svc.url("/health"), &[], None);
    assert_eq!(h.status, 200, "{}", h.text());
    assert!(
        wait_until(Duration::from_secs(10), || threads_of(&svc)
            <= base_threads + 8),
        "threads {} after, {base_threads} before",
        threads_of(&svc)
    );
}

/// HTTP/2.0 request lines (a client trying h2c prior knowledge sends
/// `PRI * HTTP/2.0`): answered 505 or closed, promptly, without leaving a
/// thread or socket behind.
#[test]
fn http2_request_lines_are_answered_and_leak_nothing() {
    let (svc, _sim) = start_service(&[]);
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (t0, f0) = (threads_of(&svc), fds_of(&svc));
    let mut hung = 0;
    for i in 0..20 {
        let line: &[u8] = if i % 2 == 0 {
            b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n"
        } else {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        };
        let a = exchange(
            svc.addr(),
            line,
            Wire::Normal,
            Duration::from_millis(300),
            Duration::ZERO,
        );
        if a.status == 0 && !a.closed {
            hung += 1;
        }
    }
    // Let the server's read timeout pass: whatever is stuck stays stuck.
    std::thread::sleep(Duration::from_secs(READ_TIMEOUT_SECS + 2));
    let (t1, f1) = (threads_of(&svc), fds_of(&svc));
    println!("threads {t0} -> {t1}, fds {f0} -> {f1}, {hung}/20 not answered within 300 ms");
    assert!(
        t1 <= t0 + 5 && f1 <= f0 + 5,
        "20 HTTP/2.0 request lines (connections closed by the client) left threads {t0} -> {t1} \
         and file descriptors {f0} -> {f1}"
    );
}

/// docs/operations.md: one access line per request. Control characters a client puts
/// in the request line (bare LF, bare CR, ESC) must not reach the log raw:
/// they split the line or rewrite the terminal.
#[test]
fn access_log_lines_cannot_be_forged() {
    let (svc, _sim) = start_service(&[]);
    let requests: [&[u8]; 3] = [
        b"GET /x\nFORGED-LF_[access]_POST_/upload_200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /x\rFORGED-CR_POST_/upload_200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"G\x1b[2JFORGED-ESC /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    let mut answers = Vec::new();
    for r in requests {
        answers.push(
            exchange(
                svc.addr(),
                r,
                Wire::Normal,
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .status,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = svc.log();
    let bad: Vec<String> = log
        .split('\n')
        .filter(|l| l.contains("FORGED"))
        .filter(|l| !l.starts_with('[') || l.contains('\r') || l.contains('\x1b'))
        .map(|l| format!("{l:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "answers {answers:?}; log lines carrying raw control characters from the request:\n{}",
        bad.join("\n")
    );
}

/// Item 15: request heads that RFC 9112 says to refuse: obs-fold lines
/// (they became real Content-Length/Transfer-Encoding headers), a bare LF
/// or a NUL inside a header value: 400 and the connection closed.
#[test]
fn obs_fold_bare_lf_and_nul_in_headers_are_refused() {
    let (svc, _sim) = start_service(&[]);
    let cases: [(&str, &[u8]); 4] = [
        (
            "obs-fold Content-Length",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 5\r\n\r\nhello",
        ),
        (
            "obs-fold with a tab",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
        ),
        (
            "bare LF in a value",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "NUL in a value",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
        ),
    ];
    for (what, bytes) in cases {
        let a = exchange(
            svc.addr(),
            bytes,
            Wire::Normal,
            Duration::from_secs(3),
            Duration::from_millis(500),
        );
        assert_eq!(statuses(&a.raw), vec![400], "{what}:\n{}", a.raw);
        assert!(a.closed, "{what}: the connection is closed");
    }
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
}

/// Item 15: absolute-form targets are served like origin-form ones; an
/// HTTP/1.1 request needs exactly one Host (400 otherwise); HTTP/0.9 is
/// answered 505 in HTTP/1.1 and closed (docs/api.md).
#[test]
fn absolute_form_host_rules_and_http09() {
    let (svc, _sim) = start_service(&[]);
    let ask = |bytes: &[u8]| {
        exchange(
            svc.addr(),
            bytes,
            Wire::Normal,
            Duration::from_secs(3),
            Duration::from_millis(300),
        )
    };
    let a = ask(b"GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(a.status, 200, "absolute form:\n{}", a.raw);
    assert!(a.body.contains("ok"), "{}", a.body);
    let a = ask(b"GET HTTP://x:8447/metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        a.status, 200,
        "absolute form with a port and query:\n{}",
        a.raw
    );

    let a = ask(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(a.status, 400, "no Host:\n{}", a.raw);
    assert!(a.body.contains("Host"), "{}", a.body);
    assert!(a.closed);
    let a = ask(b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(a.status, 400, "two Hosts:\n{}", a.raw);
    assert!(a.closed);
    let a = ask(b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(a.status, 200, "HTTP/1.0 needs no Host:\n{}", a.raw);

    let a = ask(b"GET /health HTTP/0.9\r\n\r\n");
    assert!(a.raw.starts_with("HTTP/1.1 505"), "HTTP/0.9:\n{}", a.raw);
    assert!(a.closed, "HTTP/0.9: closed");
    let a = ask(b"GET /health\r\n\r\n");
    assert!(
        a.raw.starts_with("HTTP/1.1 400"),
        "a request line without a version:\n{}",
        a.raw
    );
    assert!(a.closed);
    assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
}

/// Item 15: the authentication scheme is case-insensitive (RFC 9110 11.1).
#[test]
fn auth_scheme_is_case_insensitive() {
    use super::{FILL, SECRET, status_of};
    let (svc, _sim) = start_service(&[]);
    for (i, scheme) in ["BEARER", "bearer", "BeArEr"].iter().enumerate() {
        let name = format!("scheme-case{i}");
        let r = http(
            "POST",
            &svc.url(&format!(
                "/upload?name={name}&version=1.0.0&platforms=linux"
            )),
            &[("Authorization", &format!("{scheme} {SECRET}"))],
            Some(&crate::fixtures::tarball(&name, FILL)),
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
        assert_eq!(status_of(&svc, &name), 200);
    }
    let r = http(
        "POST",
        &svc.url("/upload?name=scheme-basic&version=1.0.0&platforms=linux"),
        &[("Authorization", &format!("Basic {SECRET}"))],
        Some(&crate::fixtures::tarball("scheme-basic", FILL)),
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

/// Issue #11 item 24: an access line names the client's address (the
/// reverse proxy's, behind one), so that abuse can be traced to its source.
#[test]
fn access_lines_name_the_client_address() {
    let (svc, _sim) = start_service(&[]);
    let r = http("GET", &svc.url("/health?probe=client-addr-7f3"), &[], None);
    assert_eq!(r.status, 200);
    let r = http("GET", &svc.url("/no-such-route-7f3"), &[], None);
    assert_eq!(r.status, 404);
    std::thread::sleep(Duration::from_millis(300));
    let log = svc.log();
    for probe in ["/health?probe=client-addr-7f3", "/no-such-route-7f3"] {
        let line = log
            .lines()
            .find(|l| l.contains("access") && l.contains(probe))
            .unwrap_or_else(|| panic!("no access line for {probe}:\n{log}"));
        assert!(
            line.contains("] 127.0.0.1 GET "),
            "the access line names the client first: {line}"
        );
    }
}
