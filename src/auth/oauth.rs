//! The OAuth proxy: the gateway as authorization server in front of an IdP that lacks dynamic
//! registration or rejects RFC 8707 `resource`. Registrations, consent, flow state and codes are
//! sealed values (no store: any instance serves any step, and restarts keep registrations while
//! `sessions.keys` stay). Many clients share one IdP client, so each new client needs the user's
//! consent once (CSRF-protected form, exact redirect-URI match, single-use state).

use crate::cache::Bounded;
use crate::config::raw::ResourceMode;
use crate::config::snapshot::{OAuthProxy, Snapshot};
use crate::mcp::session::Sealer;
use crate::mcp::session::now_secs;
use crate::store::Redis;
use crate::upstream::Client as HttpClient;
use crate::upstream::Outgoing;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession as Session;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod clients;
mod consent;
pub mod discovery;
mod idp;

use clients::CIMD_CACHE_CAP;
use idp::{idp_scope, resource_param};

const CLIENT: &[u8] = b"mcp-edge oauth client";
const FORM: &[u8] = b"mcp-edge oauth consent form";
const STATE: &[u8] = b"mcp-edge oauth state";
const CODE: &[u8] = b"mcp-edge oauth code";
const CONSENTS: &[u8] = b"mcp-edge oauth consents";
/// Prefix of client ids the gateway registered (sealed registrations).
const REGISTERED: &str = "mcp-edge.";
const CONSENT_COOKIE: &str = "__Host-mcp-edge-consent";
const CSRF_COOKIE: &str = "__Host-mcp-edge-csrf";
/// Binds a login's IdP round trip to the browser that consented: its value is sealed into the
/// IdP state and must come back with the callback.
const FLOW_COOKIE: &str = "__Host-mcp-edge-flow";
const REFRESH: &[u8] = b"mcp-edge oauth refresh token";
/// How long a login may take, and how long a code lives.
const FLOW_SECS: u64 = 600;
const CODE_SECS: u64 = 300;
/// How long a user's consents are remembered.
const CONSENT_SECS: u64 = 90 * 24 * 3600;

/// A registered client, sealed into its own id.
#[derive(Serialize, Deserialize)]
struct Registration {
    #[serde(rename = "r")]
    redirect_uris: Vec<String>,
    #[serde(rename = "n")]
    name: String,
}

/// A client as the flow needs it.
#[derive(Clone)]
struct Client {
    name: String,
    redirect_uris: Vec<String>,
}

/// The client's authorization request, carried sealed through consent and the IdP round trip.
#[derive(Serialize, Deserialize, Clone)]
struct Request {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    prompt: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Form {
    req: Request,
    csrf: String,
    exp: u64,
}

#[derive(Serialize, Deserialize)]
struct Flight {
    req: Request,
    nonce: u64,
    exp: u64,
    /// The value of the consenting browser's flow cookie.
    browser: String,
}

/// The IdP's refresh token, bound to the client it was issued to.
#[derive(Serialize, Deserialize)]
struct Refresh {
    #[serde(rename = "t")]
    idp: String,
    #[serde(rename = "c")]
    client_id: String,
}

#[derive(Serialize, Deserialize)]
struct Code {
    idp: String,
    client_id: String,
    redirect_uri: String,
    exp: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Consents {
    clients: Vec<String>,
    exp: u64,
}

/// One answer of the OAuth endpoints.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            headers: vec![("cache-control", "no-store".into())],
        }
    }

    fn error(status: u16, error: &str, description: &str) -> Self {
        Self::json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    }

    fn redirect(location: String) -> Self {
        Self {
            status: 302,
            content_type: "text/plain",
            body: Vec::new(),
            headers: vec![("location", location), ("cache-control", "no-store".into())],
        }
    }

    fn cookie(mut self, cookie: String) -> Self {
        self.headers.push(("set-cookie", cookie));
        self
    }
}

/// Adds query parameters to a URL.
fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.into()
        }
        Err(_) => base.to_string(),
    }
}

