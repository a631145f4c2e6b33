//! The stateless revision's request contract (2026-07-28): which POSTs belong to it (the body's
//! `_meta` names a protocol version, or the header says 2026-07-28), and the checks its spec and
//! the official clients expect, each with its own code and status: the `_meta` envelope
//! (-32602), the routing headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, with the
//! `=?base64?…?=` form of values that are not plain ASCII: -32020) and the version (-32022).
//! Every error answers the request's id.

use crate::error::{Cause, GatewayError};
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::{META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, STATELESS_VERSION};
use crate::mcp::{headers, params};
use pingora::protocols::http::ServerSession as Session;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Methods the stateless revision removed: answered 404 / -32601 on its path.
pub fn removed(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "logging/setLevel"
            | "resources/subscribe"
            | "resources/unsubscribe"
    )
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", default)]
    version: Option<Value>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", default)]
    capabilities: Option<Value>,
}

/// Whether a message says it is of the stateless revision (its `_meta` or the header), unchecked.
pub fn claims(msg: &Message<'_>, header_version: Option<&str>) -> bool {
    header_version == Some(STATELESS_VERSION)
        || meta_of(msg.params).is_some_and(|m| m.version.is_some())
}

/// The request's `_meta`, as far as the revision's envelope goes (read without splitting
/// `params`: the other members are skipped unparsed).
fn meta_of(params: Option<&RawValue>) -> Option<Meta> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(rename = "_meta", borrow, default)]
        meta: Option<&'a RawValue>,
    }
    let params = params.filter(|p| p.get().starts_with('{'))?;
    let p: Params = serde_json::from_str(params.get()).ok()?;
    serde_json::from_str(p.meta?.get()).ok()
}

/// Whether this POST belongs to the stateless revision, checked as it requires; `Ok(false)`:
/// it is a 2025-era message.
pub fn check(
    s: &Session,
    msg: &Message<'_>,
    kind: Kind,
    header_version: Option<&str>,
) -> Result<bool, GatewayError> {
    let id = msg.id.unwrap_or(RawValue::NULL);
    let meta = meta_of(msg.params);
    let claimed = meta.as_ref().is_some_and(|m| m.version.is_some());
    if !claimed && header_version != Some(STATELESS_VERSION) {
        return Ok(false);
    }
    if kind == Kind::Response {
        return Err(Cause::Malformed {
            code: jsonrpc::INVALID_REQUEST,
            message: "Invalid Request: the 2026-07-28 revision takes no responses from clients",
        }
        .into());
    }
    if kind == Kind::Notification {
        return Ok(true);
    }
    let meta = meta.unwrap_or_default();
    let Some(version) = meta.version.as_ref().and_then(Value::as_str) else {
        return Err(Cause::MissingEnvelope(META_PROTOCOL_VERSION).to(id));
    };
    if !meta.capabilities.as_ref().is_some_and(Value::is_object) {
        return Err(Cause::MissingEnvelope(META_CLIENT_CAPABILITIES).to(id));
    }
    let mismatch = |what: &'static str| Cause::HeaderMismatch(what).to(id);
    if single(s, "mcp-protocol-version")? != Some(version.to_string()) {
        return Err(mismatch("MCP-Protocol-Version"));
    }
    if version != STATELESS_VERSION {
        return Err(Cause::VersionUnsupported {
            requested: version.to_string(),
        }
        .to(id));
    }
    let method = msg.method();
    if single(s, "mcp-method")?.as_deref() != Some(method.as_ref()) {
        return Err(mismatch("Mcp-Method"));
    }
    let name_key = match method.as_ref() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key {
        let params = jsonrpc::split_params(msg.params).ok();
        let named = params.as_ref().and_then(|p| jsonrpc::str_param(p, key));
        if single(s, "mcp-name")? != named {
            return Err(mismatch("Mcp-Name"));
        }
    }
    Ok(true)
}

/// A routing header's value, decoded: absent, once, or an error when repeated, not text, or a
/// malformed `=?base64?…?=` sentinel.
fn single(s: &Session, name: &'static str) -> Result<Option<String>, GatewayError> {
    let mut values = s.req_header().headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || GatewayError::from(Cause::HeaderMismatch(name));
    if values.next().is_some() {
        return Err(bad());
    }
    let text = value.to_str().map_err(|_| bad())?;
    headers::decode(text).map(Some).ok_or_else(bad)
}

/// The `Mcp-Param-*` headers of a `tools/call` against the tool's `x-mcp-header` annotations:
/// each mirrored argument's header present and equal, no header for an absent one (-32020).
pub fn check_params(
    s: &Session,
    annotations: &[params::Annotation],
    arguments: Option<&RawValue>,
    id: &RawValue,
) -> Result<(), GatewayError> {
    if annotations.is_empty() {
        return Ok(());
    }
    let arguments: Value = arguments
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or(Value::Null);
    for annotation in annotations {
        let name = format!("Mcp-Param-{}", annotation.1);
        let mut values = s.req_header().headers.get_all(name.as_str()).iter();
        let header = values.next().map(|v| v.to_str().map_err(|_| ()));
        let repeated = values.next().is_some();
        let header = match header {
            Some(Err(())) => return Err(Cause::ParamMismatch(name).to(id)),
            Some(Ok(v)) => Some(v),
            None => None,
        };
        if repeated || !params::matches(params::argument(&arguments, annotation), header) {
            return Err(Cause::ParamMismatch(name).to(id));
        }
    }
    Ok(())
}
