//! Writing answers to the client: whole JSON bodies, empty statuses, and SSE streams.

use crate::error::GatewayError;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub type Headers<'h> = &'h [(&'static str, &'h str)];

fn header(
    status: u16,
    content_type: Option<&str>,
    extra: Headers<'_>,
) -> pingora::Result<Box<ResponseHeader>> {
    let mut h = ResponseHeader::build(status, Some(4 + extra.len()))?;
    if let Some(ct) = content_type {
        h.insert_header("content-type", ct)?;
    }
    for (k, v) in extra {
        h.insert_header(*k, *v)?;
    }
    Ok(Box::new(h))
}

/// A complete `application/json` answer.
pub async fn json(
    s: &mut Session,
    status: u16,
    body: Vec<u8>,
    extra: Headers<'_>,
) -> pingora::Result<()> {
    let mut h = header(status, Some("application/json"), extra)?;
    h.insert_header("content-length", body.len())?;
    s.write_response_header(h, false).await?;
    s.write_response_body(Some(Bytes::from(body)), true).await
}

/// A status with no body (202 for notifications, 200 for DELETE, 405 …).
pub async fn empty(s: &mut Session, status: u16, extra: Headers<'_>) -> pingora::Result<()> {
    let mut h = header(status, None, extra)?;
    h.insert_header("content-length", "0")?;
    s.write_response_header(h, true).await
}

/// The rendering of every refusal and failure.
pub async fn error(s: &mut Session, e: &GatewayError) -> pingora::Result<()> {
    let owned = e.headers();
    let headers: Vec<(&'static str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    json(s, e.status(), e.body(), &headers).await
}

/// Starts a `text/event-stream` answer; events follow with `Session::write_response_body`.
pub async fn sse_start(s: &mut Session, extra: Headers<'_>) -> pingora::Result<()> {
    let mut h = header(200, Some("text/event-stream"), extra)?;
    h.insert_header("cache-control", "no-cache")?;
    s.write_response_header(h, false).await
}
