//! The immutable runtime view of the configuration. Built only by `compile.rs`, shared through an
//! `ArcSwap`, taken once per request so one request sees one config from start to end.

use super::raw::{Fsync, IdentityMode, ResourceMode, WhenFull};
use crate::limits::Limiter;
use crate::policy::RoutePolicy;
use pingora::upstreams::peer::HttpPeer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The separator between a route's prefix and an upstream name (`catalog__search`).
pub const NAME_SEPARATOR: &str = "__";
/// The separator between a route's prefix and an upstream resource URI (`docs+file:///a`).
/// Prefixes are `[a-z0-9-]+`, so neither separator can occur inside one.
pub const URI_SEPARATOR: char = '+';

#[derive(Debug)]
pub struct Snapshot {
    /// The MCP listener address (port 0 resolved by the server at start).
    pub listen: String,
    /// The admin listener address (/metrics, /healthz, /readyz).
    pub admin_listen: String,
    /// `scheme://host[:port]` of the public URL, the origin browsers send.
    pub public_origin: String,
    /// `{public_url}/mcp`.
    pub mcp_url: String,
    /// Path of the merged endpoint, normally `/mcp`.
    pub mcp_path: String,
    /// The route files' directory, when loaded from disk (watched for changes).
    pub routes_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_upstream_message_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub timeouts: Timeouts,
    /// How long a shared list is kept when its upstream states no `ttlMs`.
    pub catalog_ttl: Duration,
    pub session_keys: Vec<[u8; 32]>,
    pub session_ttl: Duration,
    /// Where instances share ended sessions and used login states (`sessions.store`).
    pub session_store: Option<String>,
    pub server: ServerOptions,
    /// The MCP listener's certificates (`tls:`), read at this load.
    pub tls: Option<std::sync::Arc<crate::tls::ServerCerts>>,
    /// The caller-wide bucket, if configured.
    pub caller_limit: Option<Limiter>,
    /// Per caller: requests that fan out to every upstream.
    pub fan_out_limit: Option<Limiter>,
    /// `redis://…` for buckets shared between instances.
    pub limit_store: Option<String>,
    pub auth: AuthSettings,
    pub audit: AuditSettings,
    pub identity: IdentitySettings,
    pub oauth: Option<OAuthProxy>,
    pub routes: Vec<Route>,
    pub(super) by_prefix: HashMap<String, usize>,
    /// A digest of the files this was compiled from (0 when not loaded from disk).
    pub sources: u64,
    pub(super) by_name: HashMap<String, usize>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub initialize: Duration,
    pub list: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub upstream_keepalive_pool_size: usize,
    pub read_buffer_bytes: usize,
    pub h2c: bool,
    pub upgrade_sock: std::path::PathBuf,
}

/// One upstream MCP server and how the gateway exposes it.
#[derive(Debug)]
pub struct Route {
    /// Position in `Snapshot::routes` (a cheap handle for per-request records).
    pub index: usize,
    pub name: String,
    pub prefix: String,
    pub upstream: Upstream,
    /// Deadline of a proxied call.
    pub timeout: Duration,
    /// Per-caller bucket on this route.
    pub limit: Option<Limiter>,
    /// Per-caller buckets of single tools, by upstream tool name.
    pub tool_limits: HashMap<String, Limiter>,
    /// Calls in flight to the upstream at most.
    pub max_concurrency: Option<u32>,
    pub policy: RoutePolicy,
    /// What the upstream learns about the caller.
    pub identity: IdentityMode,
    /// The route's lists are listed once for every caller (`catalog: shared`).
    pub shared_catalog: bool,
    /// Static headers (credentials) for every upstream request, secrets expanded.
    pub headers: Vec<(String, String)>,
    /// Further headers per caller tenant.
    pub tenant_headers: HashMap<String, Vec<(String, String)>>,
}

/// The audit trail (read at start; changes need a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub queue: usize,
    pub when_full: WhenFull,
    pub hmac_key: Option<Vec<u8>>,
    /// The chain key (the `hmac_key` when not given; present whenever there are sinks).
    pub chain_key: Option<Vec<u8>>,
    pub anchor_records: u64,
    pub anchor_interval: std::time::Duration,
    pub sinks: Vec<SinkSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSettings {
    Jsonl {
        dir: PathBuf,
        max_file_bytes: u64,
        fsync: Fsync,
        anchor: Option<PathBuf>,
    },
    Postgres {
        url: String,
        retention_days: Option<u32>,
    },
}

