//! Edge cases of the request reader, over an in-memory stream that hands out input in
//! chunks of a chosen size.

use super::*;
use std::time::Duration;

struct Mock {
    input: Vec<u8>,
    pos: usize,
    chunk: usize,
    output: Vec<u8>,
    /// Fail reads with this kind once the input is exhausted (instead of EOF).
    then: Option<io::ErrorKind>,
}

impl Mock {
    fn new(input: &[u8], chunk: usize) -> Mock {
        Mock {
            input: input.to_vec(),
            pos: 0,
            chunk,
            output: Vec::new(),
            then: None,
        }
    }
}

impl Read for Mock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.input[self.pos..];
        if left.is_empty() {
            if let Some(kind) = self.then {
                return Err(kind.into());
            }
        }
        let n = left.len().min(buf.len()).min(self.chunk);
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Mock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn read(input: &[u8]) -> Result<Request, HttpError> {
    read_chunked(input, usize::MAX)
}

fn read_chunked(input: &[u8], chunk: usize) -> Result<Request, HttpError> {
    read_request(&mut Mock::new(input, chunk), &Limits::default(), later())
}

fn post(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /key/release HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn get_and_query() {
    let r = read(b"GET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(
        r,
        Request {
            method: "GET".into(),
            path: "/status".into(),
            body: vec![]
        }
    );
    // HTTP/1.0 without headers, and leading empty lines, are fine.
    assert_eq!(read(b"\r\nGET / HTTP/1.0\r\n\r\n").unwrap().path, "/");
}

#[test]
fn body_in_any_chunking() {
    let body = br#"{"kid":"a/b/c"}"#;
    for chunk in [1, 2, 7, 64, 4096] {
        let r = read_chunked(&post(body), chunk).unwrap();
        assert_eq!(r.body, body, "chunk {chunk}");
        assert_eq!(r.method, "POST");
    }
    // Bytes after Content-Length (a pipelined request) are not part of the body.
    let mut two = post(b"{}");
    two.extend_from_slice(b"GET /status HTTP/1.1\r\n\r\n");
    assert_eq!(read(&two).unwrap().body, b"{}");
}

#[test]
fn malformed_heads() {
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /status\r\n\r\n",
        b"GET /status HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET http://x/status HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"GET /status HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET /status HTTP/1.1\r\n: x\r\n\r\n",
        b"GET /st\x00tus HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        assert!(
            matches!(read(bad), Err(HttpError::BadRequest(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn content_length_rules() {
    for cl in ["abc", "-1", "+5", "1,1", "0x10", "", "1 2"] {
        let req = format!("POST /x HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(
            read(req.as_bytes()),
            Err(HttpError::BadRequest("invalid content-length")),
            "{cl:?}"
        );
    }
    let twice = b"POST /x HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n{}";
    assert_eq!(
        read(twice),
        Err(HttpError::BadRequest("repeated content-length"))
    );
    // Whitespace around the value is allowed; no Content-Length means no body.
    let r = read(b"POST /x HTTP/1.1\r\nContent-Length:  2 \r\n\r\n{}").unwrap();
    assert_eq!(r.body, b"{}");
    assert_eq!(read(b"POST /x HTTP/1.1\r\n\r\n").unwrap().body, b"");
    // Over the limit: refused from the head alone, huge values included.
    let limit = Limits::default().max_body;
    for cl in [
        (limit + 1).to_string(),
        usize::MAX.to_string(),
        "9".repeat(100),
    ] {
        let req = format!("POST /x HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(read(req.as_bytes()), Err(HttpError::PayloadTooLarge));
    }
    let at_limit = vec![b'x'; limit];
    assert_eq!(read(&post(&at_limit)).unwrap().body.len(), limit);
}

#[test]
fn transfer_encoding_refused() {
    let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    assert_eq!(read(chunked), Err(HttpError::LengthRequired));
    let both = b"POST /x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}";
    assert!(matches!(read(both), Err(HttpError::BadRequest(_))));
    assert_eq!(HttpError::LengthRequired.status(), Some(411));
}

#[test]
fn head_limits() {
    let limits = Limits::default();
    let big = format!(
        "GET /status HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(limits.max_head)
    );
    assert_eq!(read(big.as_bytes()), Err(HttpError::HeadTooLarge));
    // Never terminated: refused once over the limit, without waiting for more.
    let endless = format!(
        "GET /status HTTP/1.1\r\nX: {}",
        "a".repeat(3 * limits.max_head)
    );
    let mut m = Mock::new(endless.as_bytes(), 1000);
    assert_eq!(
        read_request(&mut m, &limits, later()),
        Err(HttpError::HeadTooLarge)
    );
    assert!(m.pos < limits.max_head + 2000);
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("H{i}: v\r\n"))
        .collect();
    let req = format!("GET /status HTTP/1.1\r\n{many}\r\n");
    assert_eq!(read(req.as_bytes()), Err(HttpError::HeadTooLarge));
    assert_eq!(HttpError::HeadTooLarge.status(), Some(431));
}

#[test]
fn truncation_and_closing() {
    assert_eq!(read(b""), Err(HttpError::Closed));
    assert_eq!(HttpError::Closed.status(), None);
    assert_eq!(
        read(b"GET /status HTTP/1.1\r\nHost"),
        Err(HttpError::BadRequest("incomplete request"))
    );
    let mut cut = post(br#"{"kid":"a/b/c"}"#);
    cut.truncate(cut.len() - 3);
    assert_eq!(read(&cut), Err(HttpError::BadRequest("truncated body")));
}

#[test]
fn timeouts() {
    let mut m = Mock::new(b"GET /status HTTP/1.1\r\n", 5);
    m.then = Some(io::ErrorKind::WouldBlock);
    assert_eq!(
        read_request(&mut m, &Limits::default(), later()),
        Err(HttpError::Timeout)
    );
    let mut m = Mock::new(b"", 5);
    m.then = Some(io::ErrorKind::TimedOut);
    assert_eq!(
        read_request(&mut m, &Limits::default(), later()),
        Err(HttpError::Timeout)
    );
    let mut m = Mock::new(b"", 5);
    m.then = Some(io::ErrorKind::ConnectionReset);
    let e = read_request(&mut m, &Limits::default(), later()).unwrap_err();
    assert_eq!(e, HttpError::Io(io::ErrorKind::ConnectionReset));
    assert_eq!(e.status(), None);
    // A client that keeps sending but too slowly is cut off at the deadline.
    let mut m = Mock::new(&post(b"{}"), 1);
    assert_eq!(
        read_request(&mut m, &Limits::default(), Instant::now()),
        Err(HttpError::Timeout)
    );
}

#[test]
fn expect_continue() {
    let head = b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let mut input = head.to_vec();
    input.extend_from_slice(b"{}");
    let mut m = Mock::new(&input, head.len());
    let r = read_request(&mut m, &Limits::default(), later()).unwrap();
    assert_eq!(r.body, b"{}");
    assert_eq!(m.output, b"HTTP/1.1 100 Continue\r\n\r\n");
    // Body already here: no interim answer.
    let mut m = Mock::new(&input, usize::MAX);
    read_request(&mut m, &Limits::default(), later()).unwrap();
    assert!(m.output.is_empty());
    // Too large: refused before the client sends the body.
    let big = b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n";
    let mut m = Mock::new(big, usize::MAX);
    assert_eq!(
        read_request(&mut m, &Limits::default(), later()),
        Err(HttpError::PayloadTooLarge)
    );
    assert!(m.output.is_empty());
    let other = b"POST /x HTTP/1.1\r\nExpect: something\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(read(other), Err(HttpError::ExpectationFailed));
}

#[test]
fn response_encoding() {
    let r = Response::error(405, "method not allowed");
    let r = Response {
        allow: Some("POST"),
        ..r
    };
    let text = String::from_utf8(encode_response(&r)).unwrap();
    assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(text.contains("\r\nAllow: POST\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.contains("\r\nCache-Control: no-store\r\n"));
    let body = r#"{"error":"method not allowed"}"#;
    assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
    assert!(text.ends_with(&format!("\r\n\r\n{body}")));
    let busy = String::from_utf8(encode_response(&Response::error(503, "busy"))).unwrap();
    assert!(busy.contains("\r\nRetry-After: 1\r\n"));
    for s in [200, 400, 403, 404, 408, 411, 413, 417, 431, 500, 502] {
        assert_ne!(reason(s), "Unknown", "{s}");
    }
}
