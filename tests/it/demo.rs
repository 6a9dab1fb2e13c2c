//! `make demo` (scripts/demo.sh), run on the test build's binaries: it
//! publishes for every platform, shows the builds until every platform
//! completed, and stops both services cleanly — when done
//! (`DEMO_EXIT_WHEN_DONE=1`) and on Ctrl-C — leaving no process and no
//! temporary directory behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The script, in a process group of its own (as a terminal's foreground
/// job is), with the test's binaries and its temporary files under `tmp`.
fn demo(tmp: &Path, env: &[(&str, &str)]) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = Path::new(env!("CARGO_BIN_EXE_hone-build"))
        .parent()
        .unwrap();
    assert!(bin.join("perry-hub-sim").exists());
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/demo.sh"))
        .env("BIN_DIR", bin)
        .env("TMPDIR", tmp)
        .env("DEMO_TIMEOUT", "90")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The pids the script says it started ("…, pid N").
fn started_pids(out: &str) -> Vec<u32> {
    out.lines()
        .filter(|l| l.starts_with("demo: perry-hub-sim") || l.starts_with("demo: hone-build at"))
        .filter_map(|l| {
            let rest = &l[l.find(" pid ")? + 5..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Neither service is left running (nor a zombie of it), and the
/// temporary directory is gone.
fn nothing_left(out: &str, tmp: &Path) {
    let pids = started_pids(out);
    assert_eq!(pids.len(), 2, "two services started: {out}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left behind: {out}"
        );
    }
    let left: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert!(out.contains("demo: stopped; removed"), "{out}");
}

/// Every platform's last status line says completed.
fn all_completed(out: &str) {
    assert!(out.contains("demo: every platform completed"), "{out}");
    let last_block: Vec<&str> = out
        .rsplit("status after ")
        .next()
        .unwrap()
        .lines()
        .skip(1)
        .take(5)
        .collect();
    for p in ["android", "ios", "linux", "macos", "windows"] {
        assert!(
            last_block
                .iter()
                .any(|l| l.trim_start().starts_with(p) && l.contains("completed")),
            "{p} not completed: {last_block:?}"
        );
    }
}

#[test]
fn demo_publishes_every_platform_and_exits_clean_when_done() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(
        tmp.path(),
        &[
            ("DEMO_EXIT_WHEN_DONE", "1"),
            ("DEMO_STAGE_DELAY_MS", "20"),
            ("DEMO_BUILD_DELAY_MS", "50"),
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    all_completed(&text);
    let page = text
        .lines()
        .find_map(|l| l.strip_prefix("demo: build page: "))
        .expect("the build page is printed");
    assert!(
        page.starts_with("http://") && page.ends_with("/builds/hello-hone/1.0.0"),
        "{page}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escapes when not on a terminal: {text}"
    );
    nothing_left(&text, tmp.path());
}

/// Ctrl-C (SIGINT to the script's process group, as a terminal sends it)
/// once the builds completed: both services stop, promptly, and the
/// temporary directory is removed. With the default delays the builds'
/// stages are visible on the way.
#[test]
fn demo_shows_progress_and_stops_cleanly_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child: Child = demo(tmp.path(), &[]).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                panic!("no 'press Ctrl-C' ({e}): {out}");
            }
        };
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("demo: press Ctrl-C") {
            break;
        }
    }
    all_completed(&out);
    assert!(
        [
            "extracting",
            "compiling",
            "bundling",
            "uploading",
            "signing"
        ]
        .iter()
        .any(|stage| out
            .lines()
            .any(|l| l.contains("queued") && l.contains(stage))),
        "no build stage was shown on the way: {out}"
    );
    // Still serving after completion: the printed status URL answers.
    let status_url = out
        .lines()
        .find_map(|l| l.strip_prefix("demo: live status: "))
        .unwrap()
        .to_string();
    let r = crate::common::http("GET", &status_url, &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["overall"], "completed");

    let stopped_at = Instant::now();
    let pgid = format!("-{}", child.id());
    let sent = Command::new("kill")
        .args(["-INT", "--", &pgid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        out.push_str(&l);
        out.push('\n');
    }
    assert!(
        stopped_at.elapsed() < Duration::from_secs(8),
        "stopping took {:?}: {out}",
        stopped_at.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.contains("demo: stopping hone-build and perry-hub-sim"),
        "{out}"
    );
    nothing_left(&out, tmp.path());
}
