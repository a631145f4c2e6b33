//! Compiling the security settings: caller authentication, identity toward upstreams, route
//! policy, and `${env:…}`/`${file:…}` secrets.

use super::compile::{Errors, compile_upstream};
use super::raw::{Fsync, RawAudit, RawAuth, RawAuthMode, RawIdentitySettings, RawRoute};
use super::snapshot::{
    AuditSettings, AuthSettings, Claims, IdentitySettings, JwtSettings, KeySource, SinkSettings,
};
use crate::policy::{AccessScopes, RoutePolicy, ToolRule};
use base64::Engine;
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Whose secrets a value may read.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// The gateway's own file: any variable or file.
    Gateway,
    /// A route file (a team's, hot-reloaded): only variables named `MCP_EDGE_ROUTE_<NAME>_…` and
    /// files below `{route_secrets_dir}/{name}/`, never the gateway's own secrets.
    Route {
        name: &'a str,
        secrets_dir: Option<&'a Path>,
    },
}

impl Scope<'_> {
    /// Why `reference` may not be read from here, if it may not.
    pub(super) fn refuses(&self, kind: &str, target: &str) -> Option<String> {
        let Scope::Route { name, secrets_dir } = *self else {
            return None;
        };
        match kind {
            "env" => {
                let prefix = format!(
                    "MCP_EDGE_ROUTE_{}_",
                    name.to_ascii_uppercase().replace('-', "_")
                );
                (!target.starts_with(&prefix)).then(|| {
                    format!("a route file may read only environment variables named `{prefix}…`, not `{target}`")
                })
            }
            _ => {
                let own = secrets_dir.map(|d| d.join(name));
                let inside = own.as_ref().is_some_and(|own| {
                    match (std::fs::canonicalize(own), std::fs::canonicalize(target)) {
                        (Ok(own), Ok(file)) => file.starts_with(own),
                        _ => false,
                    }
                });
                (!inside).then(|| match own {
                    Some(own) => format!(
                        "a route file may read only secret files below `{}`, not `{target}`",
                        own.display()
                    ),
                    None => format!(
                        "a route file may not read secret files (`{target}`) unless the gateway sets `route_secrets_dir`"
                    ),
                })
            }
        }
    }
}

/// Expands `${env:NAME}` and `${file:/path}` in a value, as far as `scope` allows. Errors name
/// the variable or file, never a value.
pub fn expand_secrets(value: &str, path: &str, errs: &mut Errors, scope: Scope<'_>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            errs.push(
                path,
                "unterminated `${` (secrets are ${env:NAME} or ${file:/path})",
            );
            return out;
        };
        let reference = &rest[start + 2..start + end];
        if let Some((kind @ ("env" | "file"), target)) = reference.split_once(':')
            && let Some(why) = scope.refuses(kind, target)
        {
            errs.push(path, why);
            rest = &rest[start + end + 1..];
            continue;
        }
        match reference.split_once(':') {
            Some(("env", name)) => match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(_) => errs.push(path, format!("environment variable `{name}` is not set")),
            },
            Some(("file", file)) => match std::fs::read_to_string(file) {
                Ok(v) => out.push_str(v.trim_end_matches(['\n', '\r'])),
                Err(e) => errs.push(path, format!("cannot read secret file `{file}`: {e}")),
            },
            _ => errs.push(
                path,
                format!("`${{{reference}}}` is not a secret reference (${{env:NAME}} or ${{file:/path}})"),
            ),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

const ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("PS256", Algorithm::PS256),
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
];

