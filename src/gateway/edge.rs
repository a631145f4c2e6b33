//! Transport rules checked before a body is trusted: Origin, content negotiation, protocol
//! version, body size, and the stateless revision's routing headers.

use crate::config::Snapshot;
use crate::error::GatewayError;
use crate::mcp::jsonrpc::{self, Message};
use crate::mcp::{self, STATELESS_VERSION};
use bytes::BytesMut;
use pingora::proxy::Session;

pub fn header<'s>(s: &'s Session, name: &str) -> Option<&'s str> {
    s.req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
}

/// A present Origin must be the public URL's or an allowed one (DNS rebinding): 403 otherwise.
pub fn check_origin(s: &Session, snap: &Snapshot) -> Result<(), GatewayError> {
    match s.req_header().headers.get("origin") {
        None => Ok(()),
        Some(o) if o.to_str().is_ok_and(|o| snap.origin_allowed(o)) => Ok(()),
        Some(_) => Err(GatewayError::http(
            403,
            "Forbidden: this Origin may not use the gateway (add it to allowed_origins)",
        )),
    }
}

/// POST must send JSON (415) and accept both JSON and SSE answers (406).
pub fn check_post_headers(s: &Session) -> Result<(), GatewayError> {
    let ct = header(s, "content-type").unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(GatewayError::http(
            415,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
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
        return Err(GatewayError::http(
            406,
            "Not Acceptable: Accept must list both application/json and text/event-stream",
        ));
    }
    Ok(())
}

/// The `MCP-Protocol-Version` header, if sent; an unknown version is a 400.
pub fn protocol_version(s: &Session) -> Result<Option<String>, GatewayError> {
    match header(s, "mcp-protocol-version") {
        None => Ok(None),
        Some(v) if mcp::is_supported(v) => Ok(Some(v.to_string())),
        Some(_) => Err(GatewayError::http(
            400,
            format!(
                "Bad Request: unsupported MCP-Protocol-Version; supported: {}",
                mcp::SUPPORTED_VERSIONS.join(", ")
            ),
        )),
    }
}

/// Reads the whole body, refusing (413) past `cap` without reading further.
pub async fn read_body(s: &mut Session, cap: usize) -> Result<BytesMut, GatewayError> {
    let too_large = || {
        GatewayError::http(
            413,
            format!("Payload Too Large: the request body exceeds {cap} bytes"),
        )
    };
    let declared = header(s, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(cap));
    loop {
        match s.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => {
                return Err(GatewayError::http(
                    400,
                    "Bad Request: the request body could not be read",
                ));
            }
        }
    }
}

/// The stateless revision routes on `Mcp-Method`/`Mcp-Name`; they must say what the body says.
pub fn check_stateless_headers(
    s: &Session,
    msg: &Message<'_>,
    method: &str,
) -> Result<(), GatewayError> {
    let mismatch = |what: &str| {
        GatewayError::http(
            400,
            format!("Bad Request: HeaderMismatch: {what} does not match the request body"),
        )
    };
    if header(s, "mcp-method") != Some(method) {
        return Err(mismatch("Mcp-Method"));
    }
    let params = jsonrpc::split_params(msg.params)?;
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key
        && header(s, "mcp-name") != jsonrpc::str_param(&params, key).as_deref()
    {
        return Err(mismatch("Mcp-Name"));
    }
    if msg.id.is_some() {
        let meta_version = params
            .get("_meta")
            .and_then(|m| serde_json::from_str::<serde_json::Value>(m.get()).ok())
            .and_then(|m| m.get(mcp::META_PROTOCOL_VERSION).cloned());
        if meta_version.as_ref().and_then(|v| v.as_str()) != Some(STATELESS_VERSION) {
            return Err(mismatch("MCP-Protocol-Version"));
        }
    }
    Ok(())
}
