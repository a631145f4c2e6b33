//! The per-request context, the one carrier every pipeline step reads and writes; the `logging`
//! hook turns it into metrics and an audit record.

use crate::audit::Slot;
use crate::config::Snapshot;
use crate::mcp::session::SessionState;
use crate::policy::Caller;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything one request carries from the first step to the `logging` hook: the configuration
/// it started with, who is calling, what was asked, where it went, and what became of it. Labels
/// are bounded: `method` is a protocol method or `other`, `route` an index into the snapshot,
/// `tool` set only for tools the route's config names.
pub struct Ctx {
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub door: Door,
    pub caller: Option<Arc<Caller>>,
    /// Who is calling, as a bucket key: the subject; without authentication (`auth.mode: none`)
    /// each session is its own caller, and a stateless client is its address.
    pub caller_key: u64,
    pub era: Era,
    /// Protocol version in force for this request.
    pub version: String,
    pub method: &'static str,
    pub request_id: Option<String>,
    pub route: Option<usize>,
    pub tool: Option<String>,
    /// The exposed tool or prompt name, or resource URI, as the client sent it.
    pub target: Option<String>,
    /// The body of an audited call (its arguments are shaped off the data path).
    pub body: Option<Bytes>,
    /// Why the gateway refused the request, if it did.
    pub refused: Option<String>,
    pub outcome: Option<Outcome>,
    pub upstream_time: Option<Duration>,
    pub upstream_status: Option<u16>,
    /// The audit queue place reserved for this request.
    pub slot: Option<Slot>,
}

/// Which door a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Not decided yet, or not an MCP door (metadata, OAuth, unknown paths).
    Other,
    /// `/mcp`: the merged server.
    Merged,
    /// `/servers/{route}/mcp`: one upstream as it is (the route's index).
    Server(usize),
}

/// Which protocol era a request belongs to, and its session if it has one.
#[derive(Debug, Clone, Default)]
pub enum Era {
    /// Not known yet (and never for the per-server door, whose sessions are the upstream's).
    #[default]
    Unknown,
    /// `initialize`: no session yet.
    Opening,
    Session(Arc<SessionState>),
    Stateless,
}

impl Ctx {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            snapshot,
            started: Instant::now(),
            door: Door::Other,
            caller: None,
            caller_key: 0,
            era: Era::Unknown,
            version: String::new(),
            method: "-",
            request_id: None,
            route: None,
            tool: None,
            target: None,
            body: None,
            refused: None,
            outcome: None,
            upstream_time: None,
            upstream_status: None,
            slot: None,
        }
    }

    /// Proxied calls, answers the client gives (approvals, relayed requests), cancellations and
    /// every refusal are recorded.
    pub fn audited(&self) -> bool {
        matches!(
            self.method,
            "tools/call"
                | "resources/read"
                | "prompts/get"
                | "completion/complete"
                | "approval"
                | "response"
                | "notifications/cancelled"
        ) || self.refused.is_some()
    }

    pub fn route_name(&self) -> Option<&str> {
        self.route
            .and_then(|i| self.snapshot.routes.get(i))
            .map(|r| r.name.as_str())
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
