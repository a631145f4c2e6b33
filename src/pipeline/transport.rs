//! The first step: which door a request came through, and the transport rules checked before
//! a body is trusted (Origin, content negotiation, protocol version, the stateless revision's
//! routing headers).

use crate::config::Snapshot;
use crate::ctx::Door;
use crate::error::{Cause, GatewayError};
use crate::http::header;

use crate::mcp;
use pingora::protocols::http::ServerSession as Session;

/// Which door `path` is: the merged endpoint, a visible-or-not route's per-server endpoint, or
/// none of them.
pub fn door(path: &str, snap: &Snapshot) -> Door {
    if path == snap.mcp_path {
        return Door::Merged;
    }
    path.strip_prefix("/servers/")
        .and_then(|p| p.strip_suffix("/mcp"))
        .and_then(|name| snap.route(name))
        .map_or(Door::Other, |r| Door::Server(r.index))
}

/// The request line and headers, past `cap` bytes: 431 (for every door, before anything else).
pub fn check_head_size(s: &Session, cap: usize) -> Result<(), GatewayError> {
    let req = s.req_header();
    let line = req.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri.authority().map_or(0, |a| a.as_str().len())
        + 16;
    let size = req.headers.iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    });
    if size > cap {
        return Err(Cause::HeadersTooLarge(cap).into());
    }
    Ok(())
}

/// A present Origin must be the public URL's or an allowed one (DNS rebinding): 403 otherwise.
pub fn check_origin(s: &Session, snap: &Snapshot) -> Result<(), GatewayError> {
    match s.req_header().headers.get("origin") {
        None => Ok(()),
        Some(o) if o.to_str().is_ok_and(|o| snap.origin_allowed(o)) => Ok(()),
        Some(_) => Err(Cause::OriginForbidden.into()),
    }
}

/// POST must send JSON (415) and accept both JSON and SSE answers (406).
pub fn check_post_headers(s: &Session) -> Result<(), GatewayError> {
    let ct = header(s, "content-type").unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(Cause::UnsupportedMediaType.into());
    }
    // Read in place, no allocation: this runs on every POST.
    let has = |wanted: &str| {
        s.req_header()
            .headers
            .get_all("accept")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .any(|t| t.eq_ignore_ascii_case(wanted) || t == "*/*")
    };
    if !has("application/json") || !has("text/event-stream") {
        return Err(Cause::NotAcceptable(
            "Accept must list both application/json and text/event-stream",
        )
        .into());
    }
    Ok(())
}

/// The `MCP-Protocol-Version` header, if sent; an unknown version is a 400.
pub fn protocol_version(s: &Session) -> Result<Option<String>, GatewayError> {
    match header(s, "mcp-protocol-version") {
        None => Ok(None),
        Some(v) if mcp::is_supported(v) => Ok(Some(v.to_string())),
        Some(_) => Err(Cause::UnsupportedVersion(mcp::SUPPORTED_VERSIONS.join(", ")).into()),
    }
}
