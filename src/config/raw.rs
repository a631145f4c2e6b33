//! The configuration files exactly as operators write them. Serde only: every struct rejects
//! unknown fields, and nothing here is used at runtime; `compile.rs` turns these into a snapshot.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `conf/mcp-edge.yaml`: the gateway itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Address of the MCP listener, e.g. `0.0.0.0:8080`; port 0 picks a free port.
    pub listen: String,
    /// The URL clients use; the MCP endpoint is `{public_url}/mcp`.
    pub public_url: String,
    /// Directory of route files, relative to this file.
    #[serde(default = "default_routes_dir")]
    pub routes_dir: PathBuf,
    /// Largest accepted request body in bytes (default 4 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Browser origins allowed besides the public URL's own (`Origin` header, DNS rebinding).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub auth: RawAuth,
    /// Gateway-wide limits: the per-caller bucket and where buckets live.
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub server: RawServer,
}

fn default_routes_dir() -> PathBuf {
    PathBuf::from("../routes")
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

/// Gateway-wide timeouts; a route's own `upstream.timeout` overrides `call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    /// Initializing one upstream when a client session starts.
    #[serde(with = "humantime_serde")]
    pub initialize: Duration,
    /// Collecting one upstream's list (all pages) for a merged list.
    #[serde(with = "humantime_serde")]
    pub list: Duration,
    /// A proxied call (`tools/call`, `resources/read`, `prompts/get`), start to last byte.
    #[serde(with = "humantime_serde")]
    pub call: Duration,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        Self {
            initialize: Duration::from_secs(10),
            list: Duration::from_secs(10),
            call: Duration::from_secs(60),
        }
    }
}

/// Sealed session ids.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// Base64 32-byte keys; the first seals, all open (rotation). Empty: a key made at start,
    /// so sessions do not survive a restart and instances cannot share them.
    #[serde(default)]
    pub keys: Vec<String>,
    /// How long a session id stays valid after `initialize`.
    #[serde(default, with = "humantime_serde::option")]
    pub ttl: Option<Duration>,
}

/// A token bucket: `per_user_rpm` tokens a minute, at most `burst` at once (default: the rate).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub per_user_rpm: u32,
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Calls a minute per caller across all routes (absent: no caller-wide limit).
    #[serde(default)]
    pub per_user_rpm: Option<u32>,
    #[serde(default)]
    pub burst: Option<u32>,
    /// `redis://host:port/db` to share buckets between instances; absent: local buckets.
    #[serde(default)]
    pub store: Option<String>,
}

/// The admin listener: /metrics, /healthz, /readyz.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Loopback by default; port 0 picks a free port.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9901".into()
}

/// Caller authentication.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `none` (development: one anonymous caller) or `jwt`.
    #[serde(default)]
    pub mode: RawAuthMode,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawAuthMode {
    #[default]
    None,
    Jwt,
}

/// Pingora server options. Pingora's own defaults (1 thread, 300 s grace) do not suit an edge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Worker threads of the MCP listener.
    pub threads: usize,
    /// Seconds between SIGTERM and the start of the final shutdown.
    pub grace_period_seconds: u64,
    /// Seconds the final shutdown may take.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Idle upstream connections kept for reuse.
    pub upstream_keepalive_pool_size: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            threads: 2,
            grace_period_seconds: 10,
            graceful_shutdown_timeout_seconds: 5,
            upstream_keepalive_pool_size: 128,
        }
    }
}

/// `routes/*.yaml`: one upstream MCP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `[a-z0-9-]+`, unique; the default tool prefix.
    pub name: String,
    /// Team that owns the upstream (informational).
    #[serde(default)]
    pub owner: Option<String>,
    pub upstream: RawUpstream,
    /// Prefix of exposed names (`prefix__tool`); default = `name`.
    #[serde(default)]
    pub tool_prefix: Option<String>,
    /// Per-caller limits on this route and on single tools of it.
    #[serde(default)]
    pub limits: RawRouteLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteLimits {
    /// Calls a minute per caller on this route.
    #[serde(default)]
    pub per_user_rpm: Option<u32>,
    #[serde(default)]
    pub burst: Option<u32>,
    /// Per-caller limits of single tools, by the upstream's tool name.
    #[serde(default)]
    pub per_tool: std::collections::BTreeMap<String, RawRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `http://host:port/path` or `https://…` of the upstream's MCP endpoint.
    pub url: String,
    /// Deadline of a proxied call on this route (default: `timeouts.call`).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Calls in flight to this upstream at most (from this instance); excess calls are refused.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}
