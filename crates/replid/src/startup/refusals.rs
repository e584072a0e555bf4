//! hyper answers some requests itself, before any of Repli's code runs: a request target over
//! 64 KiB (414) or a head over its 400 KiB buffer (431) get a bare status line with an empty
//! body. Every connection is wrapped here so that those automatic answers are replaced by the
//! ones replid gives below its own, smaller limits (`http::routes::request_limits`): a problem
//! document under `/api`, the French page elsewhere, with the same security headers.
//!
//! The answers are rendered once at start by the router itself. The wrapper remembers the
//! start of the last request line it read (a line ending in ` HTTP/1.x`) to tell an API call
//! from a page, and swaps hyper's head for the rendered answer when hyper writes it (hyper
//! then closes the connection, and the answer says `connection: close`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

/// How much of a request line is kept to tell an API call from a page.
const PREFIX: usize = 40;

/// The rendered answers, full HTTP/1.1 responses.
#[derive(Debug, Default)]
pub struct Answers {
    api_uri: Vec<u8>,
    web_uri: Vec<u8>,
    api_head: Vec<u8>,
    web_head: Vec<u8>,
}

impl Answers {
    /// Renders, through `router`, the answers to an oversized target and an oversized head, as
    /// an API call and as a page.
    pub async fn render(router: &Router) -> Self {
        let long = "a".repeat(crate::routes::MAX_URI_BYTES + 1);
        let big = "c".repeat(crate::routes::MAX_HEADER_BYTES + 1);
        let api_uri = render_one(router, format!("/api/v1/x?{long}"), None).await;
        let web_uri = render_one(router, format!("/x?{long}"), None).await;
        let api_head = render_one(router, "/api/v1/x".to_owned(), Some(&big)).await;
        let web_head = render_one(router, "/x".to_owned(), Some(&big)).await;
        Self { api_uri, web_uri, api_head, web_head }
    }

    fn pick(&self, status: &[u8], api: bool) -> &[u8] {
        match (status, api) {
            (b"414", true) => &self.api_uri,
            (b"414", false) => &self.web_uri,
            (_, true) => &self.api_head,
            (_, false) => &self.web_head,
        }
    }
}

async fn render_one(router: &Router, target: String, cookie: Option<&str>) -> Vec<u8> {
    let mut req = Request::get(target);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("x={c}"));
    }
    let Ok(req) = req.body(Body::empty()) else { return Vec::new() };
    let Ok(resp) = router.clone().oneshot(req).await;
    serialize(resp).await
}

/// One response as bytes on the wire (`connection: close`, no request id: it is shared).
async fn serialize(resp: Response<Body>) -> Vec<u8> {
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut out =
        format!("HTTP/1.1 {} {}\r\n", parts.status.as_u16(), parts.status.canonical_reason().unwrap_or("Refused"))
            .into_bytes();
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION || name.as_str() == "x-request-id" {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Whether an automatic head written by hyper is one to replace: 414 or 431 with an empty
/// body (replid's own refusals always carry one).
fn automatic(head: &[u8]) -> Option<&[u8]> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    if status != b"414" && status != b"431" {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lower = head[..end].to_ascii_lowercase();
    lower.windows(19).any(|w| w == b"\r\ncontent-length: 0").then_some(status)
}

/// Whether a request line's start (`METHOD /path…`) names the API.
fn request_is_api(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix);
    let path = text.split(' ').nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    crate::routes::is_api_path(path)
}

/// A connection whose automatic refusals are replaced.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    answers: Arc<Answers>,
    /// The start of the line being read, and its last bytes.
    line: Vec<u8>,
    tail: [u8; 10],
    /// The last request line read was for the API.
    api: bool,
    /// An answer being written in place of hyper's head: bytes, and how many are written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, answers: Arc<Answers>) -> Self {
        Self { inner, answers, line: Vec::with_capacity(PREFIX), tail: [0; 10], api: false, pending: None }
    }

    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (part, ended) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], Some(i + 1)),
                None => (data, None),
            };
            let room = PREFIX.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            // Only the line's last 10 bytes matter: shift in at most that many.
            let last = &part[part.len().saturating_sub(10)..];
            self.tail.copy_within(last.len().., 0);
            self.tail[10 - last.len()..].copy_from_slice(last);
            match ended {
                Some(i) => {
                    if self.tail.ends_with(b" HTTP/1.1\r") || self.tail.ends_with(b" HTTP/1.0\r") {
                        self.api = request_is_api(&self.line);
                    }
                    self.line.clear();
                    self.tail = [0; 10];
                    data = &data[i..];
                }
                None => data = &[],
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.observe(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match automatic(buf) {
                Some(status) => {
                    let answer = self.answers.pick(status, self.api).to_vec();
                    tracing::debug!(status = %String::from_utf8_lossy(status), "hyper's bare refusal replaced");
                    self.pending = Some((answer, 0));
                }
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        let this = &mut *self;
        if let Some((answer, written)) = &mut this.pending {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        this.pending = None;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A listener whose connections are [`Guarded`].
#[derive(Debug)]
pub struct GuardedListener<L> {
    inner: L,
    answers: Arc<Answers>,
}

impl<L> GuardedListener<L> {
    pub fn new(inner: L, answers: Arc<Answers>) -> Self {
        Self { inner, answers }
    }
}

impl<L: Listener> Listener for GuardedListener<L> {
    type Io = Guarded<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (Guarded::new(io, self.answers.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_414_and_431_are_replaced() {
        assert_eq!(automatic(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n"), Some(&b"414"[..]));
        assert_eq!(automatic(b"HTTP/1.1 431 X\r\nContent-Length: 0\r\n\r\n"), Some(&b"431"[..]));
        // replid's own refusals carry a body; other statuses pass.
        assert_eq!(automatic(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 120\r\n\r\n{}"), None);
        assert_eq!(automatic(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(automatic(b"HTTP/1.1 414 x\r\ncontent-length: 0"), None);
        assert_eq!(automatic(b"garbage"), None);
    }

    #[test]
    fn the_last_request_line_decides_api_or_page() {
        let mut g = Guarded::new((), Arc::new(Answers::default()));
        g.observe(b"GET /api/v1/crises?");
        g.observe("a".repeat(70_000).as_bytes());
        g.observe(b" HTTP/1.1\r\nhost: x\r\n");
        assert!(g.api);
        // A body line ending like a request line does not count unless it is one.
        g.observe(b"\r\nPOST /crises/x HTTP/1.1\r\n");
        assert!(!g.api);
        g.observe(b"GET /healthz?x HTTP/1.0\r\n");
        assert!(g.api);
        g.observe(b"body text without the ending\r\n");
        assert!(g.api);
        // A request line split across reads, its ending in pieces shorter than the tail.
        for piece in [&b"GET /crises/x?"[..], b"aaaa", b" HTT", b"P/1", b".1\r", b"\n"] {
            g.observe(piece);
        }
        assert!(!g.api);
    }
}
