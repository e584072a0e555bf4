//! A request id on every request: taken from `X-Request-Id` when it is a short token, else
//! generated. It is in the request's log span, the response's `X-Request-Id` header, every
//! problem document (`request_id`, set where documents are made: `error.rs`) and, in small
//! print, every French error page — so a DGS can read it to the astreinte and ops find the
//! matching log lines.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A caller's id is kept when it is 1–64 characters of `[A-Za-z0-9._-]`; anything else is
/// replaced, so a log line or page never carries a hostile one.
fn accepted(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then(|| s.to_string())
}

fn generated() -> String {
    let mut bytes = [0u8; 8];
    // Not a secret: a failed read leaves zeros, still a usable (if not unique) id.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// Outermost layer: fixes the request's id (so the trace span sees it), serves the request
/// with it, and writes it back.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req.headers().get(&HEADER).and_then(accepted).unwrap_or_else(generated);
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(HEADER, v);
    }
    let mut resp = CURRENT.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(accepted(&v("abc-123_x.y")).as_deref(), Some("abc-123_x.y"));
        for hostile in ["", "a b", "<script>", "é", &"x".repeat(65), "a\u{7f}"] {
            if let Ok(h) = HeaderValue::from_str(hostile) {
                assert_eq!(accepted(&h), None, "{hostile:?}");
            }
        }
        assert_eq!(generated().len(), 16);
    }
}
