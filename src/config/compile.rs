//! Raw YAML → validated `Snapshot`. Every problem is collected, not just the first, and each
//! names the file, the line where the parser knows it, and the YAML path.

mod listener;
mod upstream;
mod upstream_tls;

pub(super) use upstream::compile_upstream;
pub use upstream::offline;

use super::raw::{CatalogScope, IdentityMode, RawAuthMode, RawGateway, RawRoute};
use super::security;
use super::snapshot::{Route, Snapshot, Timeouts};
use crate::limits::{Limiter, Rate};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Line and column, when the YAML parser could tell.
    pub at: Option<(usize, usize)>,
    /// YAML path of the offending value (`upstream.url`), empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one attempt to load the configuration.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A configuration file's name and text, read from disk or embedded (the demo).
pub struct Source {
    pub file: PathBuf,
    pub text: String,
}

/// Reads the gateway file and every `*.yaml`/`*.yml` in its routes directory, then compiles.
pub fn load(config_path: &Path) -> Result<Snapshot, ConfigErrors> {
    let read = |file: &Path| {
        std::fs::read_to_string(file).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.to_path_buf(),
                at: None,
                path: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })
    };
    let gateway = Source {
        file: config_path.to_path_buf(),
        text: read(config_path)?,
    };
    let raw: RawGateway = parse(&gateway).map_err(|e| ConfigErrors(vec![e]))?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let dir = base.join(&raw.routes_dir);
    let dir = dir.canonicalize().unwrap_or(dir);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: config_path.to_path_buf(),
            at: None,
            path: "routes_dir".into(),
            message: format!("cannot read directory {}: {e}", dir.display()),
        }])
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut routes = Vec::with_capacity(files.len());
    for file in files {
        let text = read(&file)?;
        routes.push(Source { file, text });
    }
    let mut snapshot = compile_parsed(&gateway.file, raw, &routes, Some(dir))?;
    let certs = snapshot.tls.as_ref().map(|t| t.fingerprint);
    snapshot.sources = digest(&gateway, &routes, certs);
    Ok(snapshot)
}

/// What the files said (certificates included), as one number: a reload whose files say the
/// same is no change.
fn digest(gateway: &Source, routes: &[Source], certs: Option<u64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    certs.hash(&mut h);
    for source in std::iter::once(gateway).chain(routes) {
        source.file.hash(&mut h);
        source.text.hash(&mut h);
    }
    h.finish()
}

/// Compiles configuration held in memory.
pub fn compile(gateway: &Source, routes: &[Source]) -> Result<Snapshot, ConfigErrors> {
    let raw: RawGateway = parse(gateway).map_err(|e| ConfigErrors(vec![e]))?;
    compile_parsed(&gateway.file, raw, routes, None)
}

pub(super) fn parse<T: DeserializeOwned>(src: &Source) -> Result<T, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(&src.text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = inner.location().map(|l| (l.line(), l.column()));
        // serde_yaml repeats the path and the position in its message; they have their own fields.
        let mut message = inner.to_string();
        if let Some((line, col)) = at {
            let suffix = format!(" at line {line} column {col}");
            if let Some(m) = message.strip_suffix(&suffix) {
                message = m.to_string();
            }
        }
        if let Some(m) = message.strip_prefix(&format!("{path}: ")) {
            message = m.to_string();
        }
        ConfigError {
            file: src.file.clone(),
            at,
            path: if path == "." { String::new() } else { path },
            message,
        }
    })
}

pub(super) struct Errors<'f> {
    file: &'f Path,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_path_buf(),
            at: None,
            path: path.into(),
            message: message.into(),
        });
    }
}

