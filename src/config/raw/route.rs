//! A route file (`routes/*.yaml`) as written: one upstream MCP server, its policy and limits.

use super::*;

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
    /// Groups that see this route (`"*"`: every authenticated caller); empty: nobody.
    #[serde(default)]
    pub visibility: Vec<String>,
    /// Scopes granting each class; absent: every class to whoever sees the route.
    #[serde(default)]
    pub access: Option<RawAccess>,
    /// Per-tool overrides, by upstream tool name.
    #[serde(default)]
    pub tools: std::collections::BTreeMap<String, RawToolRule>,
    /// What the upstream learns about the caller: `none`, `headers` or `minted`.
    #[serde(default)]
    pub identity: IdentityMode,
    /// `shared`: the route's lists are listed once for every caller (filtered per caller);
    /// `per_caller`: listed for each caller. Default: `per_caller` when `identity` tells the
    /// upstream who calls (its lists may depend on it), else `shared`.
    #[serde(default)]
    pub catalog: Option<CatalogScope>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CatalogScope {
    Shared,
    PerCaller,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub destroy: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolRule {
    /// The tool's class, overriding the upstream's annotations.
    #[serde(default)]
    pub access: Option<crate::policy::Class>,
    /// `required`: the user must approve each call.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// Removes the tool for everyone.
    #[serde(default)]
    pub deny: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    Required,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IdentityMode {
    #[default]
    None,
    Headers,
    Minted,
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
    /// Headers sent with every request (static credentials: `${env:NAME}`, `${file:/path}`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Headers per tenant (the token's tenant claim), added to `headers`.
    #[serde(default)]
    pub tenant_headers:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// TLS toward an https upstream: the CAs to trust and a client certificate.
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
}

/// PEM files, relative to the route's own secrets directory (`route_secrets_dir/<name>/`) and
/// only below it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Trust only these CAs for this upstream (default: the system's roots).
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate chain (leaf first) and its key, for upstreams that require mTLS.
    #[serde(default)]
    pub cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
}
