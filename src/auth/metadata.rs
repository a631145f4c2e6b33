//! Documents served at well-known paths: protected resource metadata (RFC 9728) and the
//! gateway's own JWKS (for minted identity tokens).

use super::minted::Minter;
use crate::config::Snapshot;
use crate::config::snapshot::AuthSettings;
use serde_json::{Value, json};

const PRM: &str = "/.well-known/oauth-protected-resource";

/// What is served at `path`: `None` when it is no such path; `Some(None)` when it is the
/// resource metadata path but authentication is off.
pub fn document(path: &str, snap: &Snapshot, minter: &Minter) -> Option<Option<Value>> {
    if path == "/.well-known/jwks.json" {
        return Some(Some(minter.jwks()));
    }
    let suffix = path.strip_prefix(PRM)?;
    if !(suffix.is_empty() || suffix == snap.mcp_path) {
        return None;
    }
    Some(match &snap.auth {
        AuthSettings::None => None,
        AuthSettings::Jwt(jwt) => {
            let server = match &snap.oauth {
                Some(_) => snap.public_base(),
                None => jwt.issuer.trim_end_matches('/').to_string(),
            };
            Some(json!({
                "resource": snap.mcp_url,
                "authorization_servers": [server],
                "scopes_supported": jwt.scopes_supported,
                "bearer_methods_supported": ["header"],
                "resource_name": "mcp-edge",
            }))
        }
    })
}

/// The `WWW-Authenticate` challenge of a 401: where the metadata is, and what went wrong.
pub fn challenge(snap: &Snapshot, error: Option<&dyn std::fmt::Display>) -> String {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}\"",
        snap.resource_metadata_url()
    );
    if let Some(e) = error {
        challenge.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{e}\""
        ));
    }
    if let Some(scopes) = snap.scopes_supported().filter(|s| !s.is_empty()) {
        challenge.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
    }
    challenge
}

/// The `WWW-Authenticate` challenge of a 403 step-up.
pub fn scope_challenge(snap: &Snapshot, scopes: &[String]) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
        scopes.join(" "),
        snap.resource_metadata_url()
    )
}
