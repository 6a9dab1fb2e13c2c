//! What a handler sees of a request, and the reply it returns.

use crate::error::ApiError;
use serde::Serialize;
use std::io::Read;
use std::sync::atomic::AtomicBool;

/// A request as handlers see it: method, decoded path parameters, the raw
/// query string, headers and a body reader. Opaque over the HTTP library.
pub struct Request<'a> {
    inner: &'a mut tiny_http::Request,
    params: Vec<String>,
    query: &'a str,
}

impl<'a> Request<'a> {
    pub(super) fn new(
        inner: &'a mut tiny_http::Request,
        params: Vec<String>,
        query: &'a str,
    ) -> Request<'a> {
        Request {
            inner,
            params,
            query,
        }
    }

    /// The `i`-th path parameter of the route's pattern, URL-decoded.
    pub fn param(&self, i: usize) -> &str {
        &self.params[i]
    }

    /// The raw (still encoded) query string, without `?`.
    pub fn query(&self) -> &str {
        self.query
    }

    /// A header's value (first occurrence), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The `Authorization: Bearer` credential, if one is given.
    pub fn bearer(&self) -> Option<&str> {
        // The scheme is case-insensitive (RFC 9110 11.1).
        self.header("Authorization")
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim())
    }

    /// The `Content-Length` the request declares: 413 (before anything is
    /// read) when it exceeds `max`; 400 when it is not a number.
    pub fn check_declared_length(&self, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.header("Content-Length") else {
            return Ok(None);
        };
        let n: u64 = value
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request("Content-Length is not a number"))?;
        if n > max {
            return Err(ApiError::too_large(max));
        }
        Ok(Some(n))
    }

    /// The body, as it arrives.
    pub fn body(&mut self) -> &mut dyn Read {
        self.inner.as_reader()
    }
}

/// A response ready to send.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// The whole body; empty for a streamed reply.
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// The body of a streamed reply ([`Reply::stream`]).
    pub(super) stream: Option<Streamed>,
}

/// The body of a streamed reply, produced over time (a log being followed).
/// The HTTP layer pulls it on the connection's own thread, never on a
/// request worker (`server`).
pub trait BodySource: Send {
    /// The next piece of the body, waiting for it; `None` at the end. While
    /// nothing comes, an empty piece about every second, so that a client
    /// that has left is noticed (and the source dropped) without waiting
    /// for the next real piece. Once `stop` is set (the service is
    /// stopping) the source ends within about a second, after a last piece
    /// if it likes.
    fn next_piece(&mut self, stop: &AtomicBool) -> Option<Vec<u8>>;
}

pub(super) struct Streamed(pub(super) Box<dyn BodySource>);

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Streamed(..)")
    }
}

impl Reply {
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec(value).expect("JSON values serialize");
        Reply {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
            stream: None,
        }
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
            stream: None,
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
            stream: None,
        }
    }

    /// A reply whose body `source` produces over time, sent with chunked
    /// coding as it comes. At most LOG_FOLLOWERS_MAX of them are written at
    /// once per process (past that: 503 with `Retry-After`); each is written
    /// by its connection's own thread, cut off when the client does not take
    /// a piece within the write timeout, and ended when the service stops.
    pub fn stream(status: u16, content_type: &'static str, source: Box<dyn BodySource>) -> Reply {
        Reply {
            status,
            content_type,
            body: Vec::new(),
            headers: Vec::new(),
            stream: Some(Streamed(source)),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The one place an [`ApiError`] becomes a response.
    pub fn error(e: &ApiError) -> Reply {
        let r = Reply::json(e.status, &e.body());
        match e.retry_after {
            Some(secs) => r.with_header("Retry-After", secs.to_string()),
            None => r,
        }
    }

    pub(super) fn into_response(self) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let resp = tiny_http::Response::from_data(self.body).with_status_code(self.status);
        with_headers(resp, self.content_type, &self.headers)
    }

    /// The response of a streamed reply, whose body `body` reads.
    pub(super) fn into_streamed_response<R: Read>(self, body: R) -> tiny_http::Response<R> {
        let resp = tiny_http::Response::new(
            tiny_http::StatusCode(self.status),
            Vec::new(),
            body,
            None,
            None,
        );
        with_headers(resp, self.content_type, &self.headers)
    }
}

fn with_headers<R: Read>(
    mut resp: tiny_http::Response<R>,
    content_type: &str,
    headers: &[(&'static str, String)],
) -> tiny_http::Response<R> {
    let mut add = |k: &str, v: &str| {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    };
    add("Content-Type", content_type);
    for (k, v) in headers {
        add(k, v);
    }
    resp
}
