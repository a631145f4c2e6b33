//! A test identity provider: OpenID metadata, a JWKS (an RSA key made at start), and the
//! authorize/token endpoints of an authorization-code + PKCE flow. In `entra` mode it refuses any
//! `resource` parameter the way Entra ID does (AADSTS901002).

use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

pub const CLIENT_ID: &str = "mcp-edge-at-idp";
pub const CLIENT_SECRET: &str = "idp-secret";

pub struct Idp {
    pub url: String,
    /// The public key as PEM (for the HS256-with-public-key attack).
    pub public_pem: String,
    key: EncodingKey,
    state: Arc<IdpState>,
    stop: CancellationToken,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct IdpState {
    issuer: String,
    reject_resource: bool,
    /// The redirect URI registered for the gateway's client (set once the gateway's URL is known).
    redirect_uri: Mutex<String>,
    /// Tokens are issued for this audience and these claims.
    audience: Mutex<String>,
    claims: Mutex<Value>,
    codes: Mutex<HashMap<String, (String, String)>>,
    /// Every authorize and token request's parameters, in order.
    seen: Mutex<Vec<(String, HashMap<String, String>)>>,
    key: EncodingKey,
    /// What `/jwks` serves.
    jwks: Mutex<Value>,
    /// How often `/jwks` was fetched.
    jwks_fetches: std::sync::atomic::AtomicUsize,
}

impl Idp {
    pub async fn start(reject_resource: bool) -> Idp {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key");
        let public = private.to_public_key();
        let pem = private.to_pkcs8_pem(LineEnding::LF).expect("pem");
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .expect("public pem");
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key");
        let jwk = json!({
            "kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(IdpState {
            issuer: url.clone(),
            reject_resource,
            redirect_uri: Mutex::new(String::new()),
            audience: Mutex::new(String::new()),
            claims: Mutex::new(json!({})),
            codes: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            key: key.clone(),
            jwks: Mutex::new(json!({"keys": [jwk]})),
            jwks_fetches: Default::default(),
        });
        let meta = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
        });
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(meta) }),
            )
            .route("/jwks", axum::routing::get(jwks))
            .route("/authorize", axum::routing::get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(state.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled_owned().await })
                .await;
        });
        Idp {
            url,
            public_pem,
            key,
            state,
            stop,
        }
    }

    /// How often the gateway fetched the JWKS.
    pub fn jwks_fetches(&self) -> usize {
        self.state
            .jwks_fetches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes the signing key out of the JWKS (a key rotated away or revoked).
    pub fn withdraw_keys(&self) {
        *self.state.jwks.lock().unwrap() = json!({"keys": []});
    }

    /// Signs `claims` (RS256, kid `k1`) as this IdP.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        encode(&header, claims, &self.key).expect("sign")
    }

    /// A valid token for `audience` with the usual claims plus `extra`.
    pub fn token(&self, audience: &str, extra: Value) -> String {
        let now = now();
        let mut claims =
            json!({"iss": self.url, "aud": audience, "sub": "alice", "exp": now + 600, "iat": now});
        merge(&mut claims, extra);
        self.sign(&claims)
    }

    /// What the token endpoint issues: audience and the claims besides iss/aud/exp.
    pub fn issue_as(&self, audience: &str, claims: Value, redirect_uri: &str) {
        *self.state.audience.lock().unwrap() = audience.to_string();
        *self.state.claims.lock().unwrap() = claims;
        *self.state.redirect_uri.lock().unwrap() = redirect_uri.to_string();
    }

    /// Parameters of every authorize (`"authorize"`) and token (`"token"`) request.
    pub fn seen(&self) -> Vec<(String, HashMap<String, String>)> {
        self.state.seen.lock().unwrap().clone()
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> axum::response::Response {
    let body = json!({"error": error, "error_description": description}).to_string();
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap()
}

const AADSTS901002: &str = "AADSTS901002: The 'resource' request parameter isn't supported.";

async fn jwks(axum::extract::State(st): axum::extract::State<Arc<IdpState>>) -> axum::Json<Value> {
    st.jwks_fetches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    axum::Json(st.jwks.lock().unwrap().clone())
}

async fn authorize(
    axum::extract::State(st): axum::extract::State<Arc<IdpState>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> axum::response::Response {
    st.seen
        .lock()
        .unwrap()
        .push(("authorize".into(), q.clone()));
    if st.reject_resource && q.contains_key("resource") {
        return oauth_error(400, "invalid_target", AADSTS901002);
    }
    let registered = st.redirect_uri.lock().unwrap().clone();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("redirect_uri") != Some(&registered)
    {
        return oauth_error(400, "invalid_client", "unknown client or redirect_uri");
    }
    if q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || !q.contains_key("code_challenge")
    {
        return oauth_error(400, "invalid_request", "PKCE S256 required");
    }
    let code = format!("idp-code-{}", rand::random::<u64>());
    st.codes.lock().unwrap().insert(
        code.clone(),
        (
            q["code_challenge"].clone(),
            q.get("scope").cloned().unwrap_or_default(),
        ),
    );
    let mut to = url::Url::parse(&registered).unwrap();
    to.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = q.get("state") {
        to.query_pairs_mut().append_pair("state", state);
    }
    axum::response::Response::builder()
        .status(302)
        .header("location", to.as_str())
        .body(axum::body::Body::empty())
        .unwrap()
}

async fn token(
    axum::extract::State(st): axum::extract::State<Arc<IdpState>>,
    axum::extract::Form(f): axum::extract::Form<HashMap<String, String>>,
) -> axum::response::Response {
    st.seen.lock().unwrap().push(("token".into(), f.clone()));
    if st.reject_resource && f.contains_key("resource") {
        return oauth_error(400, "invalid_target", AADSTS901002);
    }
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return oauth_error(401, "invalid_client", "bad client credentials");
    }
    let scope = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((challenge, scope)) = f
                .get("code")
                .and_then(|c| st.codes.lock().unwrap().remove(c))
            else {
                return oauth_error(400, "invalid_grant", "unknown or used code");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return oauth_error(400, "invalid_grant", "PKCE verification failed");
            }
            if f.get("redirect_uri") != Some(&*st.redirect_uri.lock().unwrap()) {
                return oauth_error(400, "invalid_grant", "redirect_uri mismatch");
            }
            scope
        }
        Some("refresh_token") => f.get("scope").cloned().unwrap_or_default(),
        _ => return oauth_error(400, "unsupported_grant_type", "only code and refresh"),
    };
    let now = now();
    let mut claims = json!({
        "iss": st.issuer, "aud": *st.audience.lock().unwrap(), "exp": now + 600, "iat": now,
        "scope": scope,
    });
    merge(&mut claims, st.claims.lock().unwrap().clone());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let access = encode(&header, &claims, &st.key).unwrap();
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 600,
        "refresh_token": "idp-refresh", "scope": scope,
    }))
    .into_response()
}
