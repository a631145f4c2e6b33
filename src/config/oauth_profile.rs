//! Compiling `oauth_proxy`: the IdP profile (built in, or a file beside the configuration), its
//! `{vars}` filled, and where the IdP's endpoints come from (the profile, or the IdP's discovery
//! document when the profile names none).

use super::compile::{Errors, compile_upstream, parse_file};
use super::raw::{RawOAuthProfile, RawOAuthProxy, ResourceMode};
use super::security::{Scope, expand_secrets};
use super::snapshot::{IdpEndpoints, OAuthProxy};
use std::path::Path;
use std::sync::Arc;

fn fill(template: &str, vars: &std::collections::BTreeMap<String, String>) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

/// The OAuth profiles compiled into the binary (`conf/oauth-profiles/`); a file of the same
/// name in `oauth-profiles/` beside the configuration overrides one, or adds another.
const BUILT_IN_PROFILES: &[(&str, &str)] = &[
    (
        "auth0",
        include_str!("../../conf/oauth-profiles/auth0.yaml"),
    ),
    (
        "entra",
        include_str!("../../conf/oauth-profiles/entra.yaml"),
    ),
    (
        "generic",
        include_str!("../../conf/oauth-profiles/generic.yaml"),
    ),
    (
        "keycloak",
        include_str!("../../conf/oauth-profiles/keycloak.yaml"),
    ),
    ("okta", include_str!("../../conf/oauth-profiles/okta.yaml")),
];

/// A profile by name: the file beside the configuration, else the built-in one.
fn oauth_profile(name: &str, base: &Path) -> Result<RawOAuthProfile, String> {
    let file = base.join("oauth-profiles").join(format!("{name}.yaml"));
    if file.exists() {
        return parse_file(&file);
    }
    match BUILT_IN_PROFILES.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => super::compile::parse(&super::compile::Source {
            file: format!("<built-in>/oauth-profiles/{n}.yaml").into(),
            text: (*text).to_string(),
        })
        .map_err(|e| e.to_string()),
        None => Err(format!(
            "no such profile: built in are {}, or put {} beside the configuration",
            BUILT_IN_PROFILES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            file.display()
        )),
    }
}

/// A filled URL, or the error that names the placeholder still in it.
fn filled(template: &str, what: &str, raw: &RawOAuthProxy, errs: &mut Errors) -> String {
    let url = fill(template, &raw.vars);
    if url.contains('{') {
        errs.push(
            "oauth_proxy.vars",
            format!("the profile's {what} needs a value for a placeholder in `{url}`"),
        );
    }
    url
}

/// The OpenID Connect discovery document of `issuer` (OpenID Connect Discovery 1.0 §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Where the IdP's endpoints come from: the profile's URLs, else its discovery document.
fn endpoints(
    profile: &RawOAuthProfile,
    raw: &RawOAuthProxy,
    issuer: &str,
    errs: &mut Errors,
) -> Option<IdpEndpoints> {
    match (&profile.authorization_endpoint, &profile.token_endpoint) {
        (Some(authorize), Some(token)) => {
            let authorize = filled(authorize, "authorization_endpoint", raw, errs);
            let token = filled(token, "token_endpoint", raw, errs);
            if url::Url::parse(&authorize).is_err() {
                errs.push(
                    "oauth_proxy",
                    format!("the profile's authorization_endpoint `{authorize}` is not a URL"),
                );
            }
            let token = compile_upstream(&token)
                .map_err(|e| errs.push("oauth_proxy", format!("token endpoint: {e}")))
                .ok()?;
            Some(IdpEndpoints::Fixed(Arc::new(
                crate::config::snapshot::Endpoints {
                    authorize_url: authorize,
                    token,
                },
            )))
        }
        (None, None) if profile.discovery => {
            let document = compile_upstream(&discovery_url(issuer))
                .map_err(|e| errs.push("oauth_proxy", format!("discovery document: {e}")))
                .ok()?;
            Some(IdpEndpoints::Discovered(Box::new(document)))
        }
        _ => {
            errs.push(
                "oauth_proxy.profile",
                "a profile names both `authorization_endpoint` and `token_endpoint`, or neither and `discovery: true`",
            );
            None
        }
    }
}

pub fn compile_oauth(raw: RawOAuthProxy, base: &Path, errs: &mut Errors) -> Option<OAuthProxy> {
    let profile = match oauth_profile(&raw.profile, base) {
        Ok(p) => p,
        Err(e) => {
            errs.push(
                "oauth_proxy.profile",
                format!("profile `{}`: {e}", raw.profile),
            );
            return None;
        }
    };
    let issuer = filled(&profile.issuer, "issuer", &raw, errs);
    let endpoints = endpoints(&profile, &raw, &issuer, errs)?;
    let resource = raw.resource.unwrap_or(profile.resource);
    if matches!(resource, ResourceMode::Audience | ResourceMode::Scope)
        && raw.resource_value.is_none()
    {
        errs.push(
            "oauth_proxy.resource_value",
            "required when `resource` is `audience` or `scope`",
        );
    }
    let client_secret = raw
        .client_secret
        .map(|s| expand_secrets(&s, "oauth_proxy.client_secret", errs, Scope::Gateway));
    let basic = match profile.token_auth.as_deref() {
        None | Some("client_secret_post") => false,
        Some("client_secret_basic") => true,
        Some(other) => {
            errs.push(
                "oauth_proxy.profile",
                format!("token_auth `{other}` is not client_secret_post or client_secret_basic"),
            );
            false
        }
    };
    let mut extra_scopes = profile.extra_scopes;
    extra_scopes.extend(raw.extra_scopes);
    Some(OAuthProxy {
        profile: profile.name,
        issuer,
        endpoints,
        client_id: raw.client_id,
        client_secret,
        basic_auth: basic,
        resource,
        resource_value: raw.resource_value,
        audience_parameter: profile
            .audience_parameter
            .unwrap_or_else(|| "audience".into()),
        drop_prompt_consent: profile.drop_prompt_consent,
        scope_map: raw.scope_map.into_iter().collect(),
        extra_scopes,
        allow_insecure_cimd: raw.allow_insecure_cimd,
        cimd_allowed_hosts: raw.cimd_allowed_hosts,
    })
}