fn compile_parsed(
    gateway_file: &Path,
    raw: RawGateway,
    route_sources: &[Source],
    routes_dir: Option<PathBuf>,
) -> Result<Snapshot, ConfigErrors> {
    let mut errs = Errors {
        file: gateway_file,
        list: Vec::new(),
    };
    if raw.listen.parse::<std::net::SocketAddr>().is_err() {
        errs.push(
            "listen",
            format!("`{}` is not an ip:port address", raw.listen),
        );
    }
    let public = url::Url::parse(&raw.public_url);
    let (public_origin, mcp_url, mcp_path) = match &public {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            let base = u.as_str().trim_end_matches('/');
            let path = format!("{}/mcp", u.path().trim_end_matches('/'));
            (
                u.origin().ascii_serialization(),
                format!("{base}/mcp"),
                path,
            )
        }
        _ => {
            errs.push(
                "public_url",
                format!("`{}` is not an http(s) URL", raw.public_url),
            );
            Default::default()
        }
    };
    if raw.max_body_bytes < 1024 {
        errs.push("max_body_bytes", "must be at least 1024");
    }
    if raw.max_upstream_message_bytes < 64 * 1024 {
        errs.push("max_upstream_message_bytes", "must be at least 65536");
    }
    if raw.max_header_bytes < 4096 {
        errs.push("max_header_bytes", "must be at least 4096");
    }
    for (i, o) in raw.allowed_origins.iter().enumerate() {
        if url::Url::parse(o).map(|u| u.origin().is_tuple()) != Ok(true) {
            errs.push(
                &format!("allowed_origins[{i}]"),
                format!("`{o}` is not an origin such as https://app.example.com"),
            );
        }
    }
    let base = gateway_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let oauth_without_jwt = raw.oauth_proxy.is_some() && raw.auth.mode != RawAuthMode::Jwt;
    let open_to_all = raw.auth.mode == RawAuthMode::None
        && raw
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_loopback());
    if open_to_all && !raw.auth.allow_unauthenticated {
        errs.push(
            "auth.mode",
            format!(
                "`none` on the non-loopback listener `{}` lets anyone who can reach it call every route visible to \"*\"; use `mode: jwt`, listen on 127.0.0.1, or set `auth.allow_unauthenticated: true`",
                raw.listen
            ),
        );
    }
    let mut auth = security::compile_auth(raw.auth, &mcp_url, base, &mut errs);
    let identity = security::compile_identity(raw.identity, base, &mut errs);
    let audit = security::compile_audit(raw.audit, base, &mut errs);
    let oauth = raw
        .oauth_proxy
        .and_then(|o| super::oauth_profile::compile_oauth(o, base, &mut errs));
    if oauth_without_jwt {
        errs.push(
            "oauth_proxy",
            "needs `auth.mode: jwt` (the gateway validates the tokens it brokers)",
        );
    }
    let session_keys = security::session_keys(&raw.sessions.keys, &mut errs);
    if raw.admin.listen.parse::<std::net::SocketAddr>().is_err() {
        errs.push(
            "admin.listen",
            format!("`{}` is not an ip:port address", raw.admin.listen),
        );
    }
    let caller_limit = rate(
        raw.limits.per_user_rpm,
        raw.limits.burst,
        "limits",
        &mut errs,
    );
    let fan_out = raw.limits.fan_out.unwrap_or(crate::config::raw::RawRate {
        per_user_rpm: 6000,
        burst: Some(600),
    });
    let fan_out_limit = rate(
        Some(fan_out.per_user_rpm),
        fan_out.burst,
        "limits.fan_out",
        &mut errs,
    );
    if let Some(store) = &raw.limits.store
        && !store.starts_with("redis://")
    {
        errs.push("limits.store", format!("`{store}` is not a redis:// URL"));
    }
    let server = listener::compile_server(raw.server, &mut errs);
    let https_url = public.as_ref().is_ok_and(|u| u.scheme() == "https");
    let tls = listener::compile_tls(raw.tls, base, https_url, &mut errs);
    let mut list = errs.list;

    let secrets_dir = raw.route_secrets_dir.as_ref().map(|d| base.join(d));
    let mut routes = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut prefixes: HashMap<String, PathBuf> = HashMap::new();
    for src in route_sources {
        let raw_route: RawRoute = match parse(src) {
            Ok(r) => r,
            Err(e) => {
                list.push(e);
                continue;
            }
        };
        let mut errs = Errors {
            file: &src.file,
            list: Vec::new(),
        };
        let route = compile_route(
            raw_route,
            raw.timeouts.call,
            secrets_dir.as_deref(),
            &mut errs,
        );
        if let Some(route) = route {
            if let Some(other) = names.insert(route.name.clone(), src.file.clone()) {
                errs.push(
                    "name",
                    format!("`{}` is already used by {}", route.name, other.display()),
                );
            }
            if let Some(other) = prefixes.insert(route.prefix.clone(), src.file.clone()) {
                let what = if route.prefix.is_empty() {
                    "no prefix (`\"\"`)".to_string()
                } else {
                    format!("prefix `{}`", route.prefix)
                };
                errs.push(
                    "tool_prefix",
                    format!(
                        "{what} is already used by {}; exposed names would collide",
                        other.display()
                    ),
                );
            }
            routes.push(route);
        }
        list.extend(errs.list);
    }
    if !list.is_empty() {
        return Err(ConfigErrors(list));
    }
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    auth.default_scopes(&routes);
    let snapshot = Snapshot {
        listen: raw.listen,
        admin_listen: raw.admin.listen,
        public_origin,
        mcp_url,
        mcp_path,
        routes_dir,
        max_body_bytes: raw.max_body_bytes,
        max_header_bytes: raw.max_header_bytes,
        max_upstream_message_bytes: raw.max_upstream_message_bytes,
        allowed_origins: raw
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_string())
            .collect(),
        timeouts: Timeouts {
            initialize: raw.timeouts.initialize,
            list: raw.timeouts.list,
        },
        catalog_ttl: raw.catalog.ttl,
        session_keys,
        session_ttl: raw.sessions.ttl.unwrap_or(Duration::from_secs(24 * 3600)),
        session_store: raw.sessions.store,
        server,
        tls,
        caller_limit,
        fan_out_limit,
        limit_store: raw.limits.store,
        auth,
        audit,
        identity,
        oauth,
        routes,
        by_prefix: HashMap::new(),
        sources: 0,
        by_name: HashMap::new(),
    };
    Ok(snapshot.indexed())
}

