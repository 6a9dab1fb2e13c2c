//! Configuration: `build.conf` (`KEY=VALUE`), `HONE_BUILD_<KEY>` environment
//! overrides, defaults (docs/configuration.md). Every key is defined once, in
//! the `config_keys!` table below: the [`Config`] struct, the defaults, the
//! parsing and validation, the `check-config` listing
//! ([`Config::masked_entries`]) and `build.conf.example` ([`example_file`])
//! all come from it.
//!
//! Secrets are wrapped in [`Secret`], whose `Debug`/`Display` print a mask, so
//! the configuration can be printed or logged without leaking them. A key is
//! secret exactly when its type is `Secret`.

use crate::platform::{self, Platform};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The file read when no `--config` is given (optional: defaults apply when absent).
pub const DEFAULT_FILE: &str = "build.conf";
/// Prefix of environment overrides: `HONE_BUILD_DB_PASS` overrides `DB_PASS`.
pub const ENV_PREFIX: &str = "HONE_BUILD_";

/// A value that must never be printed: `{:?}` and `{}` show a mask.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself. Every call site is a place where it may leave memory.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "(empty)"
        } else {
            "********"
        })
    }
}

/// A start-up error: names the key and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One configuration key, as the table defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// `DB_HOST`; the environment override is [`ENV_PREFIX`] + name.
    pub name: &'static str,
    /// The raw default, parsed like any other value (`""`: empty).
    pub default: &'static str,
    /// Masked by `check-config`, never echoed in an error message.
    pub secret: bool,
    /// The help, as the table's doc comment wrote it (lines joined, spacing
    /// kept): [`KeySpec::help_text`] is the tidy form.
    pub help: &'static str,
    /// The group it is listed under in `build.conf.example`.
    pub section: &'static str,
}