/// How callers are authenticated.
#[derive(Debug)]
pub enum AuthSettings {
    /// Development: one anonymous caller.
    None,
    Jwt(Box<JwtSettings>),
}

impl AuthSettings {
    /// Without configured `scopes_supported`: the scopes the routes' `access` sections name, so
    /// a client asks for them (a standard IdP refuses a login that asks for no scope it knows).
    pub(super) fn default_scopes(&mut self, routes: &[Route]) {
        let AuthSettings::Jwt(jwt) = self else {
            return;
        };
        if !jwt.scopes_supported.is_empty() {
            return;
        }
        let mut scopes: Vec<String> = routes
            .iter()
            .filter_map(|r| r.policy.access.as_ref())
            .flat_map(|a| a.read.iter().chain(&a.write).chain(&a.destroy).cloned())
            .collect();
        scopes.sort();
        scopes.dedup();
        jwt.scopes_supported = scopes;
    }
}

#[derive(Debug)]
pub struct JwtSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    /// Tokens valid longer than this are refused.
    pub max_lifetime: Duration,
    pub refresh: Duration,
    pub claims: Claims,
    pub scopes_supported: Vec<String>,
}

/// Where verification keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// The IdP's OpenID/OAuth metadata names the JWKS.
    Discover(Upstream),
    Jwks(Upstream),
    Static(jsonwebtoken::jwk::JwkSet),
}

/// Claim names in the IdP's tokens.
#[derive(Debug, Clone)]
pub struct Claims {
    pub subject: String,
    pub groups: String,
    pub scopes: String,
    pub tenant: String,
    pub client_id: String,
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Ed25519 PKCS#8 PEM for minted tokens; none: made at start.
    pub signing_key_pem: Option<String>,
    pub lifetime: Duration,
}

/// The gateway as authorization server in front of an IdP.
#[derive(Debug)]
pub struct OAuthProxy {
    pub profile: String,
    pub issuer: String,
    pub endpoints: IdpEndpoints,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Client credentials in HTTP Basic (else in the form).
    pub basic_auth: bool,
    pub resource: ResourceMode,
    pub resource_value: Option<String>,
    pub audience_parameter: String,
    pub drop_prompt_consent: bool,
    pub scope_map: HashMap<String, String>,
    pub extra_scopes: Vec<String>,
    pub allow_insecure_cimd: bool,
    pub cimd_allowed_hosts: Vec<String>,
}

/// Where the OAuth proxy finds the IdP's authorization and token endpoints.
#[derive(Debug)]
pub enum IdpEndpoints {
    /// Named by the profile.
    Fixed(Arc<Endpoints>),
    /// In the IdP's discovery document (this one), fetched in the background.
    Discovered(Box<Upstream>),
}

#[derive(Debug)]
pub struct Endpoints {
    pub authorize_url: String,
    pub token: Upstream,
}

impl Route {
    /// Whether the configuration names this upstream tool (so it may label metrics).
    pub fn names_tool(&self, tool: &str) -> bool {
        self.tool_limits.contains_key(tool)
    }
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
    /// The URL as configured (for change detection and readiness probes).
    pub url: String,
}

