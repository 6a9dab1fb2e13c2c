//! Matching a request to a route of the table it is given, 404/405, and
//! the request target as it may be logged (no secrets, no control
//! characters).

use super::request::{Reply, Request};
use crate::app::App;
use crate::error::ApiError;

/// A handler: parses and authorizes its request, calls the domain module
/// that does the work, and answers.
pub type Handler = fn(&App, &mut Request<'_>) -> Result<Reply, ApiError>;

/// One route: method, pattern (`:x` matches one non-empty segment), name
/// (for logs and metrics), handler.
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub name: &'static str,
    pub handler: Handler,
}

/// Matches `path` against `pattern`; the raw (still encoded) parameters.
fn match_pattern<'p>(pattern: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    let mut params = Vec::new();
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with(':') => {
                if s.is_empty() {
                    return None;
                }
                params.push(s);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Routes a request through `routes`: `(route name, reply)`. Unknown path
/// 404; known path with another method 405 (with `Allow`).
pub(super) fn route(
    app: &App,
    routes: &[Route],
    req: &mut tiny_http::Request,
    method: &str,
    path: &str,
    query: &str,
) -> (&'static str, Reply) {
    let mut allowed: Vec<&str> = Vec::new();
    for route in routes {
        let Some(raw) = match_pattern(route.pattern, path) else {
            continue;
        };
        let method_ok = route.method == method || (route.method == "GET" && method == "HEAD");
        if !method_ok {
            allowed.push(route.method);
            continue;
        }
        // A body needs its framing: bytes after a head with neither
        // Content-Length nor chunked coding are not a body (RFC 9112 6.3);
        // refuse instead of reading them as one, and close.
        if matches!(method, "POST" | "PUT" | "PATCH") && !framed(req) {
            req.close_connection();
            let e = ApiError::new(
                411,
                "LENGTH_REQUIRED",
                "a request body needs Content-Length or Transfer-Encoding: chunked",
            );
            return (route.name, Reply::error(&e));
        }
        let params: Result<Vec<String>, ApiError> = raw
            .iter()
            .map(|r| crate::validate::path_decode(r, "a path segment"))
            .collect();
        let result = params.and_then(|params| {
            let mut request = Request::new(req, params, query);
            (route.handler)(app, &mut request)
        });
        return (route.name, result.unwrap_or_else(|e| Reply::error(&e)));
    }
    if allowed.is_empty() {
        let e = ApiError::not_found(format!("no route for {}", crate::validate::printable(path)));
        ("unknown", Reply::error(&e))
    } else {
        let e = ApiError::method_not_allowed(method, &crate::validate::printable(path));
        let r = Reply::error(&e).with_header("Allow", allowed.join(", "));
        ("method_not_allowed", r)
    }
}

/// The request target for the access log, with no secret in it: the value
/// of every query parameter whose name looks like a secret's (`token`,
/// `secret`, `key`, `password`, `pass`) or whose value, decoded or not, is
/// one of `secrets` (the configured ones, [`crate::config::Config::secrets`])
/// is replaced by `REDACTED`. Parameters are split at `&` and at `;` (which
/// some clients use as a separator).
pub fn loggable_target(path: &str, query: &str, secrets: &[&str]) -> String {
    if query.is_empty() {
        return log_safe(path);
    }
    let mut out = String::with_capacity(path.len() + 1 + query.len());
    out.push_str(path);
    out.push('?');
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let kv = &rest[..end];
        match kv.split_once('=') {
            Some((k, v)) if is_secret_param(k) || is_secret_value(v, secrets) => {
                out.push_str(k);
                out.push_str("=REDACTED");
            }
            None if is_secret_value(kv, secrets) => out.push_str("REDACTED"),
            _ => out.push_str(kv),
        }
        match rest[end..].chars().next() {
            Some(sep) => {
                out.push(sep);
                rest = &rest[end + 1..];
            }
            None => break,
        }
    }
    log_safe(&out)
}

/// Is `raw` (as sent, or URL-decoded) one of `secrets`?
fn is_secret_value(raw: &str, secrets: &[&str]) -> bool {
    if raw.is_empty() || secrets.is_empty() {
        return false;
    }
    let decoded = crate::validate::url_decode(raw, "").unwrap_or_default();
    secrets
        .iter()
        .any(|s| !s.is_empty() && (*s == raw || *s == decoded))
}

/// Escapes control characters (`\x1b`, CR, LF …) so that a request cannot
/// forge or garble access-log lines.
pub fn log_safe(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn is_secret_param(k: &str) -> bool {
    let k = crate::validate::url_decode(k, "")
        .unwrap_or_default()
        .to_ascii_lowercase();
    ["token", "secret", "key", "password", "pass"]
        .iter()
        .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(match_pattern("/health", "/health"), Some(vec![]));
        assert_eq!(match_pattern("/health", "/health/"), None);
        assert_eq!(
            match_pattern("/status/:n/:v", "/status/a/1.0"),
            Some(vec!["a", "1.0"])
        );
        assert_eq!(match_pattern("/status/:n/:v", "/status/a/"), None);
        assert_eq!(match_pattern("/status/:n/:v", "/status/a/b/c"), None);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            loggable_target("/x\r\nFORGED", "", &[]),
            "/x\\x0d\\x0aFORGED"
        );
        assert_eq!(log_safe("G\u{1b}[2J"), "G\\x1b[2J");
    }

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            loggable_target("/artifact/3", "token=abc&x=1", &[]),
            "/artifact/3?token=REDACTED&x=1"
        );
        assert_eq!(
            loggable_target("/upload", "name=a&%74oken=s", &[]),
            "/upload?name=a&%74oken=REDACTED"
        );
        assert_eq!(loggable_target("/health", "", &[]), "/health");
        // After `;` too (issue #11 item 21).
        assert_eq!(
            loggable_target("/upload", "version=1.0.0;token=abc;x=2&y=3", &[]),
            "/upload?version=1.0.0;token=REDACTED;x=2&y=3"
        );
        // A configured secret under any name, or no name, encoded or not.
        let secrets = ["s3cret", "other"];
        assert_eq!(
            loggable_target(
                "/upload",
                "auth=s3cret&v=%733cret&s3cret&n=s3cretX",
                &secrets
            ),
            "/upload?auth=REDACTED&v=REDACTED&REDACTED&n=s3cretX"
        );
    }
}

/// The origin form of a request target (RFC 9112 3.2): an absolute-form
/// target such as `http://host/health?x` becomes `/health?x`.
pub(super) fn origin_form(target: &str) -> std::borrow::Cow<'_, str> {
    for scheme in ["http://", "https://"] {
        let Some(head) = target.get(..scheme.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(scheme) {
            continue;
        }
        let rest = &target[scheme.len()..];
        return match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => rest[i..].into(),
            Some(i) => format!("/{}", &rest[i..]).into(),
            None => "/".into(),
        };
    }
    target.into()
}

#[cfg(test)]
mod origin_form_tests {
    use super::origin_form;

    #[test]
    fn absolute_form_targets_become_origin_form() {
        assert_eq!(origin_form("/health"), "/health");
        assert_eq!(origin_form("http://h:1/health?a=1"), "/health?a=1");
        assert_eq!(origin_form("HTTPS://h"), "/");
        assert_eq!(origin_form("http://h?x=1"), "/?x=1");
    }
}

/// Does the request frame a body (Content-Length or Transfer-Encoding)?
fn framed(req: &tiny_http::Request) -> bool {
    req.headers()
        .iter()
        .any(|h| h.field.equiv("Content-Length") || h.field.equiv("Transfer-Encoding"))
}
