//! One error type for everything the gateway refuses or fails at, by cause. Each cause knows its
//! HTTP status, its JSON-RPC code and what it means for the audit record; `body` renders it the
//! same way for a JSON answer and for the last event of an SSE answer.

use crate::ctx::Outcome;
use crate::limits::Refusal;
use crate::mcp::jsonrpc;
use serde_json::value::RawValue;

/// JSON-RPC code of limit refusals (implementation-defined server error range).
pub const LIMITED: i64 = -32029;
/// JSON-RPC code of authentication, scope and approval refusals.
pub const UNAUTHORIZED: i64 = -32001;
/// Resource not found, in the 2025 revisions (2026-07-28 uses -32602).
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// 2026-07-28: a routing header is missing, repeated, malformed or does not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a client capability it did not declare.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// 2026-07-28: the protocol version in `_meta` is not one this path serves.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A refusal or failure, and the request id it answers (none before the body was read).
#[derive(Debug)]
pub struct GatewayError {
    pub id: Option<Box<RawValue>>,
    pub cause: Cause,
}

#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error("no MCP endpoint at this path; use {0}")]
    NoEndpoint(String),
    #[error("use POST, GET or DELETE")]
    MethodNotAllowed,
    #[error("Forbidden: this Origin may not use the gateway (add it to allowed_origins)")]
    OriginForbidden,
    #[error("Unsupported Media Type: Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Not Acceptable: {0}")]
    NotAcceptable(&'static str),
    #[error("Bad Request: unsupported MCP-Protocol-Version; supported: {0}")]
    UnsupportedVersion(String),
    #[error("Payload Too Large: the request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("Request Header Fields Too Large: the request line and headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    #[error("Bad Request: the request body could not be read")]
    UnreadableBody,
    #[error("Bad Request: HeaderMismatch: {0} does not match the request body")]
    HeaderMismatch(&'static str),
    /// An `Mcp-Param-*` header that does not say what its argument says.
    #[error("Bad Request: HeaderMismatch: {0} does not match the tool's arguments")]
    ParamMismatch(String),
    #[error("Invalid params: `_meta` must carry `{0}`")]
    MissingEnvelope(&'static str),
    #[error("Unsupported protocol version `{requested}`")]
    VersionUnsupported { requested: String },
    #[error("{what}, which needs a client capability this request did not declare")]
    MissingCapability {
        what: String,
        required: serde_json::Value,
    },
    /// A method the stateless revision does not have (or removed).
    #[error("Method not found: `{0}`")]
    UnknownMethod(String),
    /// Not JSON (-32700) or not JSON-RPC (-32600).
    #[error("{message}")]
    Malformed { code: i64, message: &'static str },
    #[error("Service Unavailable: the audit trail is not keeping up; try again shortly")]
    AuditFull,
    #[error(
        "Bad Request: missing Mcp-Session-Id; send initialize first (or use protocol version 2026-07-28 without sessions)"
    )]
    NoSession,
    #[error("Session not found: initialize a new session")]
    SessionNotFound,
    #[error("Bad Request: response to an unknown request id")]
    UnknownResponse,
    #[error("no protected resource metadata: authentication is off (auth.mode: none)")]
    NoMetadata,
    #[error(
        "Unauthorized: {error}; authenticate with the authorization server named in the resource metadata"
    )]
    Unauthenticated { error: String, challenge: String },
    #[error("Forbidden: {what} needs one of the scopes [{}]", scopes.join(" "))]
    InsufficientScope {
        what: String,
        scopes: Vec<String>,
        challenge: String,
    },
    #[error("Method not found: `{0}`")]
    MethodNotFound(String),
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    /// A name the caller may not know of: unknown and hidden look the same.
    #[error("Unknown {what}: `{name}`")]
    Unknown {
        what: &'static str,
        name: String,
        code: i64,
    },
    #[error("{0}")]
    NotApproved(String),
    #[error("Rate limit exceeded ({} limit); retry in {}s", .0.scope.as_str(), retry_secs(.0))]
    RateLimited(Refusal),
    #[error(
        "upstream `{route}` is at its concurrency limit ({max} calls in flight); retry shortly"
    )]
    UpstreamBusy { route: String, max: u32 },
    #[error("upstream `{0}` is unavailable; try again later")]
    UpstreamUnavailable(String),
    #[error("upstream `{route}` did not answer within {secs}s")]
    UpstreamTimeout { route: String, secs: f64 },
    #[error("upstream `{route}` failed (HTTP {status})")]
    UpstreamStatus { route: String, status: u16 },
    #[error("upstream `{0}` sent an invalid answer")]
    UpstreamInvalid(String),
    /// What an upstream asks of the client cannot be relayed to it.
    #[error("{0}")]
    CannotRelay(String),
    #[error("upstream `{route}` sent an answer over {cap} bytes")]
    UpstreamTooLarge { route: String, cap: usize },
}

