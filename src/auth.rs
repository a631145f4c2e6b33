//! Caller authentication: bearer JWTs from the IdP, verified against its JWKS (fetched, cached,
//! refreshed on schedule and on an unknown `kid`), with verified tokens cached by hash until they
//! expire so the hot path does no signature math twice. Fails closed: no keys, no callers.

pub mod keys;
pub mod metadata;
pub mod minted;
pub mod oauth;

use crate::config::snapshot::{AuthSettings, JwtSettings, Snapshot};
use crate::mcp::session::now_secs;
use crate::policy::Caller;
use dashmap::DashMap;
use jsonwebtoken::{Validation, decode, decode_header};
use keys::KeyStore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::{Arc, LazyLock};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Verified tokens kept at most; past it the expired go, then all.
const CACHE_CAP: usize = 100_000;

static ANONYMOUS: LazyLock<Arc<Caller>> = LazyLock::new(|| Arc::new(Caller::anonymous()));

/// Why a request is not authenticated (also the `reason` label of the failures metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the bearer token is too large")]
    TooLarge,
    #[error("the bearer token is not a JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is not meant for this server")]
    Audience,
    #[error("the token lacks a subject")]
    Subject,
    #[error("no verification keys are available")]
    NoKeys,
    #[error("the token is valid for longer than this server accepts")]
    Lifetime,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Issuer => "issuer",
            AuthError::Audience => "audience",
            AuthError::Subject => "subject",
            AuthError::NoKeys => "no_keys",
            AuthError::Lifetime => "lifetime",
        }
    }
}

/// Why a token's header could not be read: an algorithm we do not even know (`none`, …) is
/// reported as such, anything else as malformed.
fn unreadable_header(token: &str) -> AuthError {
    use base64::Engine;
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").cloned());
    if alg.is_some() {
        AuthError::Algorithm
    } else {
        AuthError::Malformed
    }
}

pub struct Authenticator {
    pub keys: KeyStore,
    verified: DashMap<[u8; 32], (Arc<Caller>, u64)>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    pub fn new() -> Self {
        Self {
            keys: KeyStore::new(),
            verified: DashMap::new(),
        }
    }

    /// Drops every verified token: they are verified again on their next use.
    pub fn forget_verified(&self) {
        self.verified.clear();
    }

    /// The caller behind an `Authorization` header value.
    pub async fn authenticate(
        &self,
        snap: &Snapshot,
        authorization: Option<&str>,
    ) -> Result<Arc<Caller>, AuthError> {
        let settings = match &snap.auth {
            AuthSettings::None => return Ok(ANONYMOUS.clone()),
            AuthSettings::Jwt(s) => s,
        };
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(hit) = self.verified.get(&digest)
            && hit.1 > now
        {
            return Ok(hit.0.clone());
        }
        let (caller, expires) = self.verify(settings, token).await?;
        if self.verified.len() >= CACHE_CAP {
            self.verified.retain(|_, (_, exp)| *exp > now);
            if self.verified.len() >= CACHE_CAP {
                self.verified.clear();
            }
        }
        self.verified.insert(digest, (caller.clone(), expires));
        Ok(caller)
    }

    async fn verify(&self, s: &JwtSettings, token: &str) -> Result<(Arc<Caller>, u64), AuthError> {
        let header = decode_header(token).map_err(|_| unreadable_header(token))?;
        if !s.algorithms.contains(&header.alg) {
            return Err(AuthError::Algorithm);
        }
        let key = match self.keys.find(header.kid.as_deref(), header.alg) {
            Some(k) => k,
            None => {
                if self.keys.is_empty() {
                    self.keys.request_refresh().await;
                    self.keys
                        .find(header.kid.as_deref(), header.alg)
                        .ok_or(AuthError::NoKeys)?
                } else {
                    // Perhaps the IdP rotated its keys: fetch again (rate-limited) and retry once.
                    self.keys.request_refresh().await;
                    self.keys
                        .find(header.kid.as_deref(), header.alg)
                        .ok_or(AuthError::UnknownKey)?
                }
            }
        };
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = s.leeway.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[&s.issuer]);
        v.set_audience(&s.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => AuthError::Expired,
                K::ImmatureSignature => AuthError::NotYetValid,
                K::InvalidIssuer => AuthError::Issuer,
                K::InvalidAudience => AuthError::Audience,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => AuthError::Algorithm,
                K::InvalidSignature => AuthError::Signature,
                K::MissingRequiredClaim(c) if c == "aud" => AuthError::Audience,
                K::MissingRequiredClaim(c) if c == "iss" => AuthError::Issuer,
                K::MissingRequiredClaim(_) => AuthError::Malformed,
                _ => AuthError::Malformed,
            }
        })?;
        let claims = data.claims;
        let c = &s.claims;
        let subject = claims[&c.subject]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Subject)?
            .to_string();
        let strings = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => s.split_whitespace().map(String::from).collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let caller = Caller {
            subject,
            groups: strings(&claims[&c.groups]),
            scopes: strings(&claims[&c.scopes]),
            tenant: claims[&c.tenant].as_str().map(String::from),
            client_id: claims[&c.client_id]
                .as_str()
                .or_else(|| claims["client_id"].as_str())
                .map(String::from),
        };
        let expires = claims["exp"].as_u64().unwrap_or(0);
        let from = claims["iat"]
            .as_u64()
            .unwrap_or_else(now_secs)
            .max(claims["nbf"].as_u64().unwrap_or(0));
        if expires.saturating_sub(from) > s.max_lifetime.as_secs() + s.leeway.as_secs() {
            return Err(AuthError::Lifetime);
        }
        Ok((Arc::new(caller), expires))
    }
}
