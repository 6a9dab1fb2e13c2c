//! The `hone-build` command: serve (default) and the operator's subcommands.

use hone_build::app::{App, now_secs};
use hone_build::config::{Config, FileChoice};
use hone_build::http::server;
use hone_build::platform::Platform;
use hone_build::{follow, jobs, logfollow, routes, store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const USAGE: &str = "\
hone-build — build coordinator of the Hone plugin marketplace

Usage:
  hone-build [--config FILE]                       serve (the default)
  hone-build [--config FILE] check-config [--strict]
                                                   print the effective configuration (secrets
                                                   masked), check the store and hub, and warn
                                                   about settings that break production
                                                   (--strict: warnings fail too)
  hone-build [--config FILE] migrate               create missing tables and columns
  hone-build [--config FILE] jobs [NAME [VERSION]] list build jobs
  hone-build [--config FILE] retry NAME VERSION [PLATFORM]
                                                   put failed jobs back to pending
  hone-build [--config FILE] logs NAME VERSION PLATFORM [--attempt N] [--tail N] [--follow]
                                                   print a build's log (the latest attempt
                                                   or attempt N); --follow: until it ends
  hone-build --help | --version

Configuration: build.conf in the working directory (or --config FILE),
overridden by HONE_BUILD_<KEY> environment variables. See build.conf.example.
";

struct Args {
    config: Option<PathBuf>,
    command: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut config = None;
    let mut command = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" | "help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("hone-build {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--config" | "-c" => {
                config = Some(PathBuf::from(
                    it.next().ok_or("--config needs a file path")?,
                ));
            }
            s if s.starts_with("--config=") => {
                config = Some(PathBuf::from(&s["--config=".len()..]))
            }
            s if s.starts_with('-') && command.is_empty() => {
                return Err(format!("unknown option {s}"));
            }
            _ => command.push(a),
        }
    }
    Ok(Some(Args { config, command }))
}

fn init_logging(level: &str) {
    let mut b = env_logger::Builder::new();
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    } else {
        let level = level.parse().unwrap_or(log::LevelFilter::Info);
        // Other crates only warn: they must not log request details at debug level.
        b.filter_level(log::LevelFilter::Warn)
            .filter_module("hone_build", level)
            .filter_module("access", level);
    }
    b.target(env_logger::Target::Stderr).init();
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hone-build: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let choice = match &args.config {
        Some(p) => FileChoice::Explicit(p),
        None => FileChoice::Default,
    };
    let (cfg, warnings) = match Config::load(choice, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hone-build: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log_level);
    for w in &warnings {
        log::warn!("{w}");
    }
    let cmd: Vec<&str> = args.command.iter().map(String::as_str).collect();
    let result = match cmd.as_slice() {
        [] | ["serve"] => serve(cfg),
        ["check-config"] => check_config(&cfg, false),
        ["check-config", "--strict"] => check_config(&cfg, true),
        ["migrate"] => with_store(&cfg, |s| {
            s.migrate().map_err(|e| e.to_string())?;
            println!("migrated: {} store is up to date", s.kind());
            Ok(())
        }),
        ["retry", _, _, platform] if retry_platform(platform).is_err() => {
            let e = retry_platform(platform).unwrap_err();
            eprintln!("hone-build: {e}");
            return ExitCode::from(2);
        }
        ["jobs"] => jobs(&cfg, None, None),
        ["jobs", name] => jobs(&cfg, Some(name), None),
        ["jobs", name, version] => jobs(&cfg, Some(name), Some(version)),
        ["logs", name, version, platform, options @ ..] => match logs_args(platform, options) {
            Ok(o) => logs(&cfg, name, version, platform, o),
            Err(e) => {
                eprintln!("hone-build: {e}");
                return ExitCode::from(2);
            }
        },
        ["retry", name, version] => retry(&cfg, name, version, None),
        ["retry", name, version, platform] => retry(&cfg, name, version, Some(platform)),
        _ => Err(format!(
            "unknown command '{}'\n\n{USAGE}",
            args.command.join(" ")
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hone-build: {e}");
            ExitCode::FAILURE
        }
    }
}

