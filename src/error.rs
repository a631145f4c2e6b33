//! One error type for everything the gateway refuses or fails at, and the one function that
//! renders it: an HTTP status plus a JSON-RPC error body that keeps the request's id.

use crate::mcp::jsonrpc;
use serde_json::value::RawValue;

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

    pub fn status(&self) -> u16 {
        match self {
            Self::Http { status, .. } | Self::Rpc { status, .. } => *status,
        }
    }

    /// The response body.
    pub fn body(&self) -> Vec<u8> {
        match self {
            Self::Http { code, message, .. } => jsonrpc::failure(None, *code, message),
            Self::Rpc {
                id, code, message, ..
            } => jsonrpc::failure(id.as_deref(), *code, message),
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
