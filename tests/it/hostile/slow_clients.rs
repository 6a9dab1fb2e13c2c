//! Slow clients (docs/operations.md#security): trickled headers and unread slow bodies must not
//! pin workers or delay `/health`.

use super::{start_service, tail};
use crate::common::{http, try_http_timeout, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Clients that send their headers one byte per 100 ms do not block
/// `/health` for others.
#[test]
fn slow_header_clients_do_not_block_health() {
    let (svc, _sim) = start_service(&[]);
    let addr = svc.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..6)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let req = format!(
                    "POST /upload?name=slow{i}&version=1.0.0 HTTP/1.1\r\nHost: x\r\nX-Slow: {}",
                    "a".repeat(10_000)
                );
                let mut sent = 0;
                for b in req.bytes() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[b]).is_err()
                    {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = http("GET", &svc.url("/health"), &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: Vec<usize> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "slowest /health among 20 while 6 clients trickled headers: {worst:?}; bytes sent {sent:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "/health took {worst:?} while slow clients sent headers"
    );
}

/// docs/operations.md#security: slow clients "cannot pin request threads or grow threads
/// without bound". A client sending its headers one byte per 100 ms never
/// trips the per-read timeout; it must still be cut off (408/400/431 or a
/// close) after a bounded time.
#[test]
fn slow_header_client_is_cut_off() {
    let (svc, _sim) = start_service(&[("READ_TIMEOUT_SECS", "2")]);
    let mut s = TcpStream::connect(svc.addr()).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let start = Instant::now();
    let limit = Duration::from_secs(12);
    let mut cut = None;
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if s.write_all(b"a").is_err() {
            cut = Some(start.elapsed());
            break;
        }
        match s.read(&mut buf) {
            Ok(_) => {
                cut = Some(start.elapsed());
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                cut = Some(start.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cut.is_some(),
        "a client trickling header bytes was still connected after {limit:?} (READ_TIMEOUT_SECS=2)"
    );
}

/// docs/operations.md#security: a request answered before its body was read (401 here: no
/// credentials needed) must not leave a body-lane worker draining a slow
/// client's body. Two slow unauthenticated clients per worker must not
/// make `/artifact` and `/upload` answer 503 for everyone else.
#[test]
fn unread_slow_bodies_do_not_pin_the_body_workers() {
    let (svc, _sim) = start_service(&[("WORKERS", "2"), ("READ_TIMEOUT_SECS", "2")]);
    let addr = svc.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let _ = s.write_all(
                    b"POST /upload?name=x&version=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n",
                );
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if s.write_all(b"A").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // Well past READ_TIMEOUT_SECS: a bounded drain would have ended.
    std::thread::sleep(Duration::from_secs(3));
    let mut seen: Vec<String> = Vec::new();
    let ok = wait_until(Duration::from_secs(8), || {
        let r = try_http_timeout(
            "POST",
            &svc.url("/artifact/424242?token=x"),
            &[("Content-Type", "text/plain")],
            Some(b"aGVsbG8="),
            Duration::from_secs(3),
        );
        match r {
            Ok(r) => {
                seen.push(r.status.to_string());
                r.status == 404
            }
            Err(e) => {
                seen.push(format!("no answer within 3 s ({e})"));
                false
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in slow {
        let _ = h.join();
    }
    assert!(
        ok,
        "4 unauthenticated clients trickling bodies (answered 401 at once) keep the body lane \
         pinned: /artifact answered {seen:?} (503: lane full; no answer: the rejecter thread \
         itself is draining a slow body)\nlog:\n{}",
        tail(&svc.log(), 3000)
    );
}

/// Item 5: a body must keep a minimum average rate once its grace period
/// has passed (BODY_MIN_RATE, BODY_RATE_GRACE_SECS), or it is cut off with
/// 408 and the connection closed: uploads sending one byte every 100 ms no
/// longer hold every body worker (the socket timeout alone never fired).
/// Meanwhile `/health` answers, and once they are cut off a normal upload
/// is served.
#[test]
fn slow_bodies_are_cut_off_with_408() {
    use super::{FILL, SECRET, status_of};
    let (svc, _sim) = start_service(&[
        ("WORKERS", "2"),
        ("BODY_MIN_RATE", "1000"),
        ("BODY_RATE_GRACE_SECS", "1"),
    ]);
    let addr = svc.addr();
    let started = Instant::now();
    let slow: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let head = format!(
                    "POST /upload?name=slow-body{i}&version=1.0.0&platforms=linux HTTP/1.1\r\n\
                     Host: x\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: 20000\r\n\r\n"
                );
                s.write_all(head.as_bytes()).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(15) {
                    if s.write_all(b"A").is_err() {
                        break;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(_) => {}
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (String::from_utf8_lossy(&got).into_owned(), t.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(http("GET", &svc.url("/health"), &[], None).status, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let answers: Vec<(String, Duration)> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "slow bodies: {:?}; /health slowest {worst:?}",
        answers
            .iter()
            .map(|(a, t)| (a.lines().next().unwrap_or("").to_string(), *t))
            .collect::<Vec<_>>()
    );
    for (a, took) in &answers {
        assert!(
            a.starts_with("HTTP/1.1 408"),
            "a slow body must be cut off with 408 (after {took:?}): {a}"
        );
        assert!(
            *took < Duration::from_secs(5),
            "cut off only after {took:?}"
        );
    }
    assert!(worst < Duration::from_millis(100), "/health took {worst:?}");
    // The workers are free again: a normal upload is served at once.
    let tar = crate::fixtures::tarball("after-slow", FILL);
    let r = try_http_timeout(
        "POST",
        &svc.url("/upload?name=after-slow&version=1.0.0&platforms=linux"),
        &[("Authorization", &format!("Bearer {SECRET}"))],
        Some(&tar),
        Duration::from_secs(5),
    )
    .expect("upload after the slow bodies");
    assert_eq!(r.status, 200, "{}", r.text());
    for i in 0..2 {
        assert_eq!(status_of(&svc, &format!("slow-body{i}")), 404);
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}