fn form(bytes: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn cookie_value<'a>(s: &'a Session, name: &str) -> Option<&'a str> {
    s.req_header()
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

/// Redirect URIs a client may register: https, or http on a loopback host (native apps).
fn acceptable_redirect(uri: &str) -> bool {
    match url::Url::parse(uri) {
        Ok(u) if u.scheme() == "https" => u.fragment().is_none(),
        Ok(u) if u.scheme() == "http" => {
            matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
                && u.fragment().is_none()
        }
        _ => false,
    }
}

/// The strings of a JSON array (none for anything else).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The answer while the IdP's discovery document has not been read.
fn idp_unknown() -> Reply {
    Reply::error(
        503,
        "temporarily_unavailable",
        "the identity provider's endpoints are not known yet; try again shortly",
    )
}

fn client_key(client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(client_id.as_bytes())[..12])
}

/// The authorization-server front: what it seals with, how it reaches the IdP, and the login
/// states already used on this instance.
pub struct OAuthFront {
    sealer: Arc<Sealer>,
    client: Arc<HttpClient>,
    used_states: Bounded<u128, ()>,
    /// Client ID Metadata Documents fetched lately, by URL.
    documents: Bounded<String, Client>,
    /// Where instances share used login states (`sessions.store`).
    store: Option<Arc<Redis>>,
    /// The IdP's endpoints as its discovery document last said (profiles that name none).
    pub discovered: discovery::Slot,
}

/// Login states remembered at most (each for the length of a login).
const USED_CAP: usize = 100_000;

impl OAuthFront {
    pub fn new(sealer: Arc<Sealer>, client: Arc<HttpClient>, store: Option<Arc<Redis>>) -> Self {
        Self {
            sealer,
            client,
            used_states: Bounded::new(USED_CAP),
            documents: Bounded::new(CIMD_CACHE_CAP),
            store,
            discovered: Default::default(),
        }
    }

    /// Whether `path` is one of the OAuth proxy's.
    pub fn is_oauth_path(path: &str) -> bool {
        path.starts_with("/oauth/")
            || path.starts_with("/.well-known/oauth-authorization-server")
            || path.starts_with("/.well-known/openid-configuration")
    }

    pub async fn serve(&self, s: &mut Session, snap: &Snapshot) -> pingora::Result<()> {
        let reply = match &snap.oauth {
            None => Reply::error(404, "not_found", "this gateway runs no OAuth proxy"),
            Some(oauth) => {
                let path = s.req_header().uri.path().to_string();
                let method = s.req_header().method.clone();
                match (method.as_str(), path.as_str()) {
                    ("GET", p) if p.starts_with("/.well-known/") => {
                        Reply::json(200, &self.as_metadata(snap))
                    }
                    ("POST", "/oauth/register") => self.register(s).await,
                    ("GET", "/oauth/authorize") => self.oauth_authorize(s, snap, oauth).await,
                    ("POST", "/oauth/consent") => self.consent(s, snap, oauth).await,
                    ("GET", "/oauth/callback") => self.callback(s, snap).await,
                    ("POST", "/oauth/token") => self.token(s, snap, oauth).await,
                    _ => Reply::error(404, "not_found", "no such OAuth endpoint"),
                }
            }
        };
        let mut h = ResponseHeader::build_no_case(reply.status, Some(4 + reply.headers.len()))?;
        h.insert_header("content-type", reply.content_type)?;
        h.insert_header("content-length", reply.body.len())?;
        for (k, v) in &reply.headers {
            h.append_header(*k, v.as_str())?;
        }
        s.write_response_header(Box::new(h)).await?;
        s.write_response_body(Bytes::from(reply.body), true).await
    }