/// A bucket from `per_user_rpm`/`burst` (burst defaults to the rate); both must be positive.
fn rate(
    per_minute: Option<u32>,
    burst: Option<u32>,
    path: &str,
    errs: &mut Errors,
) -> Option<Limiter> {
    let per_minute = per_minute?;
    let burst = burst.unwrap_or(per_minute);
    match (NonZeroU32::new(per_minute), NonZeroU32::new(burst)) {
        (Some(per_minute), Some(burst)) => Some(Limiter::new(Rate { per_minute, burst })),
        _ => {
            errs.push(path, "per_user_rpm and burst must be at least 1");
            None
        }
    }
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn compile_route(
    raw: RawRoute,
    default_timeout: Duration,
    secrets_dir: Option<&Path>,
    errs: &mut Errors,
) -> Option<Route> {
    const IDENT: &str = "must be 1-32 characters of [a-z0-9-], starting with a letter";
    if !valid_ident(&raw.name) {
        errs.push("name", format!("`{}` {IDENT}", raw.name));
    }
    let security = security::compile_route_security(&raw, secrets_dir, errs);
    let prefix = raw.tool_prefix.unwrap_or_else(|| raw.name.clone());
    // `""`: the route's own names, unprefixed (at most one such route: prefixes are unique).
    if !prefix.is_empty() && !valid_ident(&prefix) {
        errs.push(
            "tool_prefix",
            format!("`{prefix}` {IDENT}, or \"\" for none"),
        );
    }
    let timeout = raw.upstream.timeout.unwrap_or(default_timeout);
    if timeout.is_zero() {
        errs.push("upstream.timeout", "must be greater than zero");
    }
    let upstream = match compile_upstream(&raw.upstream.url) {
        Ok(mut u) => {
            if let Some(tls) = &raw.upstream.tls {
                let scope = security::Scope::Route {
                    name: &raw.name,
                    secrets_dir,
                };
                let own = secrets_dir.map(|d| d.join(&raw.name));
                upstream_tls::apply(tls, &mut u, scope, own.as_deref(), errs);
            }
            Some(u)
        }
        Err(msg) => {
            errs.push("upstream.url", msg);
            None
        }
    };
    if raw.upstream.max_concurrency == Some(0) {
        errs.push("upstream.max_concurrency", "must be at least 1");
    }
    let limit = rate(raw.limits.per_user_rpm, raw.limits.burst, "limits", errs);
    let mut tool_limits = HashMap::new();
    for (tool, r) in &raw.limits.per_tool {
        let path = format!("limits.per_tool.{tool}");
        if let Some(l) = rate(Some(r.per_user_rpm), r.burst, &path, errs) {
            tool_limits.insert(tool.clone(), l);
        }
    }
    Some(Route {
        index: 0,
        name: raw.name,
        prefix,
        upstream: upstream?,
        timeout,
        limit,
        tool_limits,
        max_concurrency: raw.upstream.max_concurrency,
        policy: security.policy,
        identity: raw.identity,
        shared_catalog: match raw.catalog {
            Some(scope) => scope == CatalogScope::Shared,
            None => raw.identity == IdentityMode::None,
        },
        headers: security.headers,
        tenant_headers: security.tenant_headers,
    })
}

/// Validates an OAuth profile file (as `oauth_proxy.profile` would load it).
pub fn check_oauth_profile(file: &Path) -> Result<(), String> {
    parse_file::<super::raw::RawOAuthProfile>(file).map(|_| ())
}

/// Reads and parses one extra YAML file (an OAuth profile); the error says where.
pub(super) fn parse_file<T: DeserializeOwned>(file: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    parse(&Source {
        file: file.to_path_buf(),
        text,
    })
    .map_err(|e| e.to_string())
}
