//! Configuration: `build.conf` (`KEY=VALUE`), `HONE_BUILD_<KEY>` environment
//! overrides, defaults (SPEC 1). Secrets are wrapped in [`Secret`], whose
//! `Debug`/`Display` print a mask, so the configuration can be printed or
//! logged without leaking them.

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

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub db_host: String,
    pub db_port: u16,
    pub db_user: String,
    pub db_pass: Secret,
    pub db_name: String,
    pub data_dir: PathBuf,
    pub port: u16,
    pub bind: IpAddr,
    pub public_url: String,
    pub perry_hub_url: String,
    pub perry_hub_license_key: Secret,
    pub packages_dir: PathBuf,
    pub uploads_dir: PathBuf,
    pub upload_secret: Secret,
    pub platforms: Vec<Platform>,
    pub workers: usize,
    pub max_body_bytes: u64,
    pub hub_timeout_secs: u64,
    pub submit_max_attempts: u32,
    pub build_timeout_secs: u64,
    pub log_level: String,
    /// First retry delay of the dispatcher's backoff (doubles per attempt).
    pub retry_base_secs: u64,
    /// Ceiling of the backoff delay.
    pub retry_max_secs: u64,
    /// Per-read/write socket timeout: a client silent this long is cut off.
    pub read_timeout_secs: u64,
    /// Where the configuration came from, for messages (`build.conf`, `(defaults)`).
    pub source: String,
    /// PUBLIC_URL was not set: it follows the port actually bound.
    pub public_url_is_default: bool,
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

/// Every key of SPEC 1 plus hone-build's own, with its default and comment
/// (the comment is what `build.conf.example` says).
pub const KEYS: &[(&str, &str)] = &[
    ("DB_HOST", ""),
    ("DB_PORT", "3306"),
    ("DB_USER", "hone"),
    ("DB_PASS", ""),
    ("DB_NAME", "hone_marketplace"),
    ("DATA_DIR", "./data"),
    ("PORT", "8447"),
    ("BIND", ""),
    ("PUBLIC_URL", ""),
    ("PERRY_HUB_URL", "https://hub.perryts.com"),
    ("PERRY_HUB_LICENSE_KEY", ""),
    ("PACKAGES_DIR", "../hone-marketplace/data/packages"),
    ("UPLOADS_DIR", "./data/uploads"),
    ("UPLOAD_SECRET", ""),
    ("PLATFORMS", "macos,linux,windows"),
    ("WORKERS", "16"),
    ("MAX_BODY_BYTES", "209715200"),
    ("HUB_TIMEOUT_SECS", "30"),
    ("SUBMIT_MAX_ATTEMPTS", "8"),
    ("BUILD_TIMEOUT_SECS", "3600"),
    ("LOG_LEVEL", "info"),
    ("RETRY_BASE_SECS", "5"),
    ("RETRY_MAX_SECS", "600"),
    ("READ_TIMEOUT_SECS", "30"),
];

/// Keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &["DB_PASS", "PERRY_HUB_LICENSE_KEY", "UPLOAD_SECRET"];

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
        if !KEYS.iter().any(|(k, _)| *k == key) {
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
        let lookup = Lookup { raw, source, env };
        // PORT=0 binds any free port (tests, smoke runs).
        let port: u16 = lookup.parse("PORT", |v| {
            v.parse::<u16>()
                .map_err(|_| "not a port number (0-65535)".to_string())
        })?;
        let upload_secret = Secret::new(lookup.get("UPLOAD_SECRET").0);
        let bind: Option<IpAddr> = lookup.parse_opt("BIND", |v| {
            v.parse::<IpAddr>()
                .map_err(|_| "not an IP address (for example 127.0.0.1 or 0.0.0.0)".to_string())
        })?;
        let bind = match bind {
            Some(ip) => {
                if !ip.is_loopback() && upload_secret.is_empty() {
                    let (_, from) = lookup.get("BIND");
                    return Err(ConfigError(format!(
                        "refusing to start: BIND={ip} ({from}) accepts connections from other \
                         machines but UPLOAD_SECRET is empty; set UPLOAD_SECRET or bind to 127.0.0.1"
                    )));
                }
                ip
            }
            None if upload_secret.is_empty() => IpAddr::from([127, 0, 0, 1]),
            None => IpAddr::from([0, 0, 0, 0]),
        };
        let public_url_is_default = lookup.get("PUBLIC_URL").0.is_empty();
        let public_url = match lookup.get("PUBLIC_URL").0 {
            v if v.is_empty() => format!("http://localhost:{port}"),
            v => {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(lookup.invalid(
                        "PUBLIC_URL",
                        &v,
                        "must start with http:// or https://",
                    ));
                }
                v.trim_end_matches('/').to_string()
            }
        };
        let perry_hub_url = {
            let v = lookup.get("PERRY_HUB_URL").0;
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(lookup.invalid(
                    "PERRY_HUB_URL",
                    &v,
                    "must start with http:// or https://",
                ));
            }
            v.trim_end_matches('/').to_string()
        };
        let log_level = lookup.parse("LOG_LEVEL", |v| {
            let l = v.to_ascii_lowercase();
            if ["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                Ok(l)
            } else {
                Err("expected one of error, warn, info, debug, trace".to_string())
            }
        })?;
        let retry_base_secs = lookup.parse("RETRY_BASE_SECS", positive::<u64>)?;
        let retry_max_secs = lookup.parse("RETRY_MAX_SECS", positive::<u64>)?;
        if retry_max_secs < retry_base_secs {
            return Err(ConfigError(format!(
                "invalid value for RETRY_MAX_SECS ({}): must not be below RETRY_BASE_SECS",
                lookup.get("RETRY_MAX_SECS").1
            )));
        }
        Ok(Config {
            db_host: lookup.get("DB_HOST").0,
            db_port: lookup.parse("DB_PORT", |v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| "not a port number (1-65535)".to_string())
            })?,
            db_user: lookup.get("DB_USER").0,
            db_pass: Secret::new(lookup.get("DB_PASS").0),
            db_name: lookup.parse("DB_NAME", |v| {
                if !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                {
                    Ok(v.to_string())
                } else {
                    Err("expected 1-64 characters of [A-Za-z0-9_$]".to_string())
                }
            })?,
            data_dir: lookup.path("DATA_DIR")?,
            port,
            bind,
            public_url,
            perry_hub_url,
            perry_hub_license_key: Secret::new(lookup.get("PERRY_HUB_LICENSE_KEY").0),
            packages_dir: lookup.path("PACKAGES_DIR")?,
            uploads_dir: lookup.path("UPLOADS_DIR")?,
            upload_secret,
            platforms: lookup.parse("PLATFORMS", platform::parse_list)?,
            workers: lookup.parse("WORKERS", |v| {
                positive::<usize>(v).and_then(|n| {
                    if n <= 1024 {
                        Ok(n)
                    } else {
                        Err("at most 1024".to_string())
                    }
                })
            })?,
            max_body_bytes: lookup.parse("MAX_BODY_BYTES", positive::<u64>)?,
            hub_timeout_secs: lookup.parse("HUB_TIMEOUT_SECS", positive::<u64>)?,
            submit_max_attempts: lookup.parse("SUBMIT_MAX_ATTEMPTS", positive::<u32>)?,
            build_timeout_secs: lookup.parse("BUILD_TIMEOUT_SECS", positive::<u64>)?,
            log_level,
            retry_base_secs,
            retry_max_secs,
            read_timeout_secs: lookup.parse("READ_TIMEOUT_SECS", positive::<u64>)?,
            source: source.to_string(),
            public_url_is_default,
        })
    }

    /// `true` when the embedded SQLite store is used (no DB_HOST).
    pub fn embedded_store(&self) -> bool {
        self.db_host.is_empty()
    }

    /// Every key with its effective value, secrets masked: safe to print.
    pub fn masked_entries(&self) -> Vec<(&'static str, String)> {
        let p = |p: &Path| p.display().to_string();
        vec![
            ("DB_HOST", self.db_host.clone()),
            ("DB_PORT", self.db_port.to_string()),
            ("DB_USER", self.db_user.clone()),
            ("DB_PASS", self.db_pass.to_string()),
            ("DB_NAME", self.db_name.clone()),
            ("DATA_DIR", p(&self.data_dir)),
            ("PORT", self.port.to_string()),
            ("BIND", self.bind.to_string()),
            ("PUBLIC_URL", self.public_url.clone()),
            ("PERRY_HUB_URL", self.perry_hub_url.clone()),
            (
                "PERRY_HUB_LICENSE_KEY",
                self.perry_hub_license_key.to_string(),
            ),
            ("PACKAGES_DIR", p(&self.packages_dir)),
            ("UPLOADS_DIR", p(&self.uploads_dir)),
            ("UPLOAD_SECRET", self.upload_secret.to_string()),
            (
                "PLATFORMS",
                self.platforms
                    .iter()
                    .map(|p| p.hub_name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("WORKERS", self.workers.to_string()),
            ("MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            ("HUB_TIMEOUT_SECS", self.hub_timeout_secs.to_string()),
            ("SUBMIT_MAX_ATTEMPTS", self.submit_max_attempts.to_string()),
            ("BUILD_TIMEOUT_SECS", self.build_timeout_secs.to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            ("RETRY_BASE_SECS", self.retry_base_secs.to_string()),
            ("RETRY_MAX_SECS", self.retry_max_secs.to_string()),
            ("READ_TIMEOUT_SECS", self.read_timeout_secs.to_string()),
        ]
    }

    /// Every secret value in use (non-empty), for log scrubbing tests and
    /// defensive checks.
    pub fn secrets(&self) -> Vec<&str> {
        [
            &self.db_pass,
            &self.perry_hub_license_key,
            &self.upload_secret,
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(Secret::expose)
        .collect()
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Result<T, String> {
    match v.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err("expected a positive whole number".to_string()),
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
        let default = KEYS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| *d)
            .unwrap_or("");
        (default.to_string(), "default".to_string())
    }

    fn invalid(&self, key: &str, value: &str, why: &str) -> ConfigError {
        let (_, from) = self.get(key);
        let shown = if SECRET_KEYS.contains(&key) {
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

    fn parse_opt<T>(
        &self,
        key: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let (v, _) = self.get(key);
        if v.is_empty() {
            return Ok(None);
        }
        f(&v).map(Some).map_err(|why| self.invalid(key, &v, &why))
    }

    fn path(&self, key: &str) -> Result<PathBuf, ConfigError> {
        self.parse(key, |v| {
            if v.is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(PathBuf::from(v))
            }
        })
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
    fn defaults_match_the_spec() {
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