fn with_store(
    cfg: &Config,
    f: impl FnOnce(&dyn store::Store) -> Result<(), String>,
) -> Result<(), String> {
    let s = store::open(cfg).map_err(|e| e.to_string())?;
    f(s.as_ref())
}

/// Opens the store and creates what is missing of its schema first, so that
/// `jobs` and `retry` work on a store nothing ever ran on. When the
/// migration fails (for example a read-only database user), the command
/// goes on and reports what the store says.
fn with_migrated_store(
    cfg: &Config,
    f: impl FnOnce(&dyn store::Store) -> Result<(), String>,
) -> Result<(), String> {
    with_store(cfg, |s| {
        if let Err(e) = s.migrate() {
            log::warn!("could not create the missing tables: {e}");
        }
        f(s)
    })
}

/// The platform `retry` names: a hub name (`linux`) or a marketplace
/// platform id (`linux-x64`); the hub name, as `buildJobs.platform` keeps it.
fn retry_platform(p: &str) -> Result<&'static str, String> {
    Platform::from_name_or_id(p)
        .map(Platform::hub_name)
        .ok_or_else(|| {
            format!(
                "unknown platform '{}': expected one of {}",
                p.escape_debug(),
                Platform::names_and_ids_list()
            )
        })
}

fn serve(mut cfg: Config) -> Result<(), String> {
    // Before anything opens descriptors (the connection cap derives from it).
    server::raise_open_file_limit();
    for (key, dir) in [
        ("DATA_DIR", &cfg.data_dir),
        ("UPLOADS_DIR", &cfg.uploads_dir),
        ("PACKAGES_DIR", &cfg.packages_dir),
    ] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{key}: cannot create {}: {e}", dir.display()))
            .and_then(|()| {
                hone_build::files::check_writable(dir)
                    .map_err(|e| format!("{key} cannot be written: {e}"))
            })?;
    }
    // A write past RLIMIT_FSIZE must fail with EFBIG (answered 507), not
    // kill the process: SIGXFSZ is caught and ignored.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )
    .map_err(|e| e.to_string())?;
    let addr = std::net::SocketAddr::new(cfg.bind, cfg.port);
    let listener = server::bind(addr, std::time::Duration::from_secs(cfg.read_timeout_secs))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if cfg.public_url_is_default {
        cfg.public_url = format!("http://localhost:{}", local.port());
    }
    let store = store::open(&cfg).map_err(|e| e.to_string())?;
    for (k, v) in cfg.masked_entries() {
        log::debug!("config {k}={v}");
    }
    // What `check-config` warns about, once at start too: an operator who
    // never ran it sees in the journal why every build is about to fail.
    for w in hone_build::preflight::warnings(&cfg) {
        log::warn!("config: {w} (hone-build check-config lists these)");
    }
    let app = App::new(cfg, store);
    app.try_migrate();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal, once the first one set `stop`, exits at once with
        // 128 + the signal (registered first: it must see `stop` before the
        // first signal sets it).
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))
            .map_err(|e| e.to_string())?;
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|e| e.to_string())?;
    }
    start_drain_deadline(
        Arc::clone(&stop),
        Duration::from_secs(app.cfg.shutdown_grace_secs),
    );
    log::info!(
        "hone-build {} listening on http://{local} (store: {}, config: {})",
        env!("CARGO_PKG_VERSION"),
        app.store.kind(),
        app.cfg.source
    );
    let background = jobs::start(Arc::clone(&app), Arc::clone(&stop));
    let following = follow::start(Arc::clone(&app), Arc::clone(&stop));
    let served = server::serve(
        Arc::clone(&app),
        routes::ROUTES,
        listener,
        Arc::clone(&stop),
    );
    stop.store(true, Ordering::Release);
    let _ = background.join();
    if let Some(f) = following {
        let _ = f.join();
    }
    served.map_err(|e| e.to_string())?;
    log::info!("stopped");
    Ok(())
}