impl Snapshot {
    /// Builds the lookup maps; routes must already be in their final order.
    pub(super) fn indexed(mut self) -> Self {
        for (i, r) in self.routes.iter_mut().enumerate() {
            r.index = i;
        }
        self.by_prefix = self
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), r.index))
            .collect();
        self.by_name = self
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.index))
            .collect();
        self
    }

    /// Takes over the bucket state of `old` wherever a bucket's rate is unchanged, so a reload
    /// does not hand every caller a fresh burst.
    pub fn adopt_limits(&mut self, old: &Snapshot) {
        if let (Some(new), Some(prev)) = (&mut self.caller_limit, &old.caller_limit) {
            new.adopt(prev);
        }
        if let (Some(new), Some(prev)) = (&mut self.fan_out_limit, &old.fan_out_limit) {
            new.adopt(prev);
        }
        for route in &mut self.routes {
            let Some(prev) = old.route(&route.name) else {
                continue;
            };
            if let (Some(new), Some(p)) = (&mut route.limit, &prev.limit) {
                new.adopt(p);
            }
            for (tool, limiter) in &mut route.tool_limits {
                if let Some(p) = prev.tool_limits.get(tool) {
                    limiter.adopt(p);
                }
            }
        }
    }

    /// Every bucket store, for idle eviction.
    pub fn limiters(&self) -> impl Iterator<Item = &Limiter> {
        self.caller_limit
            .iter()
            .chain(self.fan_out_limit.iter())
            .chain(
                self.routes
                    .iter()
                    .flat_map(|r| r.limit.iter().chain(r.tool_limits.values())),
            )
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name).map(|&i| &self.routes[i])
    }

    /// Resolves an exposed tool or prompt name to its route and upstream name. The prefix is
    /// looked up exactly; upstream names may themselves contain `__`.
    /// A name that names no prefixed route belongs to the unprefixed route (`tool_prefix: ""`),
    /// if there is one.
    pub fn resolve_name<'n>(&self, exposed: &'n str) -> Option<(&Route, &'n str)> {
        self.resolve(exposed, exposed.split_once(NAME_SEPARATOR))
    }

    /// Resolves an exposed resource URI (`prefix+uri`, or the unprefixed route's own URI) to its
    /// route and upstream URI.
    pub fn resolve_uri<'u>(&self, exposed: &'u str) -> Option<(&Route, &'u str)> {
        self.resolve(exposed, exposed.split_once(URI_SEPARATOR))
    }

    fn resolve<'n>(
        &self,
        exposed: &'n str,
        split: Option<(&str, &'n str)>,
    ) -> Option<(&Route, &'n str)> {
        let prefixed = split.and_then(|(prefix, rest)| {
            let route = self.by_prefix.get(prefix).filter(|_| !prefix.is_empty())?;
            Some((&self.routes[*route], rest))
        });
        match prefixed {
            Some((route, rest)) => (!rest.is_empty()).then_some((route, rest)),
            None => {
                let route = self.by_prefix.get("").map(|&i| &self.routes[i])?;
                (!exposed.is_empty()).then_some((route, exposed))
            }
        }
    }

    /// Whether `exposed`, the exposed form of an entry of `route`, leads back to `route` (an
    /// unprefixed route's name that looks like another route's is left out of lists).
    pub fn leads_to(&self, exposed: &str, route: &Route, is_uri: bool) -> bool {
        let found = if is_uri {
            self.resolve_uri(exposed)
        } else {
            self.resolve_name(exposed)
        };
        found.is_some_and(|(r, _)| r.index == route.index)
    }

    /// `{origin}/.well-known/oauth-protected-resource{mcp_path}` (RFC 9728, path-suffixed).
    pub fn resource_metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource{}",
            self.public_origin, self.mcp_path
        )
    }

    /// The public URL without a trailing slash: the gateway's issuer as authorization server.
    pub fn public_base(&self) -> String {
        self.mcp_url
            .strip_suffix("/mcp")
            .unwrap_or(&self.mcp_url)
            .to_string()
    }

    /// Scopes to advertise, when callers are authenticated.
    pub fn scopes_supported(&self) -> Option<&[String]> {
        match &self.auth {
            AuthSettings::Jwt(s) => Some(&s.scopes_supported),
            AuthSettings::None => None,
        }
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

/// An upstream (or IdP endpoint) for a URL, its host resolved now: blocking, call off the data path.
pub fn upstream_for(url: &str) -> Result<Upstream, String> {
    super::compile::compile_upstream(url)
}

/// The exposed form of an upstream tool or prompt name, if it is a valid MCP name
/// (at most 64 characters of `[A-Za-z0-9_.-]`).
pub fn expose_name(prefix: &str, upstream_name: &str) -> Option<String> {
    let separator = if prefix.is_empty() {
        ""
    } else {
        NAME_SEPARATOR
    };
    let total = prefix.len() + separator.len() + upstream_name.len();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    (total <= 64 && !upstream_name.is_empty() && upstream_name.chars().all(valid))
        .then(|| format!("{prefix}{separator}{upstream_name}"))
}

/// The exposed form of an upstream resource URI or URI template.
pub fn expose_uri(prefix: &str, upstream_uri: &str) -> String {
    if prefix.is_empty() {
        return upstream_uri.to_string();
    }
    format!("{prefix}{URI_SEPARATOR}{upstream_uri}")
}
