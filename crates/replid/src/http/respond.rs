//! Response builders shared by API handlers and pages: a document's headers, a sheet download.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Documents carry their print stylesheet inline and no script.
pub const DOCUMENT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// A downloaded sheet: never cached, never framed, saved under its name.
pub fn sheet_download(name: &str, html: String) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCUMENT_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// No header, or one this does not serve (several ranges, another unit): the whole file.
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// The single byte range a `Range` header asks of a `len`-byte file: `bytes=a-b`, `bytes=a-`,
/// `bytes=-n` (the last n bytes).
pub fn byte_range(header: Option<&str>, len: u64) -> Ranged {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else { return Ranged::Whole };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else { return Ranged::Whole };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(n) if n > 0 && len > 0 => Ranged::Part(len.saturating_sub(n), len - 1),
            _ => Ranged::Unsatisfiable,
        };
    }
    let Ok(start) = a.parse::<u64>() else { return Ranged::Unsatisfiable };
    let end = if b.is_empty() { Ok(len.saturating_sub(1)) } else { b.parse::<u64>() };
    match end {
        Ok(end) if start < len && end >= start => Ranged::Part(start, end.min(len - 1)),
        _ => Ranged::Unsatisfiable,
    }
}

/// A file downloaded under `name`, streamed from disk (memory does not grow with its size),
/// resumable: `Range` answers 206 with `Content-Range`, an unsatisfiable one 416.
pub async fn file_download(
    path: &std::path::Path,
    name: &str,
    content_type: &'static str,
    range: Option<&str>,
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let (status, start, end) = match byte_range(range, len) {
        Ranged::Whole => (StatusCode::OK, 0, len),
        Ranged::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Ranged::Unsatisfiable => {
            let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return resp;
        }
    };
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let stream = futures_util::stream::unfold((file, end - start), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (256 * 1024).min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::{Ranged, byte_range};

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range(None, 10), Ranged::Whole);
        assert_eq!(byte_range(Some("bytes=0-4"), 10), Ranged::Part(0, 4));
        assert_eq!(byte_range(Some("bytes=5-"), 10), Ranged::Part(5, 9));
        assert_eq!(byte_range(Some("bytes=-3"), 10), Ranged::Part(7, 9));
        assert_eq!(byte_range(Some("bytes=8-100"), 10), Ranged::Part(8, 9));
        assert_eq!(byte_range(Some("bytes=10-"), 10), Ranged::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=5-2"), 10), Ranged::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=x-"), 10), Ranged::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=-0"), 10), Ranged::Unsatisfiable);
        assert_eq!(byte_range(Some("bytes=0-1,3-4"), 10), Ranged::Whole, "several ranges: the whole file");
        assert_eq!(byte_range(Some("items=0-1"), 10), Ranged::Whole);
    }
}