/// Bounds the drain after a shutdown signal: SHUTDOWN_GRACE_SECS after
/// `stop` is set, whatever is still running (a request, a submission to a
/// hub that does not answer, a follow) is abandoned and the process exits
/// 0. Nothing is lost: an abandoned submission keeps its job `pending`
/// under a claim that expires, and the job is submitted again then.
fn start_drain_deadline(stop: Arc<AtomicBool>, grace: Duration) {
    let spawned = std::thread::Builder::new()
        .name("drain-deadline".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(grace);
            log::warn!(
                "still busy SHUTDOWN_GRACE_SECS ({}s) after the shutdown signal: exiting, \
                 abandoning what is in flight (an unfinished hub submission is retried once its \
                 claim expires)",
                grace.as_secs()
            );
            std::process::exit(0);
        });
    if let Err(e) = spawned {
        log::warn!("cannot bound the shutdown drain: {e}");
    }
}

fn check_config(cfg: &Config, strict: bool) -> Result<(), String> {
    println!("configuration from {}:", cfg.source);
    for (k, v) in cfg.masked_entries() {
        println!("  {k:<22} {v}");
    }
    let mut ok = true;
    let store_line = match store::open(cfg).and_then(|s| s.ping().map(|()| s.kind())) {
        Ok(kind) => format!("ok ({kind})"),
        Err(e) => {
            ok = false;
            format!("FAILED: {e}")
        }
    };
    println!("store: {store_line}");
    let hub = hone_build::hub::HubClient::new(
        &cfg.perry_hub_url,
        hone_build::hub::Credentials {
            license_key: cfg.perry_hub_license_key.clone(),
            token: cfg.perry_hub_token.clone(),
        },
        std::time::Duration::from_secs(cfg.hub_timeout_secs.min(10)),
    );
    match hub.hub_status() {
        Ok(_) => println!("hub: ok ({})", cfg.perry_hub_url),
        Err(e) => {
            ok = false;
            println!("hub: FAILED: {e}");
        }
    }
    match &cfg.perry_hub_ws_url {
        None => println!("hub websocket: off (builds wait for callbacks from a patched hub)"),
        Some(url) => match hone_build::hub::ws::HubSocket::connect(
            url,
            std::time::Duration::from_secs(cfg.hub_timeout_secs.min(10)),
            std::time::Duration::from_secs(1),
        ) {
            Ok(sock) => {
                sock.close();
                println!("hub websocket: ok ({url})");
            }
            Err(e) => {
                ok = false;
                println!("hub websocket: FAILED ({url}): {e}");
            }
        },
    }
    // Settings that start fine but silently break production: stderr, so
    // that the listing above stays clean to read or diff.
    let warnings = hone_build::preflight::warnings(cfg);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    match (ok, strict && !warnings.is_empty()) {
        (true, false) => Ok(()),
        (true, true) => Err(format!(
            "{} warning(s), which --strict makes errors",
            warnings.len()
        )),
        (false, _) => Err("some checks failed".into()),
    }
}

fn jobs(cfg: &Config, name: Option<&str>, version: Option<&str>) -> Result<(), String> {
    with_migrated_store(cfg, |s| {
        let jobs = s.list_jobs(name, version).map_err(|e| e.to_string())?;
        println!(
            "{:>6}  {:<24} {:<16} {:<8} {:<10} {:>3}  {:<20} {:<22} ERROR",
            "ID", "PLUGIN", "VERSION", "PLATFORM", "STATUS", "TRY", "HUB JOB", "STAGE"
        );
        for j in &jobs {
            // The error's first line: a failed build's message goes on with
            // the compiler's last lines (`status` and the log show them).
            let error = j.error_message.as_deref().unwrap_or("");
            let more = if error.contains('\n') { " […]" } else { "" };
            println!(
                "{:>6}  {:<24} {:<16} {:<8} {:<10} {:>3}  {:<20} {:<22} {}{more}",
                j.id,
                j.plugin_name,
                j.version,
                j.platform,
                j.status,
                j.attempts,
                j.hub_job_id.as_deref().unwrap_or("-"),
                stage_column(j),
                error.lines().next().unwrap_or("")
            );
        }
        println!("{} job(s)", jobs.len());
        Ok(())
    })
}

