//! HTTP plumbing over Pingora's session, for every door: reading a request header or a bounded
//! body, and writing answers (whole JSON bodies, empty statuses, SSE streams, errors).

use crate::error::{Cause, GatewayError};
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession as Session;

pub type Headers<'h> = &'h [(&'static str, &'h str)];

fn response_header(
    status: u16,
    content_type: Option<&str>,
    extra: Headers<'_>,
) -> pingora::Result<Box<ResponseHeader>> {
    let mut h = ResponseHeader::build_no_case(status, Some(4 + extra.len()))?;
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
    let mut h = response_header(status, Some("application/json"), extra)?;
    h.insert_header("content-length", body.len())?;
    s.write_response_header(h).await?;
    s.write_response_body(Bytes::from(body), true).await
}

/// A status with no body (202 for notifications, 200 for DELETE, 405 …).
pub async fn empty(s: &mut Session, status: u16, extra: Headers<'_>) -> pingora::Result<()> {
    let mut h = response_header(status, None, extra)?;
    h.insert_header("content-length", "0")?;
    s.write_response_header(h).await?;
    s.write_response_body(Bytes::new(), true).await
}

/// The rendering of every refusal and failure.
pub async fn error(s: &mut Session, e: &GatewayError) -> pingora::Result<()> {
    let owned = e.headers();
    let headers: Vec<(&'static str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    json(s, e.status(), e.body(), &headers).await
}

/// Starts a `text/event-stream` answer; events follow with `Session::write_response_body`.
pub async fn sse_start(s: &mut Session, extra: Headers<'_>) -> pingora::Result<()> {
    let mut h = response_header(200, Some("text/event-stream"), extra)?;
    h.insert_header("cache-control", "no-cache")?;
    s.write_response_header(h).await
}

pub fn header<'s>(s: &'s Session, name: &str) -> Option<&'s str> {
    s.req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// Reads the whole body, refusing (413) past `cap` without reading further.
pub async fn read_body(s: &mut Session, cap: usize) -> Result<BytesMut, GatewayError> {
    let declared = header(s, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(Cause::TooLarge(cap).into());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(cap));
    loop {
        match s.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(Cause::TooLarge(cap).into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(Cause::UnreadableBody.into()),
        }
    }
}
