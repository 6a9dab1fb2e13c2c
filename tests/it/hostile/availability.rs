//! Availability (issue #11, items 1-3): an unauthenticated client must not
//! take the service down. Each attack comes from `127.0.0.2` (all of
//! 127.0.0.0/8 is loopback on Linux), the fresh client measuring `/health`
//! from `127.0.0.1`; `/health` must answer within 100 ms during the attack
//! and the service recover without a restart.

use super::{FILL, SECRET, start_service, tail, threads_of};
use crate::common::{Service, read_until, response_complete, wait_until};
use crate::fixtures::tarball;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection to `addr` from the attacker's address, 127.0.0.2.
fn attacker_connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    attacker_connect_with(addr, None)
}

/// [`attacker_connect`], with a small receive buffer when given (so that
/// what the client does not read fills the server's socket quickly).
fn attacker_connect_with(addr: SocketAddr, rcvbuf: Option<usize>) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

/// `GET /health` on a fresh connection from 127.0.0.1: status and time.
fn health_once(addr: SocketAddr) -> (u16, Duration) {
    let t = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, t.elapsed());
    };
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (got, _) = read_until(
        &mut s,
        Duration::from_secs(5),
        Vec::new(),
        response_complete,
    );
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, took)
}

/// `n` fresh `/health` requests 50 ms apart: all must be 200; returns the
/// slowest and the median.
fn health_during(addr: SocketAddr, n: usize, what: &str) -> (Duration, Duration) {
    let mut times = Vec::new();
    for i in 0..n {
        let (status, took) = health_once(addr);
        assert_eq!(
            status, 200,
            "/health #{i} during {what}: status {status} after {took:?}"
        );
        times.push(took);
        std::thread::sleep(Duration::from_millis(50));
    }
    times.sort();
    (times[n - 1], times[n / 2])
}

fn assert_recovers(svc: &Service) {
    assert!(
        wait_until(Duration::from_secs(10), || health_once(svc.addr()).0 == 200),
        "/health answers again after the attack\n{}",
        tail(&svc.log(), 3000)
    );
}

/// Item 1: six connections each pipelining 20,000 `GET /metrics` and never
/// reading. The responses are written by each connection's own thread, one
/// request at a time, so neither the workers nor the accept loop (whose 503
/// used to wait behind the blocked responses) ever wait on these sockets;
/// each attacker connection is cut off once its responses stop being read
/// for the write timeout.
#[test]
fn clients_that_never_read_their_responses_do_not_stall_the_service() {
    let (svc, _sim) = start_service(&[("READ_TIMEOUT_SECS", "2")]);
    let addr = svc.addr();
    let one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let burst: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 20_000)
        .collect();
    let attack = Instant::now();
    let attackers: Vec<_> = (0..6)
        .map(|_| {
            let burst = burst.clone();
            let s = attacker_connect_with(addr, Some(4096)).expect("attacker connects");
            let mut w = s.try_clone().unwrap();
            w.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(&burst);
            });
            (s, writer)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let (worst, median) =
        health_during(addr, 20, "6 clients not reading 20,000 pipelined /metrics");
    // An upload (body lane) is served meanwhile.
    let tar = tarball("unread-attack", FILL);
    let t = Instant::now();
    let r = crate::common::http(
        "POST",
        &svc.url("/upload?name=unread-attack&version=1.0.0&platforms=linux"),
        &[("Authorization", &format!("Bearer {SECRET}"))],
        Some(&tar),
    );
    let upload_took = t.elapsed();
    assert_eq!(r.status, 200, "upload during the attack: {}", r.text());
    // Unread long enough for the server's send buffers (up to 4 MiB each)
    // to fill and a write to stall for the write timeout
    // (READ_TIMEOUT_SECS = 2)...
    std::thread::sleep(Duration::from_secs(10).saturating_sub(attack.elapsed()));
    // ... each attacker is cut off: reading now finds the end of the connection
    // long before 20,000 responses.
    let mut answered = Vec::new();
    for (mut s, _) in attackers {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let mut closed = false;
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let n = String::from_utf8_lossy(&got).matches("HTTP/1.1 ").count();
        assert!(
            closed,
            "an attacker connection that stopped reading was never closed ({n} responses read)"
        );
        assert!(
            n < 20_000,
            "all {n} pipelined responses were produced for a client that did not read"
        );
        answered.push(n);
    }
    println!(
        "/health during 6x20000 unread pipelined /metrics: slowest {worst:?}, median {median:?}; \
         upload {upload_took:?}; responses before the cut-off {answered:?}"
    );
    assert!(
        worst < Duration::from_millis(100),
        "/health took {worst:?} during the attack"
    );
    assert_recovers(&svc);
}