pub fn compile_auth(raw: RawAuth, mcp_url: &str, base: &Path, errs: &mut Errors) -> AuthSettings {
    if raw.mode == RawAuthMode::None {
        return AuthSettings::None;
    }
    let Some(issuer) = raw.issuer.clone() else {
        errs.push("auth.issuer", "required with `mode: jwt`");
        return AuthSettings::None;
    };
    let mut algorithms = Vec::new();
    let names = if raw.algorithms.is_empty() {
        ALGORITHMS.iter().map(|(n, _)| n.to_string()).collect()
    } else {
        raw.algorithms.clone()
    };
    for (i, name) in names.iter().enumerate() {
        match ALGORITHMS.iter().find(|(n, _)| n == name) {
            Some((_, alg)) => algorithms.push(*alg),
            None => errs.push(
                &format!("auth.algorithms[{i}]"),
                format!(
                    "`{name}` is not allowed; use RS256, PS256, ES256 or EdDSA (never none or HS*)"
                ),
            ),
        }
    }
    let keys = if let Some(file) = &raw.jwks_file {
        let file = base.join(file);
        match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(set) => Some(KeySource::Static(set)),
            Err(e) => {
                errs.push("auth.jwks_file", format!("{}: {e}", file.display()));
                None
            }
        }
    } else if let Some(uri) = &raw.jwks_uri {
        compile_upstream(uri)
            .map(KeySource::Jwks)
            .map_err(|e| errs.push("auth.jwks_uri", e))
            .ok()
    } else {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        compile_upstream(&discovery)
            .map(KeySource::Discover)
            .map_err(|e| errs.push("auth.issuer", e))
            .ok()
    };
    let audiences = if raw.audiences.is_empty() {
        vec![mcp_url.to_string()]
    } else {
        raw.audiences
    };
    let Some(keys) = keys else {
        return AuthSettings::None;
    };
    AuthSettings::Jwt(Box::new(JwtSettings {
        issuer,
        audiences,
        keys,
        algorithms,
        leeway: raw.leeway.unwrap_or(Duration::from_secs(30)),
        max_lifetime: raw
            .max_token_lifetime
            .unwrap_or(Duration::from_secs(24 * 3600)),
        refresh: raw.jwks_refresh.unwrap_or(Duration::from_secs(600)),
        claims: Claims {
            subject: raw.claims.subject,
            groups: raw.claims.groups,
            scopes: raw.claims.scopes,
            tenant: raw.claims.tenant,
            client_id: raw.claims.client_id,
        },
        scopes_supported: raw.scopes_supported,
    }))
}

pub fn compile_identity(
    raw: RawIdentitySettings,
    base: &Path,
    errs: &mut Errors,
) -> IdentitySettings {
    let signing_key_pem = raw.signing_key_file.and_then(|f| {
        let f = base.join(f);
        std::fs::read_to_string(&f)
            .map_err(|e| errs.push("identity.signing_key_file", format!("{}: {e}", f.display())))
            .ok()
    });
    if let Some(pem) = &signing_key_pem
        && jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).is_err()
    {
        errs.push(
            "identity.signing_key_file",
            "not an Ed25519 private key in PKCS#8 PEM",
        );
    }
    IdentitySettings {
        signing_key_pem,
        lifetime: raw.token_lifetime.unwrap_or(Duration::from_secs(60)),
    }
}