fn retry_secs(r: &Refusal) -> u64 {
    r.retry_after.as_secs_f64().ceil().max(1.0) as u64
}

impl Cause {
    /// The error for request `id`.
    pub fn to(self, id: &RawValue) -> GatewayError {
        GatewayError {
            id: Some(id.to_owned()),
            cause: self,
        }
    }
}

impl From<Cause> for GatewayError {
    fn from(cause: Cause) -> Self {
        GatewayError { id: None, cause }
    }
}

impl From<jsonrpc::Invalid> for GatewayError {
    fn from(e: jsonrpc::Invalid) -> Self {
        Cause::Malformed {
            code: e.code,
            message: e.message,
        }
        .into()
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl GatewayError {
    /// The same error, answering request `id`.
    pub fn answering(mut self, id: &RawValue) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// The HTTP status. JSON-RPC errors answering a request are 200 like any response; the
    /// transport's own refusals, identity, limits and sessions have statuses of their own.
    pub fn status(&self) -> u16 {
        use Cause::*;
        match &self.cause {
            NoEndpoint(_) | SessionNotFound | NoMetadata => 404,
            MethodNotAllowed => 405,
            OriginForbidden | InsufficientScope { .. } => 403,
            UnsupportedMediaType => 415,
            NotAcceptable(_) => 406,
            TooLarge(_) => 413,
            HeadersTooLarge(_) => 431,
            // Bad params of a request that could be read are answered like any JSON-RPC error.
            Malformed { .. } if self.id.is_some() => 200,
            UnsupportedVersion(_) | UnreadableBody | HeaderMismatch(_) | Malformed { .. } => 400,
            ParamMismatch(_) => 400,
            MissingEnvelope(_) | VersionUnsupported { .. } | MissingCapability { .. } => 400,
            UnknownMethod(_) => 404,
            NoSession | UnknownResponse => 400,
            AuditFull | UpstreamBusy { .. } => 503,
            Unauthenticated { .. } => 401,
            RateLimited(_) => 429,
            MethodNotFound(_) | InvalidParams(_) | Unknown { .. } | NotApproved(_) => 200,
            // Without a request to answer (a GET stream), the gateway's own status says it.
            UpstreamTimeout { .. } if self.id.is_none() => 504,
            UpstreamUnavailable(_)
            | UpstreamStatus { .. }
            | UpstreamInvalid(_)
            | UpstreamTooLarge { .. }
                if self.id.is_none() =>
            {
                502
            }
            UpstreamUnavailable(_)
            | UpstreamTimeout { .. }
            | UpstreamStatus { .. }
            | UpstreamInvalid(_)
            | CannotRelay(_)
            | UpstreamTooLarge { .. } => 200,
        }
    }

    pub fn code(&self) -> i64 {
        use Cause::*;
        match &self.cause {
            Malformed { code, .. } | Unknown { code, .. } => *code,
            Unauthenticated { .. } | InsufficientScope { .. } | NotApproved(_) => UNAUTHORIZED,
            RateLimited(_) | UpstreamBusy { .. } => LIMITED,
            MethodNotFound(_) | UnknownMethod(_) => jsonrpc::METHOD_NOT_FOUND,
            InvalidParams(_) | MissingEnvelope(_) => jsonrpc::INVALID_PARAMS,
            HeaderMismatch(_) | ParamMismatch(_) => HEADER_MISMATCH,
            VersionUnsupported { .. } => UNSUPPORTED_PROTOCOL_VERSION,
            MissingCapability { .. } => MISSING_CLIENT_CAPABILITY,
            UpstreamUnavailable(_)
            | UpstreamTimeout { .. }
            | UpstreamStatus { .. }
            | UpstreamInvalid(_)
            | CannotRelay(_)
            | UpstreamTooLarge { .. } => jsonrpc::INTERNAL_ERROR,
            _ => jsonrpc::INVALID_REQUEST,
        }
    }

    /// What the audit record and the metrics say became of the request.
    pub fn outcome(&self) -> Outcome {
        use Cause::*;
        match &self.cause {
            RateLimited(_) | UpstreamBusy { .. } => Outcome::RateLimited,
            UpstreamTimeout { .. } => Outcome::Timeout,
            UpstreamUnavailable(_)
            | UpstreamStatus { .. }
            | UpstreamInvalid(_)
            | CannotRelay(_)
            | UpstreamTooLarge { .. } => Outcome::UpstreamError,
            // The upstream forgot the session twice: not the gateway's decision either.
            SessionNotFound if self.id.is_some() => Outcome::UpstreamError,
            _ => Outcome::Refused,
        }
    }

    /// Whether this is the gateway's decision (recorded as a refusal with its reason).
    pub fn is_refusal(&self) -> bool {
        matches!(self.outcome(), Outcome::Refused | Outcome::RateLimited)
    }

    /// Headers that go with the answer.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match &self.cause {
            Cause::RateLimited(r) => {
                let secs = retry_secs(r);
                let name = r.scope.as_str();
                vec![
                    ("retry-after", secs.to_string()),
                    ("ratelimit-policy", r.rate.policy(name)),
                    ("ratelimit", format!("\"{name}\";r=0;t={secs}")),
                ]
            }
            Cause::UpstreamBusy { .. } => vec![("retry-after", "1".into())],
            Cause::Unauthenticated { challenge, .. }
            | Cause::InsufficientScope { challenge, .. } => {
                vec![("www-authenticate", challenge.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// The JSON-RPC error body (also the last event of an SSE answer).
    pub fn body(&self) -> Vec<u8> {
        let message = self.cause.to_string();
        let data = match &self.cause {
            Cause::RateLimited(r) => Some(serde_json::json!({"retryAfterSeconds": retry_secs(r)})),
            Cause::UpstreamBusy { .. } => Some(serde_json::json!({"retryAfterSeconds": 1})),
            Cause::MissingCapability { required, .. } => {
                Some(serde_json::json!({"requiredCapabilities": required}))
            }
            Cause::VersionUnsupported { requested } => Some(serde_json::json!({
                "supported": crate::mcp::SUPPORTED_VERSIONS.iter().rev().collect::<Vec<_>>(),
                "requested": requested,
            })),
            Cause::Unknown {
                what: "resource",
                name,
                ..
            } => Some(serde_json::json!({"uri": name})),
            _ => None,
        };
        match data {
            None => jsonrpc::failure(self.id.as_deref(), self.code(), &message),
            Some(data) => serde_json::to_vec(&serde_json::json!({
                "jsonrpc": "2.0",
                "id": self.id,
                "error": {"code": self.code(), "message": message, "data": data},
            }))
            .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Box<RawValue> {
        jsonrpc::to_raw(&7)
    }

    #[test]
    fn each_cause_knows_status_code_and_outcome() {
        let cases: Vec<(GatewayError, u16, i64, Outcome)> = vec![
            (Cause::TooLarge(10).into(), 413, -32600, Outcome::Refused),
            (
                Cause::Unknown {
                    what: "tool",
                    name: "x".into(),
                    code: jsonrpc::INVALID_PARAMS,
                }
                .to(&id()),
                200,
                -32602,
                Outcome::Refused,
            ),
            (
                Cause::UpstreamTimeout {
                    route: "a".into(),
                    secs: 1.0,
                }
                .to(&id()),
                200,
                -32603,
                Outcome::Timeout,
            ),
            (
                Cause::UpstreamTimeout {
                    route: "a".into(),
                    secs: 1.0,
                }
                .into(),
                504,
                -32603,
                Outcome::Timeout,
            ),
            (
                Cause::UpstreamBusy {
                    route: "a".into(),
                    max: 1,
                }
                .to(&id()),
                503,
                LIMITED,
                Outcome::RateLimited,
            ),
        ];
        for (e, status, code, outcome) in cases {
            assert_eq!(
                (e.status(), e.code(), e.outcome()),
                (status, code, outcome),
                "{e}"
            );
            let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!(body["error"]["code"], code);
            assert_eq!(
                body["id"],
                if e.id.is_some() {
                    7.into()
                } else {
                    serde_json::Value::Null
                }
            );
        }
    }
}
