//! The configuration files exactly as operators write them. Serde only: every struct rejects
//! unknown fields, and nothing here is used at runtime; `compile.rs` turns these into a snapshot.

mod route;
mod tls;

pub use route::*;
pub use tls::*;

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
    /// Where route files may read `${file:…}` secrets: each route only below `{this}/{name}/`
    /// (relative to this file). Unset: route files read no files.
    #[serde(default)]
    pub route_secrets_dir: Option<PathBuf>,
    /// Largest accepted request body in bytes (default 4 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest upstream answer the gateway reads whole (a JSON answer, or one SSE event), in
    /// bytes (default 16 MiB); past it the call ends with an error and the connection is closed.
    #[serde(default = "default_max_upstream_message_bytes")]
    pub max_upstream_message_bytes: usize,
    /// Largest accepted request head (request line and headers) in bytes (default 32 KiB).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Browser origins allowed besides the public URL's own (`Origin` header, DNS rebinding).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub catalog: RawCatalog,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub identity: RawIdentitySettings,
    #[serde(default)]
    pub oauth_proxy: Option<RawOAuthProxy>,
    /// Gateway-wide limits: the per-caller bucket and where buckets live.
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub server: RawServer,
    /// TLS on the MCP listener (unset: plain HTTP, e.g. behind a TLS-terminating balancer).
    #[serde(default)]
    pub tls: Option<RawTls>,
}

fn default_routes_dir() -> PathBuf {
    PathBuf::from("../routes")
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_upstream_message_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_max_header_bytes() -> usize {
    32 * 1024
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

/// The shared catalog: upstream lists kept for every caller of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCatalog {
    /// How long a list is kept when its upstream states no `ttlMs` (a stated one only shortens it).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for RawCatalog {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
        }
    }
}

/// Sealed session ids.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// Base64 32-byte keys (`${env:…}`/`${file:…}` allowed); the first seals, all open (rotation). Empty: a key made at start,
    /// so sessions do not survive a restart and instances cannot share them.
    #[serde(default)]
    pub keys: Vec<String>,
    /// How long a session id stays valid after `initialize`.
    #[serde(default, with = "humantime_serde::option")]
    pub ttl: Option<Duration>,
    /// `redis://…`: what instances must agree on beyond the sealed ids (ended sessions, OAuth
    /// login states already used) is kept there; without it, per instance.
    #[serde(default)]
    pub store: Option<String>,
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
    /// Requests a minute per caller that fan out to every upstream (`initialize`, the merged
    /// lists, `logging/setLevel`); default 6000 a minute, burst 600.
    #[serde(default)]
    pub fan_out: Option<RawRate>,
}

/// The audit trail: where records go and what happens when they cannot keep up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// Records waiting for the sinks at most.
    pub queue: usize,
    /// When the queue is full: `block` new calls until there is room, or `refuse` them.
    pub when_full: WhenFull,
    /// Key of the HMACs that stand for argument values (`${env:…}`/`${file:…}`); absent: a key
    /// made at start (HMACs then compare only within one run).
    pub hmac_key: Option<String>,
    /// Key of the chain (`${file:…}`): each record's chain value is an HMAC under it. Absent: the
    /// `hmac_key`; required when there are sinks.
    pub chain_key: Option<String>,
    /// The chain head is published (anchor file or row) after this many records…
    pub anchor_records: u64,
    /// …or this long after a record, whichever comes first.
    #[serde(with = "humantime_serde")]
    pub anchor_interval: Duration,
    pub sinks: Vec<RawSink>,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            queue: 65_536,
            when_full: WhenFull::Block,
            hmac_key: None,
            chain_key: None,
            anchor_records: 1000,
            anchor_interval: Duration::from_secs(1),
            sinks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    Block,
    Refuse,
}

