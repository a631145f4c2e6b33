//! One error type for everything the gateway refuses or fails at, and the one function that
//! renders it: an HTTP status plus a JSON-RPC error body that keeps the request's id.

use crate::auth::AuthError;
use crate::config::Snapshot;
use crate::limits::Refusal;
use crate::mcp::jsonrpc;
use serde_json::value::RawValue;

/// JSON-RPC code of limit refusals (implementation-defined server error range).
pub const LIMITED: i64 = -32029;
/// JSON-RPC code of authentication and scope refusals.
pub const UNAUTHORIZED: i64 = -32001;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A refusal at the HTTP layer (bad headers, size, path, session). The body is a JSON-RPC
    /// error without an id, as the transport specification allows.
    #[error("{message}")]
    Http {
        status: u16,
        code: i64,
        message: String,
    },
    /// A limit refused the call: HTTP 429 (or 503 for an upstream's concurrency cap) with
    /// `Retry-After` and the rate-limit headers, and the delay in the JSON-RPC error's data.
    #[error("{message}")]
    Limited {
        status: u16,
        id: Box<RawValue>,
        message: String,
        retry_after_secs: u64,
        /// `RateLimit-Policy` and `RateLimit` values, when a bucket refused.
        policy: Option<(String, String)>,
    },
    /// Authentication (401) or scope (403) refusals, with their `WWW-Authenticate` challenge.
    #[error("{message}")]
    Challenge {
        status: u16,
        id: Option<Box<RawValue>>,
        code: i64,
        message: String,
        challenge: String,
    },
    /// A JSON-RPC error answering a request we could read.
    #[error("{message}")]
    Rpc {
        status: u16,
        id: Option<Box<RawValue>>,
        code: i64,
        message: String,
    },
}

impl GatewayError {
    pub fn http(status: u16, message: impl Into<String>) -> Self {
        Self::Http {
            status,
            code: jsonrpc::INVALID_REQUEST,
            message: message.into(),
        }
    }

    /// An error for request `id`, delivered with HTTP 200 like any JSON-RPC response.
    pub fn rpc(id: &RawValue, code: i64, message: impl Into<String>) -> Self {
        Self::Rpc {
            status: 200,
            id: Some(id.to_owned()),
            code,
            message: message.into(),
        }
    }

    /// 401: no valid token. The challenge points at the protected resource metadata.
    pub fn unauthorized(snap: &Snapshot, e: AuthError) -> Self {
        let mut challenge = format!(
            "Bearer resource_metadata=\"{}\"",
            snap.resource_metadata_url()
        );
        if e != AuthError::Missing {
            challenge.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{e}\""
            ));
        }
        if let Some(scopes) = snap.scopes_supported().filter(|s| !s.is_empty()) {
            challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
        }
        Self::Challenge {
            status: 401,
            id: None,
            code: UNAUTHORIZED,
            message: format!(
                "Unauthorized: {e}; authenticate with the authorization server named in the resource metadata"
            ),
            challenge,
        }
    }

    /// 403: the caller's scopes do not reach what it asked for (step-up).
    pub fn insufficient_scope(
        snap: &Snapshot,
        id: &RawValue,
        what: &str,
        scopes: &[String],
    ) -> Self {
        Self::Challenge {
            status: 403,
            id: Some(id.to_owned()),
            code: UNAUTHORIZED,
            message: format!(
                "Forbidden: {what} needs one of the scopes [{}]",
                scopes.join(" ")
            ),
            challenge: format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
                scopes.join(" "),
                snap.resource_metadata_url()
            ),
        }
    }

    /// A refusal by a rate-limit bucket.
    pub fn rate_limited(id: &RawValue, refusal: &Refusal) -> Self {
        let secs = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let name = refusal.scope.as_str();
        Self::Limited {
            status: 429,
            id: id.to_owned(),
            message: format!("Rate limit exceeded ({name} limit); retry in {secs}s"),
            retry_after_secs: secs,
            policy: Some((
                refusal.rate.policy(name),
                format!("\"{name}\";r=0;t={secs}"),
            )),
        }
    }

    /// A refusal because an upstream already has `max` calls in flight.
    pub fn upstream_busy(id: &RawValue, route: &str, max: u32) -> Self {
        Self::Limited {
            status: 503,
            id: id.to_owned(),
            message: format!(
                "upstream `{route}` is at its concurrency limit ({max} calls in flight); retry shortly"
            ),
            retry_after_secs: 1,
            policy: None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Http { status, .. }
            | Self::Rpc { status, .. }
            | Self::Limited { status, .. }
            | Self::Challenge { status, .. } => *status,
        }
    }

    /// Headers that go with the answer.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Limited {
                retry_after_secs,
                policy,
                ..
            } => {
                let mut h = vec![("retry-after", retry_after_secs.to_string())];
                if let Some((p, r)) = policy {
                    h.push(("ratelimit-policy", p.clone()));
                    h.push(("ratelimit", r.clone()));
                }
                h
            }
            Self::Challenge { challenge, .. } => vec![("www-authenticate", challenge.clone())],
            _ => Vec::new(),
        }
    }

    /// The response body.
    pub fn body(&self) -> Vec<u8> {
        match self {
            Self::Http { code, message, .. } => jsonrpc::failure(None, *code, message),
            Self::Rpc {
                id, code, message, ..
            }
            | Self::Challenge {
                id, code, message, ..
            } => jsonrpc::failure(id.as_deref(), *code, message),
            Self::Limited {
                id,
                message,
                retry_after_secs,
                ..
            } => serde_json::to_vec(&serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": LIMITED,
                    "message": message,
                    "data": {"retryAfterSeconds": retry_after_secs},
                },
            }))
            .unwrap_or_default(),
        }
    }
}

impl From<jsonrpc::Invalid> for GatewayError {
    fn from(e: jsonrpc::Invalid) -> Self {
        Self::Http {
            status: 400,
            code: e.code,
            message: e.message.into(),
        }
    }
}
