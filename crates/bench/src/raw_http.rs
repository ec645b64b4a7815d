//! The load generator's fast path: one HTTP/1.1 keep-alive connection that
//! writes a request built once and reads each answer with `httparse` — what
//! wrk does. hyper's client hands every request through a channel to its
//! connection task; at ~100k requests/s on two cores that hop alone made
//! `weir bench` slower than wrk, and a generator must never be the bottleneck.
//! Used for fixed requests (the plain and hello scenarios); the tasks and
//! ingest scenarios, which build each request, go through hyper.

use http::header::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per answer.
const MAX_HEADERS: usize = 64;

/// A request's bytes, built once: `METHOD path HTTP/1.1`, Host, the given
/// headers, Content-Length when there is a body, then the body.
pub fn build_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(http::HeaderName, HeaderValue)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One answer: its status, its `X-Weir-Node`, and whether the server is
/// closing the connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub node: Option<HeaderValue>,
    pub close: bool,
}

pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    head_only: bool,
}

enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs to the end of the connection.
    UntilClose,
}

impl RawConn {
    pub async fn connect(addr: &str, method: &str) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            head_only: method == "HEAD",
        })
    }

    /// Writes `request` and reads its whole answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<RawAnswer, &'static str> {
        self.stream.write_all(request).await.map_err(|_| "closed")?;
        self.buf.clear();
        // The head.
        let (status, node, close, head_len, framing) = loop {
            self.fill().await?;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf).map_err(|_| "bad_response")? {
                httparse::Status::Partial if self.buf.len() > MAX_HEAD => {
                    return Err("bad_response")
                }
                httparse::Status::Partial => continue,
                httparse::Status::Complete(head_len) => {
                    let status = resp.code.unwrap_or(0);
                    let mut node = None;
                    let mut close = resp.version == Some(0);
                    let mut framing = Framing::UntilClose;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or("bad_response")?;
                            framing = Framing::Length(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            if h.value.eq_ignore_ascii_case(b"chunked") {
                                framing = Framing::Chunked;
                            }
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        } else if h.name.eq_ignore_ascii_case("x-weir-node") {
                            node = HeaderValue::from_bytes(h.value).ok();
                        }
                    }
                    // No body, whatever the headers say.
                    if self.head_only || status == 204 || status == 304 || status < 200 {
                        framing = Framing::Length(0);
                    }
                    break (status, node, close, head_len, framing);
                }
            }
        };
        // The body.
        match framing {
            Framing::Length(n) => {
                while self.buf.len() < head_len + n {
                    self.fill().await?;
                }
            }
            Framing::Chunked => {
                let mut at = head_len;
                loop {
                    match httparse::parse_chunk_size(&self.buf[at..]) {
                        Ok(httparse::Status::Complete((used, 0))) => {
                            // The last chunk, then (no trailers) an empty line.
                            while self.buf.len() < at + used + 2 {
                                self.fill().await?;
                            }
                            break;
                        }
                        Ok(httparse::Status::Complete((used, size))) => {
                            let end = at + used + size as usize + 2;
                            while self.buf.len() < end {
                                self.fill().await?;
                            }
                            at = end;
                        }
                        Ok(httparse::Status::Partial) => self.fill().await?,
                        Err(_) => return Err("bad_response"),
                    }
                }
            }
            Framing::UntilClose => {
                while self.fill().await.is_ok() {}
                return Ok(RawAnswer {
                    status,
                    node,
                    close: true,
                });
            }
        }
        Ok(RawAnswer {
            status,
            node,
            close,
        })
    }

    /// Reads more; the end of the stream is an error (`closed`).
    async fn fill(&mut self) -> Result<(), &'static str> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err("closed"),
            Ok(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_once(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            // Two requests on one connection, each answered the same way.
            for _ in 0..2 {
                let _ = s.read(&mut req).await.unwrap();
                s.write_all(answer).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_length_and_chunked_answers_on_one_connection() {
        let req = build_request("GET", "/", "x", &[], b"");
        assert_eq!(req, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let addr =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Weir-Node: api-1\r\n\r\nok")
                .await;
        let mut c = RawConn::connect(&addr, "GET").await.unwrap();
        for _ in 0..2 {
            let a = c.exchange(&req).await.unwrap();
            assert_eq!(a.status, 200);
            assert_eq!(a.node.unwrap(), "api-1");
            assert!(!a.close);
        }
        let addr = serve_once(
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let mut c = RawConn::connect(&addr, "GET").await.unwrap();
        for _ in 0..2 {
            assert_eq!(c.exchange(&req).await.unwrap().status, 503);
        }
    }

    #[test]
    fn a_body_gets_its_length() {
        let req = build_request("POST", "/tasks", "h:1", &[], b"{}");
        assert!(req.ends_with(b"Content-Length: 2\r\n\r\n{}"));
    }
}
