//! The OAuth proxy's test setup: a gateway in front of an Entra-like test IdP, and the helpers a
//! browser-driving test needs (no redirects followed, cookies and form fields read by hand).

use super::idp::{CLIENT_ID, CLIENT_SECRET, Idp};
use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect()
}

pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

/// A gateway running the OAuth proxy in front of an Entra-like test IdP; `allow_loopback_cimd`
/// allow-lists 127.0.0.1 for client metadata documents.
pub async fn setup(allow_loopback_cimd: bool) -> (Idp, Upstream, Gateway) {
    let idp = Idp::start(true).await;
    let alpha = spawn_upstream("alpha").await.unwrap();
    let allow = if allow_loopback_cimd {
        "  cimd_allowed_hosts: [127.0.0.1]\n"
    } else {
        ""
    };
    let gw = oauth_gateway(&idp, &alpha.url, allow);
    idp.issue_as(
        &gw.url,
        json!({"sub": "alice"}),
        &format!("{}/oauth/callback", gw.base),
    );
    (idp, alpha, gw)
}

/// A gateway whose OAuth proxy fronts `idp`, with one route to `upstream`; `extra` is appended
/// to its configuration (under `oauth_proxy:` when indented, else at the top level).
pub fn oauth_gateway(idp: &Idp, upstream: &str, extra: &str) -> Gateway {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{CLIENT_SECRET}\n")).unwrap();
    let (_, secret_path) = secret.keep().unwrap();
    let config = format!(
        "auth:\n  mode: jwt\n  issuer: {idp}\n  scopes_supported: [mcp:read]\n\
         oauth_proxy:\n  profile: test-idp\n  client_id: {CLIENT_ID}\n  client_secret: ${{file:{secret}}}\n  allow_insecure_cimd: true\n{extra}",
        idp = idp.url,
        secret = secret_path.display(),
    );
    Gateway::start_with(
        Setup {
            routes: vec![("alpha", upstream.to_string(), "")],
            extra: &config,
        },
        |conf_dir| {
            std::fs::create_dir_all(conf_dir.join("oauth-profiles")).unwrap();
            std::fs::write(
                conf_dir.join("oauth-profiles/test-idp.yaml"),
                format!(
                    "name: Test IdP (Entra-like)\nissuer: {u}\nauthorization_endpoint: {u}/authorize\ntoken_endpoint: {u}/token\nresource: strip\ndrop_prompt_consent: true\n",
                    u = idp.url
                ),
            )
            .unwrap();
        },
    )
}

pub const VERIFIER: &str = "verifier-verifier-verifier-verifier-verifier";

/// Where a browser reaches the gateway: one instance, or a balancer in front of several.
pub trait Front {
    fn base(&self) -> &str;
}

impl Front for Gateway {
    fn base(&self) -> &str {
        &self.base
    }
}

impl Front for str {
    fn base(&self) -> &str {
        self
    }
}

pub async fn register(web: &reqwest::Client, gw: &(impl Front + ?Sized), redirect: &str) -> String {
    let reg: Value = web
        .post(format!("{}/oauth/register", gw.base()))
        .json(&json!({"redirect_uris": [redirect], "client_name": "Some Client"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reg["client_id"].as_str().unwrap().to_string()
}

pub fn authorize(
    gw: &(impl Front + ?Sized),
    client_id: &str,
    redirect: &str,
    extra: &[(&str, &str)],
) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", gw.base())).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "s");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

pub fn cookie(r: &reqwest::Response, name: &str) -> String {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap()
}

/// Consents in a fresh browser: the redirect to the IdP and that browser's flow cookie.
pub async fn consent(
    web: &reqwest::Client,
    gw: &(impl Front + ?Sized),
    client_id: &str,
    extra: &[(&str, &str)],
) -> (String, String) {
    let mut params = vec![("response_type", "code")];
    params.extend_from_slice(extra);
    let page = web
        .get(authorize(gw, client_id, REDIRECT, &params))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "an unknown client needs consent first");
    let csrf = cookie(&page, "__Host-mcp-edge-csrf");
    let html = page.text().await.unwrap();
    let consented = web
        .post(format!("{}/oauth/consent", gw.base()))
        .header("cookie", csrf)
        .form(&[
            ("request", hidden(&html, "request")),
            ("csrf", hidden(&html, "csrf")),
            ("decision", "allow".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(consented.status(), 302);
    let flow = cookie(&consented, "__Host-mcp-edge-flow");
    (
        consented.headers()["location"]
            .to_str()
            .unwrap()
            .to_string(),
        flow,
    )
}

/// The IdP's redirect back to the gateway's callback for a login link.
pub async fn through_idp(web: &reqwest::Client, to_idp: &str) -> String {
    let back = web.get(to_idp).send().await.unwrap();
    assert_eq!(back.status(), 302, "the IdP signs the user in");
    back.headers()["location"].to_str().unwrap().to_string()
}

/// Redeems a login's `code` at the gateway's token endpoint (the test's verifier and redirect).
pub async fn redeem(
    web: &reqwest::Client,
    gw: &(impl Front + ?Sized),
    client_id: &str,
    code: &str,
) -> reqwest::Response {
    web.post(format!("{}/oauth/token", gw.base()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
}