/// One sink: exactly one of its keys (`- jsonl: {…}` or `- postgres: {…}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    #[serde(default)]
    pub jsonl: Option<RawJsonlSink>,
    #[serde(default)]
    pub postgres: Option<RawPostgresSink>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonlSink {
    /// Directory of the `audit-*.jsonl` files (relative to this file).
    pub dir: PathBuf,
    /// A new file past this size (default 100 MiB) and at each UTC day.
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
    /// `always` (every batch is on disk before the next), `interval` (every second), `never`.
    #[serde(default)]
    pub fsync: Option<Fsync>,
    /// File the chain head is published to (relative to this file); keep it off the audit
    /// directory's storage (or ship it away) so a cut tail is found.
    #[serde(default)]
    pub anchor: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresSink {
    /// A libpq-style connection string or URL (`${env:…}` for the password).
    pub url: String,
    /// Records older than this many days are deleted hourly (absent: kept).
    #[serde(default)]
    pub retention_days: Option<u32>,
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
    /// `mode: none` on a listener that is not loopback serves anyone who can reach it: refused
    /// unless this says so explicitly.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// The IdP's issuer (`iss`); its metadata names the JWKS when `jwks_uri` is absent.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; default: the gateway's MCP URL.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A JWKS file (relative to this file) instead of fetching keys: offline use.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted signature algorithms: any of RS256, PS256, ES256, EdDSA (default: all four).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf` (default 30s).
    #[serde(default, with = "humantime_serde::option")]
    pub leeway: Option<Duration>,
    /// Tokens valid for longer than this (from `iat`, or from now without one) are refused
    /// (default 24h): a stolen long-lived token is a long-lived hole.
    #[serde(default, with = "humantime_serde::option")]
    pub max_token_lifetime: Option<Duration>,
    /// How often keys are fetched again (default 10m); unknown `kid`s also trigger a fetch.
    #[serde(default, with = "humantime_serde::option")]
    pub jwks_refresh: Option<Duration>,
    #[serde(default)]
    pub claims: RawClaims,
    /// Scopes advertised in the protected resource metadata.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

/// Claim names in the IdP's tokens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClaims {
    pub subject: String,
    /// A list of strings (or one string).
    pub groups: String,
    /// A space-separated string or a list (`scp` on Entra ID).
    pub scopes: String,
    pub tenant: String,
    pub client_id: String,
}

impl Default for RawClaims {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            groups: "groups".into(),
            scopes: "scope".into(),
            tenant: "tid".into(),
            client_id: "azp".into(),
        }
    }
}

/// How the gateway presents callers to upstreams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentitySettings {
    /// PEM file of the Ed25519 key that signs minted identity tokens (PKCS#8); absent: a key made
    /// at start (upstreams then refetch the JWKS after a restart).
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Life of a minted token (default 60s).
    #[serde(default, with = "humantime_serde::option")]
    pub token_lifetime: Option<Duration>,
}

/// The gateway as OAuth authorization server in front of the real IdP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthProxy {
    /// A profile file in `conf/oauth-profiles/` (entra, okta, keycloak, auth0, generic).
    pub profile: String,
    /// Values the profile's URLs use (`{tenant}`, `{domain}`, `{issuer}`, …).
    #[serde(default)]
    pub vars: std::collections::BTreeMap<String, String>,
    /// The gateway's client at the IdP.
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Overrides the profile: what to do with the RFC 8707 `resource` parameter.
    #[serde(default)]
    pub resource: Option<ResourceMode>,
    /// The IdP audience or scope the resource maps to (for `audience` and `scope`).
    #[serde(default)]
    pub resource_value: Option<String>,
    /// Scope rewriting, client scope → IdP scope.
    #[serde(default)]
    pub scope_map: std::collections::BTreeMap<String, String>,
    /// Scopes always requested from the IdP besides the client's.
    #[serde(default)]
    pub extra_scopes: Vec<String>,
    /// Accept `http://` client ID metadata documents (development and tests only).
    #[serde(default)]
    pub allow_insecure_cimd: bool,
    /// Hosts (names or IP addresses) whose client ID metadata documents may be fetched although
    /// they resolve to a loopback, private, link-local or multicast address.
    #[serde(default)]
    pub cimd_allowed_hosts: Vec<String>,
}

/// What happens to the `resource` parameter on its way to the IdP.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResourceMode {
    Pass,
    Strip,
    Audience,
    Scope,
}

/// A profile file: how one kind of IdP is spoken to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuthProfile {
    /// Human name, for logs.
    pub name: String,
    /// URLs, with `{var}` placeholders filled from `oauth_proxy.vars`.
    pub issuer: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Without endpoints: read them from the issuer's OpenID Connect discovery document, at
    /// load and every `auth.jwks_refresh`.
    #[serde(default)]
    pub discovery: bool,
    pub resource: ResourceMode,
    /// The parameter name used by `resource: audience` (default `audience`).
    #[serde(default)]
    pub audience_parameter: Option<String>,
    /// Whether `prompt=consent` is removed before the IdP sees it.
    #[serde(default)]
    pub drop_prompt_consent: bool,
    /// Scopes always requested (e.g. `openid`, `offline_access`).
    #[serde(default)]
    pub extra_scopes: Vec<String>,
    /// How the gateway's client authenticates at the token endpoint: `client_secret_post` or
    /// `client_secret_basic`.
    #[serde(default)]
    pub token_auth: Option<String>,
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
    /// Bytes of read buffer each client connection holds below HTTP (Pingora's default is 64 KiB,
    /// most of an idle connection's memory); 0 reads straight into the HTTP parser's buffer.
    pub read_buffer_bytes: usize,
    /// Accept HTTP/2 without TLS by prior knowledge (h2c), for balancers that speak it.
    pub h2c: bool,
    /// The Unix socket a new process (`run --upgrade`) takes the listening sockets from.
    pub upgrade_sock: PathBuf,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            threads: 2,
            grace_period_seconds: 10,
            graceful_shutdown_timeout_seconds: 5,
            upstream_keepalive_pool_size: 128,
            read_buffer_bytes: 0,
            h2c: true,
            upgrade_sock: PathBuf::from("/tmp/mcp-edge-upgrade.sock"),
        }
    }
}
