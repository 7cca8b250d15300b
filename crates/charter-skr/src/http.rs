//! A small, strict HTTP/1.1 subset: one request per connection, the head parsed by
//! [`httparse`], `Content-Length` bodies only, every read bounded in size and time.
//!
//! Refused outright: `Transfer-Encoding` (411, or 400 together with `Content-Length`, the
//! request smuggling shape), repeated or non-decimal `Content-Length` (400), targets that are
//! not origin-form `/path` (400), versions other than HTTP/1.0 and HTTP/1.1 (400), `Expect`
//! values other than `100-continue` (417).

use std::io::{self, Read, Write};
use std::time::Instant;

use crate::Limits;

/// Most header lines a request may carry (more: 431).
pub(crate) const MAX_HEADERS: usize = 64;

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The method token, as sent (methods are case-sensitive).
    pub method: String,
    /// The target's path (the query, if any, removed).
    pub path: String,
    /// Exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

/// Why no request could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpError {
    /// Malformed head, bad `Content-Length`, truncated body: 400.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The request did not arrive in time: 408.
    #[error("request timeout")]
    Timeout,
    /// A body without `Content-Length` (chunked): 411.
    #[error("content-length required")]
    LengthRequired,
    /// `Content-Length` over the limit: 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// An `Expect` other than `100-continue`: 417.
    #[error("expectation failed")]
    ExpectationFailed,
    /// The head is over the limit or has too many header lines: 431.
    #[error("request header fields too large")]
    HeadTooLarge,
    /// The peer closed before sending anything: no answer.
    #[error("connection closed")]
    Closed,
    /// The connection failed: no answer.
    #[error("i/o: {0}")]
    Io(io::ErrorKind),
}

impl HttpError {
    /// The status to answer with, or `None` when there is nobody to answer.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            HttpError::BadRequest(_) => Some(400),
            HttpError::Timeout => Some(408),
            HttpError::LengthRequired => Some(411),
            HttpError::PayloadTooLarge => Some(413),
            HttpError::ExpectationFailed => Some(417),
            HttpError::HeadTooLarge => Some(431),
            HttpError::Closed | HttpError::Io(_) => None,
        }
    }
}

/// What the head says about the request.
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    content_length: usize,
    expect_continue: bool,
}

/// Parse the head at the start of `buf`: `Ok(None)` while incomplete, else the head and its
/// length in bytes.
fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::BadRequest("malformed request")),
    };
    if len > limits.max_head {
        return Err(HttpError::HeadTooLarge);
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HttpError::BadRequest("malformed request"));
    };
    if !matches!(req.version, Some(0 | 1)) {
        return Err(HttpError::BadRequest("unsupported http version"));
    }
    if !target.starts_with('/') {
        return Err(HttpError::BadRequest("request target must be a path"));
    }
    let path = target.split('?').next().unwrap_or_default();

    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(HttpError::BadRequest("repeated content-length"));
            }
            content_length = Some(parse_content_length(h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
        } else if h.name.eq_ignore_ascii_case("expect") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(HttpError::ExpectationFailed);
            }
        }
    }
    if transfer_encoding {
        return Err(if content_length.is_some() {
            HttpError::BadRequest("both transfer-encoding and content-length")
        } else {
            HttpError::LengthRequired
        });
    }
    // No Content-Length and no Transfer-Encoding: no body (RFC 9112 section 6.3).
    let content_length = content_length.unwrap_or(0);
    if content_length > limits.max_body {
        return Err(HttpError::PayloadTooLarge);
    }
    let head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        content_length,
        expect_continue,
    };
    Ok(Some((head, len)))
}

/// `1*DIGIT`: no sign, no list. Values past `usize` saturate (and are then over the limit).
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadRequest("invalid content-length"));
    }
    Ok(v.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// One `read`, retried on `Interrupted`; a socket timeout or a passed deadline is
/// [`HttpError::Timeout`].
fn read_some<R: Read>(r: &mut R, dst: &mut [u8], deadline: Instant) -> Result<usize, HttpError> {
    loop {
        if Instant::now() >= deadline {
            return Err(HttpError::Timeout);
        }
        match r.read(dst) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout)
            }
            Err(e) => return Err(HttpError::Io(e.kind())),
        }
    }
}

/// Read one request from `stream`. Answers `Expect: 100-continue` itself; everything else is
/// for the caller. The caller sets the socket's per-operation timeouts; `deadline` bounds
/// the whole request.
pub(crate) fn read_request<S: Read + Write>(
    stream: &mut S,
    limits: &Limits,
    deadline: Instant,
) -> Result<Request, HttpError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head, head_len) = loop {
        if let Some(parsed) = parse_head(&buf, limits)? {
            break parsed;
        }
        if buf.len() > limits.max_head {
            return Err(HttpError::HeadTooLarge);
        }
        let n = read_some(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HttpError::Closed
            } else {
                HttpError::BadRequest("incomplete request")
            });
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };

    let len = head.content_length;
    let early = buf.get(head_len..).unwrap_or_default();
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(early.get(..len).unwrap_or(early));
    if head.expect_continue && body.len() < len {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|()| stream.flush())
            .map_err(|e| HttpError::Io(e.kind()))?;
    }
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        let dst = chunk
            .get_mut(..want)
            .ok_or(HttpError::BadRequest("truncated body"))?;
        let n = read_some(stream, dst, deadline)?;
        if n == 0 {
            return Err(HttpError::BadRequest("truncated body"));
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    Ok(Request {
        method: head.method,
        path: head.path,
        body,
    })
}

/// A response: always JSON, never cached, and the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// Status code.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Response {
    /// `status` with a JSON body.
    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            body: value.to_string().into_bytes(),
            allow: None,
        }
    }

    /// `status` with `{"error": message}`.
    pub(crate) fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }
}

/// The reason phrase of the statuses this server sends.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Serialise `resp` (head and body in one buffer, so one write in the common case).
pub(crate) fn encode_response(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            resp.status,
            reason(resp.status),
            resp.body.len()
        )
        .as_bytes(),
    );
    if let Some(allow) = resp.allow {
        out.extend_from_slice(format!("Allow: {allow}\r\n").as_bytes());
    }
    if resp.status == 503 {
        out.extend_from_slice(b"Retry-After: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&resp.body);
    out
}

/// Write `resp` and flush.
pub(crate) fn write_response<W: Write>(w: &mut W, resp: &Response) -> io::Result<()> {
    w.write_all(&encode_response(resp))?;
    w.flush()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
