//! The OAuth proxy's test setup: a gateway in front of an Entra-like test IdP, and the helpers a
//! browser-driving test needs (no redirects followed, cookies and form fields read by hand).

use super::idp::{CLIENT_ID, CLIENT_SECRET, Idp};
use super::*;
use serde_json::json;
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