pub fn compile_audit(raw: RawAudit, base: &Path, errs: &mut Errors) -> AuditSettings {
    if raw.queue == 0 {
        errs.push("audit.queue", "must be at least 1");
    }
    let hmac_key = raw
        .hmac_key
        .map(|k| expand_secrets(&k, "audit.hmac_key", errs, Scope::Gateway).into_bytes());
    if hmac_key.as_ref().is_some_and(|k| k.len() < 16) {
        errs.push("audit.hmac_key", "must be at least 16 bytes");
    }
    let chain_key = raw
        .chain_key
        .map(|k| expand_secrets(&k, "audit.chain_key", errs, Scope::Gateway).into_bytes());
    if chain_key.as_ref().is_some_and(|k| k.len() < 16) {
        errs.push("audit.chain_key", "must be at least 16 bytes");
    }
    let chain_key = chain_key.or_else(|| hmac_key.clone());
    if chain_key.is_none() && !raw.sinks.is_empty() {
        errs.push(
            "audit.chain_key",
            "required when there are audit sinks (or `hmac_key`): the chain is keyed, so nobody without the key can re-chain an edited trail",
        );
    }
    if raw.anchor_records == 0 {
        errs.push("audit.anchor_records", "must be at least 1");
    }
    let sinks = raw
        .sinks
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| match (s.jsonl, s.postgres) {
            (Some(j), None) => Some(SinkSettings::Jsonl {
                dir: base.join(j.dir),
                max_file_bytes: j.max_file_bytes.unwrap_or(100 * 1024 * 1024).max(4096),
                fsync: j.fsync.unwrap_or(Fsync::Always),
                anchor: j.anchor.map(|a| base.join(a)),
            }),
            (None, Some(p)) => Some(SinkSettings::Postgres {
                url: expand_secrets(
                    &p.url,
                    &format!("audit.sinks[{i}].postgres.url"),
                    errs,
                    Scope::Gateway,
                ),
                retention_days: p.retention_days,
            }),
            _ => {
                errs.push(
                    &format!("audit.sinks[{i}]"),
                    "give exactly one of `jsonl` or `postgres`",
                );
                None
            }
        })
        .collect();
    AuditSettings {
        queue: raw.queue.max(1),
        when_full: raw.when_full,
        hmac_key,
        chain_key,
        anchor_records: raw.anchor_records.max(1),
        anchor_interval: raw.anchor_interval,
        sinks,
    }
}

/// The parts of a route file about who sees what and what the upstream is told.
pub struct RouteSecurity {
    pub policy: RoutePolicy,
    pub headers: Vec<(String, String)>,
    pub tenant_headers: HashMap<String, Vec<(String, String)>>,
}

pub fn compile_route_security(
    raw: &RawRoute,
    secrets_dir: Option<&Path>,
    errs: &mut Errors,
) -> RouteSecurity {
    let scope = Scope::Route {
        name: &raw.name,
        secrets_dir,
    };
    let tools = raw
        .tools
        .iter()
        .map(|(name, r)| {
            (
                name.clone(),
                ToolRule {
                    class: r.access,
                    approval: r.approval.is_some(),
                    deny: r.deny,
                },
            )
        })
        .collect();
    let policy = RoutePolicy {
        visibility: raw.visibility.clone(),
        access: raw.access.as_ref().map(|a| AccessScopes {
            read: a.read.clone(),
            write: a.write.clone(),
            destroy: a.destroy.clone(),
        }),
        tools,
    };
    let mut header_list = |map: &std::collections::BTreeMap<String, String>, at: &str| {
        map.iter()
            .filter_map(|(k, v)| {
                let path = format!("{at}.{k}");
                if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    errs.push(&path, "not a valid header name");
                    return None;
                }
                let value = expand_secrets(v, &path, errs, scope);
                if http::HeaderValue::from_str(&value).is_err() {
                    errs.push(
                        &path,
                        "the value (after secrets) is not a valid header value",
                    );
                    return None;
                }
                Some((k.to_ascii_lowercase(), value))
            })
            .collect::<Vec<_>>()
    };
    let headers = header_list(&raw.upstream.headers, "upstream.headers");
    let tenant_headers = raw
        .upstream
        .tenant_headers
        .iter()
        .map(|(tenant, map)| {
            (
                tenant.clone(),
                header_list(map, &format!("upstream.tenant_headers.{tenant}")),
            )
        })
        .collect();
    RouteSecurity {
        policy,
        headers,
        tenant_headers,
    }
}

/// `sessions.keys`: base64 32-byte keys, secrets expanded.
pub fn session_keys(keys: &[String], errs: &mut Errors) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let path = format!("sessions.keys[{i}]");
        let k = expand_secrets(k, &path, errs, Scope::Gateway);
        match base64::engine::general_purpose::STANDARD.decode(k.trim()) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                out.push(key);
            }
            _ => errs.push(
                &path,
                "must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)",
            ),
        }
    }
    out
}
