//! The per-request context: the configuration a request started with, and the record of what
//! happened to it, which the `logging` hook turns into metrics.

use crate::audit::Slot;
use crate::config::Snapshot;
use crate::policy::Caller;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Ctx {
    pub snapshot: Arc<Snapshot>,
    pub record: Record,
}

/// What became of one request. Labels are bounded: `method` is a protocol method or `other`,
/// `route` an index into the snapshot, `tool` set only for tools the route's config names.
pub struct Record {
    pub started: Instant,
    pub method: &'static str,
    pub route: Option<usize>,
    pub tool: Option<String>,
    pub outcome: Option<Outcome>,
    pub upstream_time: Option<Duration>,
    /// For the audit record: who, which session, which request, what was called.
    pub caller: Option<Arc<Caller>>,
    pub session: Option<u128>,
    pub request_id: Option<String>,
    /// The exposed tool or prompt name, or resource URI, as the client sent it.
    pub target: Option<String>,
    /// The body of an audited call (its arguments are shaped off the data path).
    pub body: Option<Bytes>,
    /// Why the gateway refused the request, if it did.
    pub reason: Option<String>,
    pub upstream_status: Option<u16>,
    /// The audit queue place reserved for this request.
    pub slot: Option<Slot>,
}

impl Record {
    /// Proxied calls are always recorded, and so is every refusal.
    pub fn audited(&self) -> bool {
        matches!(self.method, "tools/call" | "resources/read" | "prompts/get")
            || self.reason.is_some()
    }
}

impl Default for Record {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            method: "-",
            route: None,
            tool: None,
            outcome: None,
            upstream_time: None,
            caller: None,
            session: None,
            request_id: None,
            target: None,
            body: None,
            reason: None,
            upstream_status: None,
            slot: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The tool ran and reported `isError: true`.
    ToolError,
    /// The upstream answered with a JSON-RPC error.
    Error,
    /// The upstream could not be reached or answered garbage.
    UpstreamError,
    Timeout,
    /// The client left before the answer.
    Cancelled,
    /// The gateway refused the request (bad input, unknown name, session).
    Refused,
    RateLimited,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::Refused => "refused",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

/// The metric label for a protocol method: known methods by name, anything else `other`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/roots/list_changed",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}