impl KeySpec {
    /// The help on one line, single-spaced.
    pub fn help_text(&self) -> String {
        self.help.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// The type of a configuration value: how `check-config` shows it, and
/// whether it is a secret.
trait ConfigValue {
    const SECRET: bool = false;
    fn show(&self) -> String;
    /// The secret itself, for [`Config::secrets`]; `None` for other types.
    fn exposed(&self) -> Option<&str> {
        None
    }
}

impl ConfigValue for String {
    fn show(&self) -> String {
        self.clone()
    }
}

/// `PERRY_HUB_WS_URL`: `None` is `off`.
impl ConfigValue for Option<String> {
    fn show(&self) -> String {
        self.clone().unwrap_or_else(|| "off".into())
    }
}

impl ConfigValue for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl ConfigValue for IpAddr {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for Vec<Platform> {
    fn show(&self) -> String {
        self.iter()
            .map(|p| p.hub_name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl ConfigValue for Secret {
    const SECRET: bool = true;
    fn show(&self) -> String {
        self.to_string()
    }
    fn exposed(&self) -> Option<&str> {
        Some(self.expose())
    }
}

macro_rules! number_values {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
number_values!(u16, u32, u64, usize);

/// Turns one key's raw value into its field: `parse f` takes a
/// `fn(&str) -> Result<T, String>` (the error says why, and is reported as
/// "invalid value for KEY in FILE:LINE: 'value': why"); `resolve f` takes a
/// `fn(&Lookup, &str) -> Result<T, ConfigError>` for a key whose value
/// depends on other keys.
macro_rules! config_value {
    ($lookup:ident, $key:expr, parse $f:expr) => {
        $lookup.parse($key, $f)?
    };
    ($lookup:ident, $key:expr, resolve $f:expr) => {{
        let (value, _) = $lookup.get($key);
        $f($lookup, &value)?
    }};
}

/// The key table. Each entry:
///
/// ```text
/// /// One line of help (becomes the field's doc and the example's comment).
/// KEY: field: Type = "raw default", parse function | resolve function;
/// ```
///
/// grouped in `"Section" { … }` blocks (the example file's groups). The
/// entries' order is the order of parsing (a `resolve` function may read the
/// keys above it), of `check-config` and of the example file. `extra`
/// fields of [`Config`] are not keys; each is computed by its function.
macro_rules! config_keys {
    (
        $(
            $section:literal {
                $(
                    $(#[doc = $doc:literal])+
                    $key:ident : $field:ident : $ty:ty = $default:literal, $how:ident $f:expr;
                )+
            }
        )+
        extra {
            $( $(#[doc = $xdoc:literal])+ $xfield:ident : $xty:ty = $xf:path; )+
        }
    ) => {
        /// The effective configuration.
        #[derive(Clone, Debug)]
        pub struct Config {
            $($(
                $(#[doc = $doc])+
                pub $field: $ty,
            )+)+
            $(
                $(#[doc = $xdoc])+
                pub $xfield: $xty,
            )+
        }

        /// Every key, in table order.
        pub const KEY_SPECS: &[KeySpec] = &[
            $($(
                KeySpec {
                    name: stringify!($key),
                    default: $default,
                    secret: <$ty as ConfigValue>::SECRET,
                    help: concat!($($doc),+),
                    section: $section,
                },
            )+)+
        ];

        /// Every key with its raw default, in table order.
        pub const KEYS: &[(&str, &str)] = &[ $($( (stringify!($key), $default), )+)+ ];

        impl Config {
            /// Parses every key, in table order; the first invalid one is the error.
            fn from_lookup(lookup: &Lookup<'_>) -> Result<Config, ConfigError> {
                $($(
                    let $field: $ty = config_value!(lookup, stringify!($key), $how $f);
                )+)+
                Ok(Config {
                    $($( $field, )+)+
                    $( $xfield: $xf(lookup), )+
                })
            }

            /// Every key with its effective value, secrets masked: safe to print.
            pub fn masked_entries(&self) -> Vec<(&'static str, String)> {
                vec![ $($( (stringify!($key), ConfigValue::show(&self.$field)), )+)+ ]
            }

            /// Every secret value in use (non-empty), for log scrubbing tests and
            /// defensive checks.
            pub fn secrets(&self) -> Vec<&str> {
                let mut out: Vec<&str> = Vec::new();
                $($(
                    if let Some(s) = ConfigValue::exposed(&self.$field)
                        && !s.is_empty()
                    {
                        out.push(s);
                    }
                )+)+
                out
            }
        }
    };
}

config_keys! {
    "Database" {
        /// MySQL/MariaDB host. Leave empty to use the embedded SQLite store in
        /// DATA_DIR (no database server needed).
        DB_HOST: db_host: String = "", parse rules::text;
        /// MySQL/MariaDB port (1-65535).
        DB_PORT: db_port: u16 = "3306", parse rules::port::<1>;
        /// MySQL/MariaDB user.
        DB_USER: db_user: String = "hone", parse rules::text;
        /// MySQL/MariaDB password.
        DB_PASS: db_pass: Secret = "", parse rules::secret;
        /// The marketplace's database (1-64 characters of A-Z a-z 0-9 _ $).
        DB_NAME: db_name: String = "hone_marketplace", parse rules::db_name;
        /// Where the embedded store's file (hone-build.sqlite3) lives.
        DATA_DIR: data_dir: PathBuf = "./data", parse rules::path;
    }
    "HTTP" {
        /// HTTP port (0-65535; 0 picks any free port).
        PORT: port: u16 = "8447", parse rules::port::<0>;
        /// Listen address. Default 0.0.0.0, or 127.0.0.1 while UPLOAD_SECRET is
        /// empty; a non-loopback BIND with an empty UPLOAD_SECRET refuses to start.
        BIND: bind: IpAddr = "", resolve rules::bind;
        /// Base URL Perry Hub's workers use to reach /artifact/... (http:// or
        /// https://). Default http://localhost:PORT: set it to this server's
        /// public address in production.
        PUBLIC_URL: public_url: String = "", resolve rules::public_url;
        /// Request-handling threads for uploads and artifacts (1-1024); /health,
        /// /status and /metrics have a small pool of their own.
        WORKERS: workers: usize = "16", parse rules::count::<usize, 1024>;
        /// Largest request body accepted, in bytes (200 MiB; at most 1 TiB).
        MAX_BODY_BYTES: max_body_bytes: u64 = "209715200", parse rules::count::<u64, 1_099_511_627_776>;
        /// Per-read/write socket timeout: a client that sends nothing for this
        /// many seconds is disconnected, and a request head must arrive within it
        /// (at most 3600).
        READ_TIMEOUT_SECS: read_timeout_secs: u64 = "30", parse rules::count::<u64, 3600>;
        /// After SIGTERM or SIGINT: the most seconds hone-build spends finishing
        /// what is in flight (requests, hub submissions, follows) before it exits
        /// anyway (1-600). A second signal exits at once.
        SHUTDOWN_GRACE_SECS: shutdown_grace_secs: u64 = "10", parse rules::count::<u64, 600>;
        /// Connections served at once (1-65536); lowered at start to what the
        /// open-file limit allows (two descriptors per connection). Past it a
        /// new connection is answered 503 with Retry-After and closed.
        MAX_CONNECTIONS: max_connections: usize = "1024", parse rules::count::<usize, 65536>;
        /// Share of MAX_CONNECTIONS one client address may hold, in percent
        /// (1-100). Behind a reverse proxy every connection comes from the
        /// proxy's address: set 100 there.
        MAX_CONNECTIONS_PER_CLIENT_PERCENT: max_connections_per_client_percent: usize = "50", parse rules::count::<usize, 100>;
        /// A keep-alive connection with no new request for this many seconds
        /// is closed (also a new connection that sends nothing; at most 3600).
        KEEPALIVE_IDLE_SECS: keepalive_idle_secs: u64 = "5", parse rules::count::<u64, 3600>;
        /// A request body must average at least this many bytes per second
        /// once BODY_RATE_GRACE_SECS have passed, or it is cut off with 408
        /// (at most 1 GiB/s).
        BODY_MIN_RATE: body_min_rate: u64 = "1024", parse rules::count::<u64, 1_073_741_824>;
        /// Seconds a request body may take before BODY_MIN_RATE applies (at
        /// most 3600).
        BODY_RATE_GRACE_SECS: body_rate_grace_secs: u64 = "10", parse rules::count::<u64, 3600>;
        /// Shared secret for POST /upload (Authorization: Bearer <secret> or
        /// ?token=); never sent to Perry Hub.
        UPLOAD_SECRET: upload_secret: Secret = "", parse rules::secret;
    }
    "Perry Hub" {
        /// Perry Hub's base URL (http:// or https://).
        PERRY_HUB_URL: perry_hub_url: String = "https://hub.perryts.com", parse rules::http_url;
        /// Perry Hub license key, sent with every submission.
        PERRY_HUB_LICENSE_KEY: perry_hub_license_key: Secret = "", parse rules::secret;
        /// Perry account API token, sent as Authorization: Bearer; preferred to
        /// the license key (a license key from self-service registration is
        /// bound to the first plugin it builds).
        PERRY_HUB_TOKEN: perry_hub_token: Secret = "", parse rules::secret;
        /// Perry Hub's WebSocket, over which every build is followed and its
        /// artifact announced. Empty: derived from PERRY_HUB_URL (https://H ->
        /// wss://H/ws, http://H -> ws://H/ws); off: builds are not followed and
        /// wait for callbacks from a patched hub.
        PERRY_HUB_WS_URL: perry_hub_ws_url: Option<String> = "", resolve rules::ws_url;
        /// Most builds one process follows at once (one thread and one
        /// WebSocket each); more wait until one ends (at most 4096).
        FOLLOW_MAX_JOBS: follow_max_jobs: usize = "64", parse rules::count::<usize, 4096>;
        /// Time limit for connecting to Perry Hub, for each write, and for its
        /// answer, in seconds (at most 3600).
        HUB_TIMEOUT_SECS: hub_timeout_secs: u64 = "30", parse rules::count::<u64, 3600>;
        /// Submissions tried before a job is failed (at most 1000).
        SUBMIT_MAX_ATTEMPTS: submit_max_attempts: u32 = "8", parse rules::count::<u32, 1000>;
        /// First retry delay of the backoff between submissions, in seconds: it
        /// doubles per attempt up to RETRY_MAX_SECS, with +-25% jitter (at most
        /// 86400, a day).
        RETRY_BASE_SECS: retry_base_secs: u64 = "5", parse rules::count::<u64, 86_400>;
        /// Ceiling of the backoff delay, in seconds (not below RETRY_BASE_SECS; at
        /// most 604800, a week).
        RETRY_MAX_SECS: retry_max_secs: u64 = "600", resolve rules::retry_max;
        /// A job submitted this many seconds ago without an artifact is failed (at
        /// most 2592000, 30 days).
        BUILD_TIMEOUT_SECS: build_timeout_secs: u64 = "3600", parse rules::count::<u64, 2_592_000>;
        /// Platforms built when an upload names none: a comma-separated list of
        /// macos, linux, windows, ios, android.
        PLATFORMS: platforms: Vec<Platform> = "macos,linux,windows", parse platform::parse_list;
    }
    "Files" {
        /// Compiled binaries: PACKAGES_DIR/<name>/<version>/<platform-id>.bin
        /// (the marketplace serves them from here).
        PACKAGES_DIR: packages_dir: PathBuf = "../hone-marketplace/data/packages", parse rules::path;
        /// Uploaded source tarballs: UPLOADS_DIR/<name>/<version>.tar.gz.
        UPLOADS_DIR: uploads_dir: PathBuf = "./data/uploads", parse rules::path;
    }
    "Build logs" {
        /// Most bytes of text kept in the log of one build attempt; past it the
        /// oldest lines are dropped and a line says how much (at most 1 GiB).
        BUILD_LOG_MAX_BYTES: build_log_max_bytes: u64 = "1048576", parse rules::count::<u64, 1_073_741_824>;
        /// Days a build attempt's log is kept after it was last written; 0 keeps
        /// logs forever (at most 36500).
        BUILD_LOG_RETENTION_DAYS: build_log_retention_days: u64 = "90", parse rules::count_or_zero::<u64, 36_500>;
        /// Most GET /logs/...?follow=1 streams one process serves at once; past
        /// it a new one is answered 503 with Retry-After (at most 4096).
        LOG_FOLLOWERS_MAX: log_followers_max: usize = "32", parse rules::count::<usize, 4096>;
    }
    "Logging" {
        /// error, warn, info, debug or trace (RUST_LOG overrides it).
        LOG_LEVEL: log_level: String = "info", parse rules::log_level;
    }
    extra {
        /// Where the configuration came from, for messages (`build.conf`, `(defaults)`).
        source: String = rules::source;
        /// PUBLIC_URL was not set: it follows the port actually bound.
        public_url_is_default: bool = rules::public_url_is_default;
    }
}

/// The parsers the key table names: `parse` ones say why a value is wrong,
/// `resolve` ones (keys that depend on other keys) return the whole error.
mod rules {
    use super::*;

    pub(super) fn text(v: &str) -> Result<String, String> {
        Ok(v.to_string())
    }

    pub(super) fn secret(v: &str) -> Result<Secret, String> {
        Ok(Secret::new(v))
    }

    /// A TCP port from `MIN` to 65535.
    pub(super) fn port<const MIN: u16>(v: &str) -> Result<u16, String> {
        v.parse::<u16>()
            .ok()
            .filter(|p| *p >= MIN)
            .ok_or_else(|| format!("not a port number ({MIN}-65535)"))
    }

    /// A whole number from 1 to `MAX`. Every numeric key has a bound: the
    /// values are turned into milliseconds, deadlines and leases, which a
    /// value near `u64::MAX` would overflow.
    pub(super) fn count<T: TryFrom<u64>, const MAX: u64>(v: &str) -> Result<T, String> {
        let too_big = || format!("at most {MAX}");
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("expected a whole number from 1 to {MAX}"));
        }
        // Only digits: parsing fails only when the number does not fit in u64.
        let n: u64 = v.parse().map_err(|_| too_big())?;
        if n == 0 {
            return Err(format!("expected a whole number from 1 to {MAX}"));
        }
        if n > MAX {
            return Err(too_big());
        }
        T::try_from(n).map_err(|_| too_big())
    }

    /// Like [`count`], but 0 is accepted too (it means "off" or "forever").
    pub(super) fn count_or_zero<T: TryFrom<u64>, const MAX: u64>(v: &str) -> Result<T, String> {
        if v == "0" {
            return T::try_from(0).map_err(|_| "0 does not fit".to_string());
        }
        count::<T, MAX>(v).map_err(|e| e.replace("from 1 to", "from 0 to"))
    }

    pub(super) fn path(v: &str) -> Result<PathBuf, String> {
        if v.is_empty() {
            Err("must not be empty".to_string())
        } else {
            Ok(PathBuf::from(v))
        }
    }

    /// An `http://` or `https://` URL, without its trailing slashes.
    pub(super) fn http_url(v: &str) -> Result<String, String> {
        if v.starts_with("http://") || v.starts_with("https://") {
            Ok(v.trim_end_matches('/').to_string())
        } else {
            Err("must start with http:// or https://".to_string())
        }
    }

    pub(super) fn db_name(v: &str) -> Result<String, String> {
        if !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        {
            Ok(v.to_string())
        } else {
            Err("expected 1-64 characters of [A-Za-z0-9_$]".to_string())
        }
    }

    pub(super) fn log_level(v: &str) -> Result<String, String> {
        let l = v.to_ascii_lowercase();
        if ["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
            Ok(l)
        } else {
            Err("expected one of error, warn, info, debug, trace".to_string())
        }
    }

    /// BIND: empty means 127.0.0.1 without an UPLOAD_SECRET, 0.0.0.0 with one;
    /// a non-loopback address without a secret refuses to start.
    pub(super) fn bind(l: &Lookup<'_>, v: &str) -> Result<IpAddr, ConfigError> {
        let no_secret = l.get("UPLOAD_SECRET").0.is_empty();
        if v.is_empty() {
            return Ok(if no_secret {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([0, 0, 0, 0])
            });
        }
        let ip = v.parse::<IpAddr>().map_err(|_| {
            l.invalid(
                "BIND",
                v,
                "not an IP address (for example 127.0.0.1 or 0.0.0.0)",
            )
        })?;
        if !ip.is_loopback() && no_secret {
            let (_, from) = l.get("BIND");
            return Err(ConfigError(format!(
                "refusing to start: BIND={ip} ({from}) accepts connections from other \
                 machines but UPLOAD_SECRET is empty; set UPLOAD_SECRET or bind to 127.0.0.1"
            )));
        }
        Ok(ip)
    }

    /// PUBLIC_URL: empty means `http://localhost:PORT`.
    pub(super) fn public_url(l: &Lookup<'_>, v: &str) -> Result<String, ConfigError> {
        if v.is_empty() {
            let port = l.parse("PORT", port::<0>)?;
            return Ok(format!("http://localhost:{port}"));
        }
        http_url(v).map_err(|why| l.invalid("PUBLIC_URL", v, &why))
    }

    /// PERRY_HUB_WS_URL: `off`, a ws:// or wss:// URL, or empty: derived
    /// from PERRY_HUB_URL.
    pub(super) fn ws_url(l: &Lookup<'_>, v: &str) -> Result<Option<String>, ConfigError> {
        if v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        if v.is_empty() {
            let hub = l.parse("PERRY_HUB_URL", http_url)?;
            let hub = hub.trim_end_matches('/');
            let derived = match hub.split_once("://") {
                Some(("https", rest)) => format!("wss://{rest}/ws"),
                Some((_, rest)) => format!("ws://{rest}/ws"),
                None => format!("ws://{hub}/ws"),
            };
            return Ok(Some(derived));
        }
        let lower = v.to_ascii_lowercase();
        let host = lower
            .strip_prefix("ws://")
            .or_else(|| lower.strip_prefix("wss://"));
        match host {
            Some(h) if !h.is_empty() && !h.starts_with('/') && !v.contains(char::is_whitespace) => {
                Ok(Some(v.trim_end_matches('/').to_string()))
            }
            _ => Err(l.invalid("PERRY_HUB_WS_URL", v, "not a ws:// or wss:// URL (or off)")),
        }
    }

    /// RETRY_MAX_SECS: 1 to a week, and not below RETRY_BASE_SECS.
    pub(super) fn retry_max(l: &Lookup<'_>, v: &str) -> Result<u64, ConfigError> {
        let max = count::<u64, 604_800>(v).map_err(|why| l.invalid("RETRY_MAX_SECS", v, &why))?;
        let base = l.parse("RETRY_BASE_SECS", count::<u64, 86_400>)?;
        if max < base {
            return Err(ConfigError(format!(
                "invalid value for RETRY_MAX_SECS ({}): must not be below RETRY_BASE_SECS",
                l.get("RETRY_MAX_SECS").1
            )));
        }
        Ok(max)
    }

    pub(super) fn source(l: &Lookup<'_>) -> String {
        l.source.to_string()
    }

    pub(super) fn public_url_is_default(l: &Lookup<'_>) -> bool {
        l.get("PUBLIC_URL").0.is_empty()
    }
}

/// The key called `name`, if there is one.
pub fn key_spec(name: &str) -> Option<&'static KeySpec> {
    KEY_SPECS.iter().find(|k| k.name == name)
}

// ---- build.conf.example -----------------------------------------------------

/// The top of `build.conf.example`, before the keys.
const EXAMPLE_HEADER: &str = "\
# hone-build configuration. Copy to build.conf (in the working directory) or
# pass --config FILE. One KEY=VALUE per line; '#' starts a comment line; the
# value is everything after the first '=', trimmed, with no quoting. Every key
# can be overridden by the environment variable HONE_BUILD_<KEY>. Unknown keys
# are logged as warnings. Secrets are never logged. Each key below is set to
# its default; docs/configuration.md in hone-build's source describes them.
#
# This file is generated from the key table in src/config.rs; regenerate it
# with: cargo test --lib config::tests::write_example_file -- --ignored
";

/// `build.conf.example`: the header, then every key of the table under its
/// section, each with its help (wrapped) and `KEY=default`.
pub fn example_file() -> String {
    let mut out = String::from(EXAMPLE_HEADER);
    let mut section = "";
    for k in KEY_SPECS {
        if k.section != section {
            section = k.section;
            let rule = format!("# --- {section} ");
            out.push_str(&format!("\n{rule:-<78}\n"));
        }
        let mut help = k.help_text();
        if k.secret {
            help.push_str(" Secret: never logged or printed.");
        }
        for line in wrap(&help, 76) {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!("{}={}\n", k.name, k.default));
    }
    out
}

/// Greedy word wrap at `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The raw `KEY=VALUE` pairs of a file, with the line each came from.
#[derive(Debug, Default)]
pub struct RawFile {
    pub values: BTreeMap<String, (String, usize)>,
    pub warnings: Vec<String>,
}

/// Parses `build.conf` text: `#` comments and blank lines are ignored, the
/// value is everything after the first `=`, trimmed; no quoting. A line
/// without `=` and an unknown key are warnings, not errors.
pub fn parse_file(text: &str, file: &str) -> RawFile {
    let mut raw = RawFile::default();
    // A UTF-8 byte order mark (some Windows editors write one) is not part
    // of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            raw.warnings.push(format!(
                "{file}:{lineno}: ignoring line without '=': no KEY=VALUE"
            ));
            continue;
        };
        let key = key.trim();
        if key_spec(key).is_none() {
            raw.warnings.push(format!(
                "{file}:{lineno}: unknown key '{}' ignored",
                key.escape_debug()
            ));
            continue;
        }
        if raw.values.contains_key(key) {
            raw.warnings.push(format!(
                "{file}:{lineno}: {key} set again; the last value wins"
            ));
        }
        raw.values
            .insert(key.to_string(), (value.trim().to_string(), lineno));
    }
    raw
}

/// Where a configuration file comes from.
pub enum FileChoice<'a> {
    /// `--config PATH`: must exist.
    Explicit(&'a Path),
    /// `build.conf` in the working directory if present.
    Default,
}

impl Config {
    /// Loads the configuration: file, then `HONE_BUILD_*` from `env`, then
    /// defaults. Returns the configuration and warnings to log.
    pub fn load(
        choice: FileChoice<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let (path, must_exist) = match choice {
            FileChoice::Explicit(p) => (p.to_path_buf(), true),
            FileChoice::Default => (PathBuf::from(DEFAULT_FILE), false),
        };
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => None,
            Err(e) => {
                return Err(ConfigError(format!(
                    "cannot read configuration file {file}: {e}"
                )));
            }
        };
        let raw = match &text {
            Some(t) => parse_file(t, &file),
            None => RawFile::default(),
        };
        let source = if text.is_some() {
            file
        } else {
            "(defaults)".to_string()
        };
        let warnings = raw.warnings.clone();
        let cfg = Config::from_raw(&raw, &source, env)?;
        Ok((cfg, warnings))
    }

    /// Builds a configuration from parsed file values and the environment.
    pub fn from_raw(
        raw: &RawFile,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_lookup(&Lookup { raw, source, env })
    }

    /// `true` when the embedded SQLite store is used (no DB_HOST).
    pub fn embedded_store(&self) -> bool {
        self.db_host.is_empty()
    }
}

/// Resolves one key: environment override, then the file, then the default.
struct Lookup<'a> {
    raw: &'a RawFile,
    source: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Lookup<'_> {
    /// The value and a description of where it came from.
    fn get(&self, key: &str) -> (String, String) {
        let env_key = format!("{ENV_PREFIX}{key}");
        if let Some(v) = (self.env)(&env_key) {
            return (
                v.trim().to_string(),
                format!("environment variable {env_key}"),
            );
        }
        if let Some((v, line)) = self.raw.values.get(key) {
            return (v.clone(), format!("{}:{line}", self.source));
        }
        let default = key_spec(key).map(|k| k.default).unwrap_or("");
        (default.to_string(), "default".to_string())
    }

    fn invalid(&self, key: &str, value: &str, why: &str) -> ConfigError {
        let (_, from) = self.get(key);
        let shown = if key_spec(key).is_some_and(|k| k.secret) {
            "********".to_string()
        } else {
            value.escape_debug().to_string()
        };
        ConfigError(format!(
            "invalid value for {key} in {from}: '{shown}': {why}"
        ))
    }

    fn parse<T>(&self, key: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        let (v, _) = self.get(key);
        f(&v).map_err(|why| self.invalid(key, &v, &why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let raw = parse_file(text, "build.conf");
        Config::from_raw(&raw, "build.conf", &move |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.db_host, "");
        assert!(c.embedded_store());
        assert_eq!(c.db_port, 3306);
        assert_eq!(c.db_user, "hone");
        assert_eq!(c.db_name, "hone_marketplace");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.port, 8447);
        assert_eq!(c.bind.to_string(), "127.0.0.1", "no secret: loopback");
        assert_eq!(c.public_url, "http://localhost:8447");
        assert_eq!(c.perry_hub_url, "https://hub.perryts.com");
        assert_eq!(
            c.packages_dir,
            PathBuf::from("../hone-marketplace/data/packages")
        );
        assert_eq!(c.uploads_dir, PathBuf::from("./data/uploads"));
        assert_eq!(
            c.platforms,
            vec![Platform::Macos, Platform::Linux, Platform::Windows]
        );
        assert_eq!(c.workers, 16);
        assert_eq!(c.max_body_bytes, 209_715_200);
        assert_eq!(c.hub_timeout_secs, 30);
        assert_eq!(c.submit_max_attempts, 8);
        assert_eq!(c.build_timeout_secs, 3600);
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let c = load(
            "# a comment\n\n   # indented comment\n  PORT =  9000  \n\tDB_USER\t=\tbob\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.db_user, "bob");
    }

    #[test]
    fn value_is_everything_after_the_first_equals() {
        let c = load("DB_PASS=a=b==c\nUPLOAD_SECRET= x=y \n", &[]).unwrap();
        assert_eq!(c.db_pass.expose(), "a=b==c");
        assert_eq!(c.upload_secret.expose(), "x=y");
    }

    #[test]
    fn no_quoting() {
        let c = load("DB_USER=\"bob\"\n", &[]).unwrap();
        assert_eq!(c.db_user, "\"bob\"");
    }

    #[test]
    fn unknown_keys_and_bad_lines_warn() {
        let raw = parse_file("FOO=1\nPORT=1\nnot a pair\nPORT=2\n", "x.conf");
        assert_eq!(raw.warnings.len(), 3, "{:?}", raw.warnings);
        assert!(raw.warnings[0].contains("unknown key 'FOO'"));
        assert!(raw.warnings[0].starts_with("x.conf:1"));
        assert!(raw.warnings[1].contains("x.conf:3"));
        assert!(raw.warnings[2].contains("last value wins"));
        assert_eq!(raw.values["PORT"].0, "2");
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            "PORT=9000\nDB_PASS=file\n",
            &[("HONE_BUILD_PORT", "9100"), ("HONE_BUILD_DB_PASS", "env")],
        )
        .unwrap();
        assert_eq!(c.port, 9100);
        assert_eq!(c.db_pass.expose(), "env");
    }

    #[test]
    fn environment_overrides_default_without_file() {
        let c = load("", &[("HONE_BUILD_WORKERS", "3")]).unwrap();
        assert_eq!(c.workers, 3);
    }

    #[test]
    fn build_log_retention_zero_keeps_logs_forever() {
        let c = load("BUILD_LOG_RETENTION_DAYS=0\n", &[]).unwrap();
        assert_eq!(c.build_log_retention_days, 0);
        let c = load("", &[]).unwrap();
        assert_eq!(
            (
                c.build_log_max_bytes,
                c.build_log_retention_days,
                c.log_followers_max
            ),
            (1_048_576, 90, 32)
        );
        let e = load("BUILD_LOG_RETENTION_DAYS=x\n", &[]).unwrap_err().0;
        assert!(e.contains("from 0 to 36500"), "{e}");
    }

    #[test]
    fn invalid_values_name_key_and_file() {
        let e = load("\nPORT=abc\n", &[]).unwrap_err().0;
        assert!(
            e.contains("PORT") && e.contains("build.conf:2") && e.contains("'abc'"),
            "{e}"
        );
        let e = load("PLATFORMS=macos,beos\n", &[]).unwrap_err().0;
        assert!(
            e.contains("PLATFORMS") && e.contains("build.conf:1") && e.contains("beos"),
            "{e}"
        );
        let e = load("", &[("HONE_BUILD_WORKERS", "zero")]).unwrap_err().0;
        assert!(
            e.contains("WORKERS") && e.contains("HONE_BUILD_WORKERS"),
            "{e}"
        );
        for bad in [
            "PORT=-1",
            "PORT=70000",
            "DB_PORT=x",
            "WORKERS=0",
            "MAX_BODY_BYTES=-1",
            "HUB_TIMEOUT_SECS=1.5",
            "SUBMIT_MAX_ATTEMPTS=",
            "BUILD_TIMEOUT_SECS=soon",
            "LOG_LEVEL=loud",
            "BIND=localhost",
            "PUBLIC_URL=example.com",
            "PERRY_HUB_URL=ftp://x",
            "DATA_DIR=",
            "DB_NAME=a;drop",
            "RETRY_BASE_SECS=10\nRETRY_MAX_SECS=5",
            "BUILD_LOG_MAX_BYTES=0",
            "BUILD_LOG_RETENTION_DAYS=-1",
            "BUILD_LOG_RETENTION_DAYS=36501",
            "BUILD_LOG_RETENTION_DAYS=00x",
            "LOG_FOLLOWERS_MAX=0",
        ] {
            let e = load(bad, &[]).unwrap_err().0;
            let key = bad.split('=').next().unwrap();
            let key = if bad.starts_with("RETRY_BASE") {
                "RETRY_MAX_SECS"
            } else {
                key
            };
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    /// Issue #11 item 17: a UTF-8 byte order mark (as some Windows editors
    /// write) must not hide the first key.
    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_key() {
        let raw = parse_file(
            "\u{feff}DB_HOST=db.internal\r\nDB_PORT=3307\r\n",
            "build.conf",
        );
        assert!(raw.warnings.is_empty(), "{:?}", raw.warnings);
        assert_eq!(raw.values["DB_HOST"], ("db.internal".to_string(), 1));
        let c = load("\u{feff}DB_HOST=db.internal\n", &[]).unwrap();
        assert_eq!(c.db_host, "db.internal");
        assert!(
            !c.embedded_store(),
            "a BOM must not switch to the embedded store"
        );
        // Through the file loader too (the bytes as an editor saves them).
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bom.conf");
        std::fs::write(&f, b"\xef\xbb\xbfDB_HOST=db.internal\nPORT=9001\n").unwrap();
        let (c, warnings) = Config::load(FileChoice::Explicit(&f), &|_| None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((c.db_host.as_str(), c.port), ("db.internal", 9001));
    }

    /// Issue #11 item 16: every numeric key has an upper bound, refused at
    /// start naming the key and where the value came from; values near
    /// `u64::MAX` overflowed the arithmetic on them.
    #[test]
    fn numeric_keys_have_sane_upper_bounds() {
        let numeric: Vec<&str> = KEY_SPECS
            .iter()
            .filter(|k| !k.default.is_empty() && k.default.bytes().all(|b| b.is_ascii_digit()))
            .map(|k| k.name)
            .collect();
        assert!(numeric.len() >= 10, "{numeric:?}");
        for key in numeric {
            for huge in [
                "18446744073709551615",
                "9223372036854775808",
                "99999999999999",
            ] {
                let e = load(&format!("\n{key}={huge}\n"), &[]).unwrap_err().0;
                assert!(
                    e.contains(key) && e.contains("build.conf:2"),
                    "{key}={huge}: {e}"
                );
                if !key.ends_with("PORT") {
                    assert!(e.contains("at most"), "{key}={huge}: {e}");
                }
                let var = format!("HONE_BUILD_{key}");
                let e = load("", &[(var.as_str(), huge)]).unwrap_err().0;
                assert!(e.contains(key) && e.contains(&var), "{var}={huge}: {e}");
            }
            // One past the largest accepted value says what the largest is.
            let max = largest_accepted(key);
            let e = load(&format!("RETRY_MAX_SECS=604800\n{key}={}", max + 1), &[])
                .unwrap_err()
                .0;
            if !key.ends_with("PORT") {
                assert!(e.contains(&format!("at most {max}")), "{key}: {e}");
            }
        }
        // The bounds are generous: a week-long build, a 30 GiB body.
        let c = load(
            "BUILD_TIMEOUT_SECS=604800\nMAX_BODY_BYTES=32212254720\nHUB_TIMEOUT_SECS=600\n\
             RETRY_MAX_SECS=86400\nSUBMIT_MAX_ATTEMPTS=100\nREAD_TIMEOUT_SECS=600\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.build_timeout_secs, 604_800);
        // Everything at its bound at once: the arithmetic done on the values
        // (milliseconds, leases, backoff, deadlines) stays in range.
        let at_max: String = ["RETRY_BASE_SECS", "RETRY_MAX_SECS"]
            .iter()
            .map(|k| format!("{k}={}\n", largest_accepted(k)))
            .collect();
        let c = load(
            &format!(
                "{at_max}HUB_TIMEOUT_SECS={}\nBUILD_TIMEOUT_SECS={}\nREAD_TIMEOUT_SECS={}\n",
                largest_accepted("HUB_TIMEOUT_SECS"),
                largest_accepted("BUILD_TIMEOUT_SECS"),
                largest_accepted("READ_TIMEOUT_SECS"),
            ),
            &[],
        )
        .unwrap();
        let lease_ms = c
            .hub_timeout_secs
            .saturating_mul(4)
            .max(120)
            .checked_mul(1000);
        assert!(
            lease_ms.is_some_and(|l| l < (i64::MAX as u64) / 1024),
            "{lease_ms:?}"
        );
        assert!(
            c.build_timeout_secs < 365 * 24 * 3600,
            "{}",
            c.build_timeout_secs
        );
        assert!(c.retry_max_secs.checked_mul(1000 << 30).is_some());
        assert!(c.read_timeout_secs <= 24 * 3600);
    }

    /// The largest value `key` accepts (the others at their defaults, but
    /// RETRY_MAX_SECS at its largest for RETRY_BASE_SECS, which may not
    /// exceed it), found by bisection over u64.
    fn largest_accepted(key: &str) -> u64 {
        let default: u64 = key_spec(key).unwrap().default.parse().unwrap();
        let others = if key == "RETRY_BASE_SECS" {
            format!("RETRY_MAX_SECS={}\n", largest_accepted("RETRY_MAX_SECS"))
        } else {
            String::new()
        };
        let ok = |v: u64| load(&format!("{others}{key}={v}"), &[]).is_ok();
        assert!(ok(default), "{key} accepts its default");
        let (mut lo, mut hi) = (default, u64::MAX);
        assert!(!ok(hi), "{key} accepts u64::MAX");
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if ok(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    #[test]
    fn bind_follows_upload_secret() {
        assert_eq!(
            load("UPLOAD_SECRET=s", &[]).unwrap().bind.to_string(),
            "0.0.0.0"
        );
        assert_eq!(load("", &[]).unwrap().bind.to_string(), "127.0.0.1");
        assert_eq!(
            load("BIND=127.0.0.2", &[]).unwrap().bind.to_string(),
            "127.0.0.2"
        );
        assert_eq!(load("BIND=::1", &[]).unwrap().bind.to_string(), "::1");
        let e = load("BIND=0.0.0.0", &[]).unwrap_err().0;
        assert!(e.contains("UPLOAD_SECRET") && e.contains("refusing"), "{e}");
        assert!(load("BIND=0.0.0.0\nUPLOAD_SECRET=s", &[]).is_ok());
    }

    #[test]
    fn public_url_defaults_to_port_and_drops_trailing_slash() {
        assert_eq!(
            load("PORT=9000", &[]).unwrap().public_url,
            "http://localhost:9000"
        );
        assert_eq!(
            load("PUBLIC_URL=https://build.hone.codes/", &[])
                .unwrap()
                .public_url,
            "https://build.hone.codes"
        );
    }

    #[test]
    fn secrets_are_masked_everywhere_printed() {
        let c = load(
            "DB_PASS=dbpass-123\nPERRY_HUB_LICENSE_KEY=lic-456\nUPLOAD_SECRET=up-789\n",
            &[],
        )
        .unwrap();
        let debug = format!("{c:?}");
        let masked = format!("{:?}", c.masked_entries());
        for s in ["dbpass-123", "lic-456", "up-789"] {
            assert!(!debug.contains(s), "Debug leaks {s}");
            assert!(!masked.contains(s), "masked_entries leaks {s}");
        }
        assert!(masked.contains("********"));
        assert_eq!(c.secrets().len(), 3);
        assert_eq!(c.masked_entries().len(), KEYS.len(), "every key is printed");
    }

    #[test]
    fn invalid_secret_value_is_not_echoed() {
        let lookup_raw = parse_file("", "build.conf");
        let l = Lookup {
            raw: &lookup_raw,
            source: "build.conf",
            env: &|_| None,
        };
        let e = l.invalid("DB_PASS", "hunter2", "bad").0;
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn example_file_names_every_key_and_parses_cleanly() {
        let raw = parse_file(include_str!("../build.conf.example"), "build.conf.example");
        assert!(raw.warnings.is_empty(), "{:?}", raw.warnings);
        for (key, _) in KEYS {
            assert!(
                raw.values.contains_key(*key),
                "build.conf.example lacks {key}"
            );
        }
        let c = Config::from_raw(&raw, "build.conf.example", &|_| None).unwrap();
        assert_eq!(c.port, 8447);
    }

    /// The keys a `build.conf`-style text sets or shows commented out
    /// (`KEY=…` or `# KEY=…`), with how often each appears.
    fn keys_mentioned(text: &str) -> BTreeMap<String, usize> {
        let mut found = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim_start();
            let line = line.strip_prefix('#').unwrap_or(line).trim_start();
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.starts_with(|c: char| c.is_ascii_uppercase())
                && line[name.len()..].starts_with('=')
            {
                *found.entry(name).or_insert(0) += 1;
            }
        }
        found
    }

    #[test]
    fn example_file_lists_exactly_the_known_keys() {
        let found = keys_mentioned(include_str!("../build.conf.example"));
        for k in KEY_SPECS {
            assert_eq!(
                found.get(k.name),
                Some(&1),
                "build.conf.example must list {} exactly once",
                k.name
            );
        }
        let unknown: Vec<&String> = found.keys().filter(|k| key_spec(k).is_none()).collect();
        assert!(
            unknown.is_empty(),
            "build.conf.example lists unknown keys {unknown:?}"
        );
        // The scan itself finds both forms, and nothing in prose.
        let probe =
            keys_mentioned("PORT=1\n  # DB_HOST=x\n# set PORT=2 here\n# HONE_BUILD_<KEY>\n");
        assert_eq!(probe.len(), 2, "{probe:?}");
    }

    #[test]
    fn example_file_is_generated_from_the_key_table() {
        let generated = example_file();
        assert_eq!(keys_mentioned(&generated).len(), KEY_SPECS.len());
        assert!(
            include_str!("../build.conf.example") == generated,
            "build.conf.example is not what the key table generates; regenerate it with \
             `cargo test --lib config::tests::write_example_file -- --ignored` and review the diff"
        );
    }

    /// Regenerates `build.conf.example` from the key table (run on purpose:
    /// `cargo test --lib config::tests::write_example_file -- --ignored`).
    #[test]
    #[ignore = "writes build.conf.example; run it after changing the key table"]
    fn write_example_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("build.conf.example");
        std::fs::write(&path, example_file()).unwrap();
        print!("{}", example_file());
    }

    #[test]
    fn key_table_is_consistent() {
        let mut names: Vec<&str> = KEY_SPECS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEY_SPECS.len(), "a key is defined twice");
        assert_eq!(KEYS.len(), KEY_SPECS.len());
        for (k, (name, default)) in KEY_SPECS.iter().zip(KEYS) {
            assert_eq!((k.name, k.default), (*name, *default));
            assert!(!k.help_text().is_empty(), "{} has no help", k.name);
            assert!(
                k.name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                k.name
            );
        }
        // Secret exactly when the field's type is `Secret`.
        let secret: Vec<&str> = KEY_SPECS
            .iter()
            .filter(|k| k.secret)
            .map(|k| k.name)
            .collect();
        assert_eq!(
            secret,
            [
                "DB_PASS",
                "UPLOAD_SECRET",
                "PERRY_HUB_LICENSE_KEY",
                "PERRY_HUB_TOKEN"
            ]
        );
        // check-config lists the keys in table order.
        let c = load("", &[]).unwrap();
        let listed: Vec<&str> = c.masked_entries().iter().map(|(k, _)| *k).collect();
        assert_eq!(listed, KEY_SPECS.iter().map(|k| k.name).collect::<Vec<_>>());
    }

    #[test]
    fn every_key_can_come_from_the_environment() {
        // A value differing from the default that every key accepts is not
        // at hand, so check where each key's value comes from instead.
        let raw = parse_file("", "build.conf");
        for k in KEY_SPECS {
            let var = format!("{ENV_PREFIX}{}", k.name);
            let env = |name: &str| (name == var).then(|| format!(" {} ", k.default));
            let l = Lookup {
                raw: &raw,
                source: "build.conf",
                env: &env,
            };
            assert_eq!(
                l.get(k.name),
                (k.default.to_string(), format!("environment variable {var}"))
            );
            assert!(Config::from_raw(&raw, "build.conf", &env).is_ok(), "{var}");
        }
    }

    #[test]
    fn docs_describe_every_key() {
        let docs = include_str!("../docs/configuration.md");
        for k in KEY_SPECS {
            assert!(
                docs.contains(&format!("`{}`", k.name)),
                "docs/configuration.md does not describe {}",
                k.name
            );
        }
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_missing_is_not() {
        let missing = Path::new("/nonexistent/hone/build.conf");
        let e = Config::load(FileChoice::Explicit(missing), &|_| None)
            .unwrap_err()
            .0;
        assert!(e.contains("/nonexistent/hone/build.conf"), "{e}");
        let dir = std::env::temp_dir().join(format!("hone-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.conf");
        std::fs::write(&f, "PORT=1234\nBOGUS=1\n").unwrap();
        let (c, warnings) = Config::load(FileChoice::Explicit(&f), &|_| None).unwrap();
        assert_eq!(c.port, 1234);
        assert_eq!(warnings.len(), 1);
        assert!(c.source.ends_with("x.conf"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
