//! The immutable runtime view of the configuration. Built only by `compile.rs`, shared through an
//! `ArcSwap`, taken once per request so one request sees one config from start to end.

use pingora::upstreams::peer::HttpPeer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The separator between a route's prefix and an upstream name (`catalog__search`).
pub const NAME_SEPARATOR: &str = "__";
/// The separator between a route's prefix and an upstream resource URI (`docs+file:///a`).
/// Prefixes are `[a-z0-9-]+`, so neither separator can occur inside one.
pub const URI_SEPARATOR: char = '+';

#[derive(Debug)]
pub struct Snapshot {
    /// The MCP listener address (port 0 already resolved by the caller of `compile`).
    pub listen: String,
    /// `scheme://host[:port]` of the public URL, the origin browsers send.
    pub public_origin: String,
    /// `{public_url}/mcp`.
    pub mcp_url: String,
    /// Path of the merged endpoint, normally `/mcp`.
    pub mcp_path: String,
    pub max_body_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub timeouts: Timeouts,
    pub session_keys: Vec<[u8; 32]>,
    pub session_ttl: Duration,
    pub server: ServerOptions,
    pub routes: Vec<Route>,
    by_prefix: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub initialize: Duration,
    pub list: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub upstream_keepalive_pool_size: usize,
}

/// One upstream MCP server and how the gateway exposes it.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub prefix: String,
    pub upstream: Upstream,
    /// Deadline of a proxied call.
    pub timeout: Duration,
}

/// Where an upstream lives, resolved at load time so the hot path does no DNS.
#[derive(Debug)]
pub struct Upstream {
    pub peer: HttpPeer,
    /// `Host` header value (`host[:port]`).
    pub authority: String,
    /// Path and query of the MCP endpoint.
    pub path: String,
    pub addr: SocketAddr,
}

impl Snapshot {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        listen: String,
        public_origin: String,
        mcp_url: String,
        mcp_path: String,
        max_body_bytes: usize,
        allowed_origins: Vec<String>,
        timeouts: Timeouts,
        session_keys: Vec<[u8; 32]>,
        session_ttl: Duration,
        server: ServerOptions,
        routes: Vec<Route>,
    ) -> Self {
        let by_prefix = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.prefix.clone(), i))
            .collect();
        let by_name = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        Self {
            listen,
            public_origin,
            mcp_url,
            mcp_path,
            max_body_bytes,
            allowed_origins,
            timeouts,
            session_keys,
            session_ttl,
            server,
            routes,
            by_prefix,
            by_name,
        }
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name).map(|&i| &self.routes[i])
    }

    /// Resolves an exposed tool or prompt name to its route and upstream name. The prefix is
    /// looked up exactly; upstream names may themselves contain `__`.
    pub fn resolve_name<'n>(&self, exposed: &'n str) -> Option<(&Route, &'n str)> {
        let (prefix, rest) = exposed.split_once(NAME_SEPARATOR)?;
        let route = self.by_prefix.get(prefix).map(|&i| &self.routes[i])?;
        (!rest.is_empty()).then_some((route, rest))
    }

    /// Resolves an exposed resource URI (`prefix+uri`) to its route and upstream URI.
    pub fn resolve_uri<'u>(&self, exposed: &'u str) -> Option<(&Route, &'u str)> {
        let (prefix, rest) = exposed.split_once(URI_SEPARATOR)?;
        let route = self.by_prefix.get(prefix).map(|&i| &self.routes[i])?;
        (!rest.is_empty()).then_some((route, rest))
    }

    /// Whether a browser `Origin` may talk to the gateway.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        origin.eq_ignore_ascii_case(&self.public_origin)
            || self
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The exposed form of an upstream tool or prompt name, if it is a valid MCP name
/// (at most 64 characters of `[A-Za-z0-9_.-]`).
pub fn expose_name(prefix: &str, upstream_name: &str) -> Option<String> {
    let total = prefix.len() + NAME_SEPARATOR.len() + upstream_name.len();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    (total <= 64 && !upstream_name.is_empty() && upstream_name.chars().all(valid))
        .then(|| format!("{prefix}{NAME_SEPARATOR}{upstream_name}"))
}

/// The exposed form of an upstream resource URI or URI template.
pub fn expose_uri(prefix: &str, upstream_uri: &str) -> String {
    format!("{prefix}{URI_SEPARATOR}{upstream_uri}")
}