/// Item 2: under an open-file limit of 256 (soft = hard), 400 idle
/// connections no longer exhaust the descriptors (the connection cap is
/// derived from the limit) nor kill the listener (`try_clone().unwrap()`
/// panicked in the accept thread): the connections past the cap are answered
/// 503, `/health` keeps answering, and the service recovers.
#[test]
fn running_out_of_descriptors_neither_kills_the_listener_nor_blocks_health() {
    let sim = crate::common::Sim::start(&["--build-delay-ms", "600000"]);
    let svc = Service::builder()
        .wrap(&["prlimit", "--nofile=256:256"])
        .set("UPLOAD_SECRET", SECRET)
        .set("WORKERS", "4")
        .set("LOG_LEVEL", "info")
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("PERRY_HUB_URL", sim.url())
        .start();
    let addr = svc.addr();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", svc.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 256 ")),
        "not running under the limit:\n{limits}"
    );
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..400 {
        match attacker_connect(addr) {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    // Those past the cap are told to come back.
    let mut got_503 = 0;
    for s in held.iter_mut().rev().take(50) {
        let (got, _) = read_until(s, Duration::from_millis(300), Vec::new(), response_complete);
        let text = String::from_utf8_lossy(&got);
        if text.starts_with("HTTP/1.1 503") && text.contains("Retry-After") {
            got_503 += 1;
        }
    }
    let (worst, median) = health_during(addr, 20, "400 connections under a 256-descriptor limit");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", svc.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "under --nofile=256 with 400 attacker connections ({refused} refused at connect): \
         {got_503}/50 of the last got 503; /health slowest {worst:?}, median {median:?}; {fds} fds open"
    );
    assert!(
        got_503 >= 40,
        "only {got_503} of the last 50 connections were answered 503"
    );
    assert!(
        fds < 256,
        "{fds} descriptors open: the cap did not keep the service under its limit"
    );
    assert!(worst < Duration::from_millis(100), "/health took {worst:?}");
    drop(held);
    assert_recovers(&svc);
    assert!(
        !svc.log().contains("panicked"),
        "a thread panicked:\n{}",
        tail(&svc.log(), 3000)
    );
}

/// Item 2: the soft open-file limit is raised to the hard one at start.
#[test]
fn soft_open_file_limit_is_raised_to_the_hard_limit() {
    let svc = Service::builder()
        .wrap(&["prlimit", "--nofile=256:4096"])
        .start();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", svc.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{line}");
}

/// Item 3: one client address holding keep-alive connections (one request
/// each, then idle) gets at most its share of MAX_CONNECTIONS; the others
/// are answered 503 with Retry-After (a rate-limited log line counts them,
/// not one WARN per refusal); idle connections are closed after
/// KEEPALIVE_IDLE_SECS; `/health` answers throughout; threads stay bounded.
#[test]
fn one_client_holding_keepalive_connections_cannot_lock_others_out() {
    let (svc, _sim) = start_service(&[
        ("MAX_CONNECTIONS", "40"),
        ("MAX_CONNECTIONS_PER_CLIENT_PERCENT", "50"),
        ("KEEPALIVE_IDLE_SECS", "2"),
    ]);
    let addr = svc.addr();
    // Its fixed threads (lanes, loops) are up once it has answered.
    assert_eq!(health_once(addr).0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let before = threads_of(&svc);
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..60 {
        let mut s = attacker_connect(addr).expect("connect");
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let (got, _) = read_until(
            &mut s,
            Duration::from_secs(2),
            Vec::new(),
            response_complete,
        );
        answers.push(String::from_utf8_lossy(&got).into_owned());
        held.push(s);
    }
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    let unavailable = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503") && a.contains("Retry-After: 1"))
        .count();
    let during = threads_of(&svc);
    let (worst, median) =
        health_during(addr, 20, "one client holding its share of keep-alive slots");
    println!(
        "60 keep-alive connections from one address, cap 40 (20 per address): {ok} served, \
         {unavailable} answered 503; threads {before} -> {during}; /health slowest {worst:?}, median {median:?}"
    );
    assert_eq!(
        ok, 20,
        "connections served for one address (its share of 40)"
    );
    assert_eq!(
        unavailable, 40,
        "connections past the share answered 503 with Retry-After"
    );
    assert!(
        during <= before + 20 + 4,
        "threads grew from {before} to {during}"
    );
    assert!(worst < Duration::from_millis(100), "/health took {worst:?}");
    // Idle keep-alive connections are closed after KEEPALIVE_IDLE_SECS.
    let t = Instant::now();
    let mut closed = 0;
    for s in held.iter_mut().take(20) {
        let (_, ended) = read_until(s, Duration::from_secs(5), Vec::new(), |_| false);
        if ended {
            closed += 1;
        }
    }
    println!(
        "idle keep-alive connections closed: {closed}/20 within {:?}",
        t.elapsed()
    );
    assert_eq!(closed, 20, "idle keep-alive connections closed");
    // Refusals are logged in rate-limited lines that count them.
    let log = svc.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused") && l.contains("connection(s)"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() <= 3,
        "refusals must be logged in a few counting lines, got {}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    drop(held);
    assert_recovers(&svc);
}
