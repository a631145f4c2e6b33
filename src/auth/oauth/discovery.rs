//! The IdP's endpoints for profiles that name none (`generic`): read from the issuer's OpenID
//! Connect discovery document at start, again every `auth.jwks_refresh`, and at once when a
//! reload names another document. Until one has been read, the OAuth steps that need the IdP
//! answer 503; a failed refresh keeps the endpoints last read.

use super::super::keys::{DOC_TIMEOUT, RETRY};
use crate::config::Live;
use crate::config::snapshot::{AuthSettings, Endpoints, IdpEndpoints, OAuthProxy};
use crate::upstream::{Client, MAX_DOCUMENT};
use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Endpoints read from one discovery document.
pub struct Found {
    /// The document's URL: endpoints of another configuration's IdP are never used.
    from: String,
    endpoints: Arc<Endpoints>,
}

/// The endpoints last read, shared by the refresher and the OAuth front.
pub type Slot = Arc<ArcSwapOption<Found>>;

/// The IdP's endpoints for this configuration, if known.
pub fn current(slot: &Slot, oauth: &OAuthProxy) -> Option<Arc<Endpoints>> {
    match &oauth.endpoints {
        IdpEndpoints::Fixed(e) => Some(e.clone()),
        IdpEndpoints::Discovered(document) => slot
            .load()
            .as_ref()
            .filter(|f| f.from == document.url)
            .map(|f| f.endpoints.clone()),
    }
}

/// The background service that keeps [`Slot`] filled.
pub struct DiscoveryRefresher {
    pub live: Arc<Live>,
    pub client: Arc<Client>,
    pub slot: Slot,
}

#[async_trait]
impl BackgroundService for DiscoveryRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut generation = self.live.subscribe();
        let mut next = tokio::time::Instant::now();
        loop {
            let snap = self.live.snapshot();
            let refresh = match &snap.auth {
                AuthSettings::Jwt(s) => s.refresh,
                AuthSettings::None => Duration::from_secs(600),
            };
            if let Some(oauth) = &snap.oauth
                && let IdpEndpoints::Discovered(document) = &oauth.endpoints
            {
                let known = self
                    .slot
                    .load()
                    .as_ref()
                    .is_some_and(|f| f.from == document.url);
                if !known || tokio::time::Instant::now() >= next {
                    next = tokio::time::Instant::now()
                        + match self.read(document, &oauth.issuer).await {
                            Ok(endpoints) => {
                                log::info!(
                                    "OAuth proxy: the IdP's endpoints read from {}",
                                    document.url
                                );
                                self.slot.store(Some(Arc::new(Found {
                                    from: document.url.clone(),
                                    endpoints: Arc::new(endpoints),
                                })));
                                refresh
                            }
                            Err(e) => {
                                log::warn!(
                                    "OAuth proxy: cannot read the IdP's discovery document: {e}; retrying"
                                );
                                RETRY
                            }
                        };
                }
            } else {
                next = tokio::time::Instant::now() + Duration::from_secs(3600);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(next) => {}
                Ok(()) = generation.changed() => {}
            }
        }
    }
}

impl DiscoveryRefresher {
    async fn read(
        &self,
        document: &crate::config::snapshot::Upstream,
        issuer: &str,
    ) -> Result<Endpoints, String> {
        let meta = self
            .client
            .get_json(document, DOC_TIMEOUT, MAX_DOCUMENT)
            .await?;
        let (authorize_url, token) = endpoints_in(&meta, issuer)?;
        let token =
            tokio::task::spawn_blocking(move || crate::config::snapshot::upstream_for(&token))
                .await
                .map_err(|e| e.to_string())??;
        Ok(Endpoints {
            authorize_url,
            token,
        })
    }
}

/// The authorization and token endpoints a discovery document names, checked: it is the
/// configured issuer's (OpenID Connect Discovery §4.3), its endpoints are URLs of the issuer's
/// scheme, and it allows PKCE with S256 when it lists methods at all.
fn endpoints_in(meta: &Value, issuer: &str) -> Result<(String, String), String> {
    let theirs = meta["issuer"].as_str().unwrap_or_default();
    if theirs.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "it names the issuer `{theirs}`, not the configured `{issuer}`"
        ));
    }
    let scheme = url::Url::parse(issuer)
        .map(|u| u.scheme().to_string())
        .map_err(|_| format!("the issuer `{issuer}` is not a URL"))?;
    let endpoint = |name: &str| -> Result<String, String> {
        let value = meta[name]
            .as_str()
            .ok_or_else(|| format!("it has no {name}"))?;
        match url::Url::parse(value) {
            Ok(u) if u.scheme() == scheme => Ok(value.to_string()),
            _ => Err(format!("its {name} `{value}` is not a {scheme} URL")),
        }
    };
    if let Some(methods) = meta["code_challenge_methods_supported"].as_array()
        && !methods.iter().any(|m| m == "S256")
    {
        return Err("the IdP does not offer PKCE with S256".into());
    }
    Ok((
        endpoint("authorization_endpoint")?,
        endpoint("token_endpoint")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_discovery_document_is_checked_before_its_endpoints_are_used() {
        let good = json!({
            "issuer": "https://idp.example/",
            "authorization_endpoint": "https://idp.example/auth",
            "token_endpoint": "https://idp.example/token",
            "code_challenge_methods_supported": ["plain", "S256"],
        });
        assert_eq!(
            endpoints_in(&good, "https://idp.example").unwrap(),
            (
                "https://idp.example/auth".to_string(),
                "https://idp.example/token".to_string()
            )
        );
        let mut other = good.clone();
        other["issuer"] = json!("https://evil.example/");
        assert!(
            endpoints_in(&other, "https://idp.example")
                .unwrap_err()
                .contains("not the configured")
        );
        let mut downgraded = good.clone();
        downgraded["token_endpoint"] = json!("http://idp.example/token");
        assert!(
            endpoints_in(&downgraded, "https://idp.example")
                .unwrap_err()
                .contains("token_endpoint")
        );
        let mut plain_only = good.clone();
        plain_only["code_challenge_methods_supported"] = json!(["plain"]);
        assert!(endpoints_in(&plain_only, "https://idp.example").is_err());
        let mut missing = good;
        missing
            .as_object_mut()
            .unwrap()
            .remove("authorization_endpoint");
        assert!(
            endpoints_in(&missing, "https://idp.example")
                .unwrap_err()
                .contains("no authorization_endpoint")
        );
    }
}
