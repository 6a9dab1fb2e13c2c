//! The routing table, the request context handlers see, and replies.
//! Errors become JSON error bodies here, in one place.

use crate::app::App;
use crate::error::ApiError;
use crate::routes;
use serde::Serialize;

/// What a handler gets: the request (headers, body reader), decoded path
/// parameters, and the raw query string.
pub struct Ctx<'a> {
    pub req: &'a mut tiny_http::Request,
    pub params: Vec<String>,
    pub query: &'a str,
}

impl Ctx<'_> {
    /// A header's value (first occurrence), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

/// A response ready to send.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).expect("JSON values serialize");
        Reply {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// The one place an [`ApiError`] becomes a response.
    pub fn error(e: &ApiError) -> Reply {
        let mut r = Reply::json(e.status, &e.body());
        if let Some(secs) = e.retry_after {
            r.headers.push(("Retry-After", secs.to_string()));
        }
        r
    }

    pub fn into_response(self) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let mut resp = tiny_http::Response::from_data(self.body).with_status_code(self.status);
        let mut add = |k: &str, v: &str| {
            if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        };
        add("Content-Type", self.content_type);
        for (k, v) in &self.headers {
            add(k, v);
        }
        resp
    }
}

pub type Handler = fn(&App, &mut Ctx<'_>) -> Result<Reply, ApiError>;

/// One route: method, pattern (`:x` matches one non-empty segment), name
/// (for logs and metrics), handler.
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub name: &'static str,
    pub handler: Handler,
}

pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        pattern: "/health",
        name: "health",
        handler: routes::health::get,
    },
    Route {
        method: "GET",
        pattern: "/metrics",
        name: "metrics",
        handler: routes::metrics::get,
    },
    Route {
        method: "POST",
        pattern: "/upload",
        name: "upload",
        handler: routes::upload::post,
    },
    Route {
        method: "POST",
        pattern: "/artifact/:callbackId",
        name: "artifact",
        handler: routes::artifact::post,
    },
    Route {
        method: "GET",
        pattern: "/status/:name/:version",
        name: "status",
        handler: routes::status::get,
    },
];

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

/// Routes a request: `(route name, reply)`. Unknown path 404; known path
/// with another method 405 (with `Allow`).
pub fn dispatch(
    app: &App,
    req: &mut tiny_http::Request,
    method: &str,
    path: &str,
    query: &str,
) -> (&'static str, Reply) {
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        let Some(raw) = match_pattern(route.pattern, path) else {
            continue;
        };
        let method_ok = route.method == method || (route.method == "GET" && method == "HEAD");
        if !method_ok {
            allowed.push(route.method);
            continue;
        }
        let params: Result<Vec<String>, ApiError> = raw
            .iter()
            .map(|r| crate::validate::path_decode(r, "a path segment"))
            .collect();
        let result = params.and_then(|params| {
            let mut ctx = Ctx { req, params, query };
            (route.handler)(app, &mut ctx)
        });
        return (route.name, result.unwrap_or_else(|e| Reply::error(&e)));
    }
    if allowed.is_empty() {
        let e = ApiError::not_found(format!("no route for {}", crate::validate::printable(path)));
        ("unknown", Reply::error(&e))
    } else {
        let e = ApiError::method_not_allowed(method, &crate::validate::printable(path));
        let mut r = Reply::error(&e);
        r.headers.push(("Allow", allowed.join(", ")));
        ("method_not_allowed", r)
    }
}

/// The request target for the access log: query values of `token` (and
/// anything that looks like a secret) replaced, so no secret is logged.
pub fn loggable_target(path: &str, query: &str) -> String {
    if query.is_empty() {
        return log_safe(path);
    }
    let redacted: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=REDACTED"),
            _ => kv.to_string(),
        })
        .collect();
    log_safe(&format!("{path}?{}", redacted.join("&")))
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
        assert_eq!(loggable_target("/x\r\nFORGED", ""), "/x\\x0d\\x0aFORGED");
        assert_eq!(log_safe("G\u{1b}[2J"), "G\\x1b[2J");
    }

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(
            loggable_target("/artifact/3", "token=abc&x=1"),
            "/artifact/3?token=REDACTED&x=1"
        );
        assert_eq!(
            loggable_target("/upload", "name=a&%74oken=s"),
            "/upload?name=a&%74oken=REDACTED"
        );
        assert_eq!(loggable_target("/health", ""), "/health");
    }
}