/// What the hub last said of a build under way: `compiling 50%`,
/// `queued #3`; `-` for a job not building at the hub.
fn stage_column(j: &store::Job) -> String {
    let p = &j.progress;
    if !j.status.in_progress() || j.hub_job_id.is_none() {
        return "-".into();
    }
    let mut out = match (&p.stage, p.queue_position) {
        (Some(stage), _) => stage.clone(),
        (None, Some(pos)) => format!("queued #{pos}"),
        (None, None) => "submitted".into(),
    };
    if let Some(pct) = p.percent {
        out.push_str(&format!(" {pct}%"));
    }
    out
}

/// The options of `logs`, as `GET /logs/...` takes them.
struct LogsOptions {
    attempt: Option<u32>,
    tail: Option<usize>,
    follow: bool,
}

/// The options of `logs` (`--attempt N`, `--tail N`, `--follow`), and its
/// platform checked.
fn logs_args(platform: &str, options: &[&str]) -> Result<LogsOptions, String> {
    retry_platform(platform)?;
    let (mut attempt, mut tail) = (None, None);
    let mut follow = false;
    let mut it = options.iter();
    while let Some(o) = it.next() {
        match *o {
            "--follow" | "-f" => follow = true,
            "--attempt" => attempt = Some(*it.next().ok_or("--attempt needs a number")?),
            s if s.starts_with("--attempt=") => attempt = Some(&s["--attempt=".len()..]),
            "--tail" | "-n" => tail = Some(*it.next().ok_or("--tail needs a number")?),
            s if s.starts_with("--tail=") => tail = Some(&s["--tail=".len()..]),
            other => return Err(format!("logs: unknown option '{}'", other.escape_debug())),
        }
    }
    Ok(LogsOptions {
        attempt: logfollow::parse_attempt(attempt).map_err(|e| e.message)?,
        tail: logfollow::parse_tail(tail).map_err(|e| e.message)?,
        follow,
    })
}

/// `logs NAME VERSION PLATFORM [--attempt N] [--tail N] [--follow]`: a
/// build's log from the store, as `GET /logs/...` answers it.
fn logs(
    cfg: &Config,
    name: &str,
    version: &str,
    platform: &str,
    o: LogsOptions,
) -> Result<(), String> {
    use std::io::Write as _;
    with_migrated_store(cfg, |s| {
        let log =
            logfollow::locate(s, name, version, platform, o.attempt).map_err(|e| e.message)?;
        let mut out = std::io::stdout().lock();
        let mut put = |text: &str| out.write_all(text.as_bytes()).and_then(|()| out.flush());
        if !o.follow {
            let text = logfollow::read_all(s, &log, o.tail).map_err(|e| e.message)?;
            return put(&text).map_err(|e| e.to_string());
        }
        let never = AtomicBool::new(false);
        let mut follower = logfollow::Follower::new(s, &log).with_tail(o.tail);
        while let Some(text) = follower.next_text(&never) {
            if text.is_empty() {
                continue;
            }
            // stdout closed (`| head`): stop quietly.
            if put(&text).is_err() {
                break;
            }
        }
        Ok(())
    })
}

fn retry(cfg: &Config, name: &str, version: &str, platform: Option<&str>) -> Result<(), String> {
    let platform = platform.map(retry_platform).transpose()?;
    with_migrated_store(cfg, |s| {
        let n = s
            .retry_failed(
                name,
                version,
                platform,
                now_secs(),
                &mut hone_build::publish::new_token,
            )
            .map_err(|e| e.to_string())?;
        match platform {
            Some(p) => println!("{n} failed job(s) of {name} {version} ({p}) put back to pending"),
            None => println!("{n} failed job(s) of {name} {version} put back to pending"),
        }
        Ok(())
    })
}