    /// RFC 8414 metadata naming the gateway's own endpoints.
    fn as_metadata(&self, snap: &Snapshot) -> Value {
        let base = snap.public_base();
        json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "registration_endpoint": format!("{base}/oauth/register"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": snap.scopes_supported().unwrap_or_default(),
            "client_id_metadata_document_supported": true,
            "authorization_response_iss_parameter_supported": true,
        })
    }

    async fn oauth_authorize(&self, s: &Session, snap: &Snapshot, oauth: &OAuthProxy) -> Reply {
        let q = form(s.req_header().uri.query().unwrap_or("").as_bytes());
        let Some(client_id) = q.get("client_id") else {
            return Reply::error(400, "invalid_request", "client_id is required");
        };
        let client = match self.client(oauth, client_id).await {
            Ok(c) => c,
            Err(e) => return Reply::error(400, "invalid_client", &e),
        };
        // Until the redirect URI is known to be the client's, errors are shown, never redirected.
        let Some(redirect_uri) = q
            .get("redirect_uri")
            .filter(|u| client.redirect_uris.contains(u))
        else {
            return Reply::error(
                400,
                "invalid_request",
                "redirect_uri does not exactly match a registered one",
            );
        };
        let consented = cookie_value(s, CONSENT_COOKIE)
            .and_then(|c| self.sealer.open_as::<Consents>(CONSENTS, c))
            .filter(|c| c.exp > now_secs())
            .is_some_and(|c| c.clients.contains(&client_key(client_id)));
        // Anyone can register any redirect URI: until this browser consented to the client,
        // its redirect URI is not trusted with an error either (no open redirect).
        let back = |error: &str, description: &str| {
            if !consented {
                return Reply::error(400, error, description);
            }
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(st) = q.get("state") {
                params.push(("state", st));
            }
            Reply::redirect(with_query(redirect_uri, &params))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return back("unsupported_response_type", "only response_type=code");
        }
        let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
            (Some(c), Some(m)) if m == "S256" && (43..=128).contains(&c.len()) => c.clone(),
            _ => {
                return back(
                    "invalid_request",
                    "PKCE with code_challenge_method=S256 is required",
                );
            }
        };
        let req = Request {
            client_id: client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge,
            state: q.get("state").cloned(),
            scope: q.get("scope").cloned(),
            resource: q.get("resource").cloned(),
            prompt: q.get("prompt").cloned(),
        };
        if consented {
            return self.to_idp(s, snap, oauth, req);
        }
        self.consent_page(&client, req)
    }

    /// The redirect to the IdP for a request this browser consented to: the gateway's client and
    /// callback, the client's PKCE challenge, `resource` handled as the profile says, and the
    /// browser's flow cookie (set here) sealed into the state. Only here, after consent, is the
    /// client's `prompt` (`none` included) passed on.
    fn to_idp(&self, s: &Session, snap: &Snapshot, oauth: &OAuthProxy, req: Request) -> Reply {
        let Some(idp) = discovery::current(&self.discovered, oauth) else {
            return idp_unknown();
        };
        let browser = cookie_value(s, FLOW_COOKIE)
            .filter(|v| v.len() == 22 && URL_SAFE_NO_PAD.decode(v).is_ok())
            .map_or_else(
                || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
                str::to_string,
            );
        let flight = Flight {
            nonce: rand::random(),
            exp: now_secs() + FLOW_SECS,
            req,
            browser,
        };
        let req = &flight.req;
        let state = self.sealer.seal_as(STATE, &flight);
        let callback = format!("{}/oauth/callback", snap.public_base());
        let scope = idp_scope(oauth, req.scope.as_deref(), req.resource.is_some());
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &oauth.client_id),
            ("redirect_uri", &callback),
            ("state", &state),
            ("code_challenge", &req.code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if !scope.is_empty() {
            params.push(("scope", &scope));
        }
        let resource_param = resource_param(oauth, req.resource.as_deref());
        if let Some((k, v)) = &resource_param {
            params.push((k.as_str(), v.as_str()));
        }
        if let Some(p) = &req.prompt
            && !(oauth.drop_prompt_consent && p == "consent")
        {
            params.push(("prompt", p));
        }
        Reply::redirect(with_query(&idp.authorize_url, &params)).cookie(set_cookie(
            FLOW_COOKIE,
            &flight.browser,
            FLOW_SECS,
        ))
    }
}
