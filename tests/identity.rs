//! Identity and policy: JWT validation against a test IdP (and the attack list), protected
//! resource metadata, per-caller list filtering and hidden calls, step-up, sessions bound to
//! their caller, identity toward upstreams, approval through elicitation, `explain`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::idp::{Idp, now};
use common::*;
use rmcp::model::{CallToolRequestParams, ElicitRequestParams, ElicitResult, ElicitationAction};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

const SCOPES: &str = "scopes_supported: [mcp:read, mcp:write, mcp:admin]";

/// Route `data` (team:data, scopes per class, minted identity) and `other` (team:other,
/// identity headers) behind a gateway that trusts `idp`.
async fn setup() -> (Idp, Upstream, Upstream, Gateway) {
    let idp = Idp::start(false).await;
    let (data, other) = two_upstreams().await;
    let data_route = "visibility: [team:data]\nidentity: minted\naccess:\n  read: [mcp:read]\n  write: [mcp:write]\n  destroy: [mcp:admin]\n\
        tools:\n  large: { deny: true }\n  wait: { access: write }\n  echo: { access: read }";
    let other_route = "visibility: [team:other]\nidentity: headers";
    let extra = format!("auth:\n  mode: jwt\n  issuer: {}\n  {SCOPES}\n", idp.url);
    let gw = Gateway::start(Setup {
        routes: vec![
            ("data", data.url.clone(), data_route),
            ("other", other.url.clone(), other_route),
        ],
        extra: &extra,
    });
    (idp, data, other, gw)
}

async fn open_as(gw: &Gateway, token: &str) -> Raw {
    Raw::open_with(&gw.url, Some(token)).await
}

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"text":"hi","ms":1,"bytes":1}}}).to_string()
}

#[tokio::test]
async fn tokens_are_verified_and_every_attack_fails_closed() {
    let (idp, _data, _other, gw) = setup().await;
    let good = idp.token(
        &gw.url,
        json!({"groups": ["team:data"], "scope": "mcp:read"}),
    );
    let initialize = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post = |token: Option<String>| {
        let mut b = http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .body(initialize);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.send()
    };
    let metadata = format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        gw.base
    );

    let r = post(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&metadata),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp:read mcp:write mcp:admin\""),
        "{challenge}"
    );
    assert!(
        !challenge.contains("invalid_token"),
        "no token is not an invalid token: {challenge}"
    );

    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({"iss": idp.url, "aud": gw.url, "sub": "mallory", "exp": now() + 600});
    let hs256_with_public_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(idp.public_pem.as_bytes()),
    )
    .unwrap();
    let unknown_kid = {
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            b64(&json!({"alg":"RS256","kid":"k2","typ":"JWT"})),
            parts[1],
            parts[2]
        )
    };
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let payload = json!({"iss": idp.url, "aud": gw.url, "sub": "admin", "exp": now() + 600, "groups": ["team:data"]});
        format!("{}.{}.{}", parts[0], b64(&payload), parts[2])
    };
    let attacks = [
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg":"none","typ":"JWT"})),
                b64(&claims)
            ),
            "algorithm",
        ),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key,
            "algorithm",
        ),
        (
            "expired",
            idp.token(&gw.url, json!({"exp": now() - 3600})),
            "expired",
        ),
        (
            "not yet valid",
            idp.token(&gw.url, json!({"nbf": now() + 3600})),
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            idp.token(&gw.url, json!({"iss": "https://evil.example.com"})),
            "issuer",
        ),
        (
            "wrong audience",
            idp.token("https://other.example.com/mcp", json!({})),
            "audience",
        ),
        ("unknown kid", unknown_kid, "unknown_key"),
        ("tampered signature", tampered, "signature"),
        (
            "oversized",
            idp.token(&gw.url, json!({"pad": "x".repeat(9000)})),
            "too_large",
        ),
        ("garbage", "not.a.jwt".to_string(), "malformed"),
        (
            "valid for 30 days (auth.max_token_lifetime: 24h)",
            idp.token(&gw.url, json!({"exp": now() + 30 * 86400})),
            "lifetime",
        ),
        (
            "valid for 30 days, no iat",
            idp.token(&gw.url, json!({"exp": now() + 30 * 86400, "iat": null})),
            "lifetime",
        ),
    ];
    for (name, token, reason) in attacks {
        let r = post(Some(token)).await.unwrap();
        assert_eq!(r.status(), 401, "{name} was accepted");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("error=\"invalid_token\"") && challenge.contains(&metadata),
            "{name}: {challenge}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], json!(-32001), "{name}: {body}");
        let series = format!("mcp_edge_auth_failures_total{{reason=\"{reason}\"}}");
        assert!(gw.metric(&series).await >= 1.0, "{name}: {series}");
    }
    let r = post(Some(good.clone())).await.unwrap();
    assert_eq!(r.status(), 200, "a valid token still works");
    let text = http()
        .get(format!("{}/metrics", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&good[..40]), "no token in metrics");
}

#[tokio::test]
async fn protected_resource_metadata_names_the_resource_and_its_issuer() {
    let (idp, _data, _other, gw) = setup().await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let v: Value = get_json(&format!("{}{path}", gw.base)).await;
        assert_eq!(v["resource"], json!(gw.url), "{path}");
        assert_eq!(v["authorization_servers"], json!([idp.url]), "{path}");
        assert_eq!(
            v["scopes_supported"],
            json!(["mcp:read", "mcp:write", "mcp:admin"])
        );
    }
}

#[tokio::test]
async fn lists_and_calls_follow_groups_scopes_classes_and_deny() {
    let (idp, _data, _other, gw) = setup().await;
    let reader = open_as(
        &gw,
        &idp.token(
            &gw.url,
            json!({"groups": ["team:data"], "scope": "mcp:read"}),
        ),
    )
    .await;
    let names = reader.tool_names().await;
    for visible in [
        "data__echo",
        "data__fail",
        "data__progress",
        "data__confirm",
    ] {
        assert!(
            names.contains(&visible.to_string()),
            "{visible} missing: {names:?}"
        );
    }
    for hidden in [
        "data__purge",
        "data__note",
        "data__wait",
        "data__large",
        "other__echo",
    ] {
        assert!(
            !names.contains(&hidden.to_string()),
            "{hidden} shown: {names:?}"
        );
    }
    // Hidden means unknown: denied tools and invisible routes.
    for tool in ["data__large", "other__echo"] {
        let (status, v) = reader.rpc(call(2, tool)).await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (200, json!(-32602)),
            "{tool}: {v}"
        );
        assert_eq!(
            v["error"]["message"],
            json!(format!("Unknown tool: `{tool}`"))
        );
    }
    // Visible but beyond the caller's scopes: 403 with the scopes that would do (step-up).
    for (tool, scopes) in [
        ("data__purge", "mcp:admin"),
        ("data__note", "mcp:write mcp:admin"),
        ("data__wait", "mcp:write mcp:admin"),
    ] {
        let r = reader.post(call(3, tool)).await;
        assert_eq!(r.status(), 403, "{tool}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains(&format!("scope=\"{scopes}\"")),
            "{tool}: {challenge}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], json!(3));
    }
    let (_, v) = reader.rpc(call(4, "data__echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: hi"));

    let admin = open_as(
        &gw,
        &idp.token(
            &gw.url,
            json!({"sub": "bob", "groups": ["team:data"], "scope": "mcp:read mcp:admin"}),
        ),
    )
    .await;
    let names = admin.tool_names().await;
    assert!(
        names.contains(&"data__purge".to_string()) && names.contains(&"data__note".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"data__large".to_string()),
        "deny is for everyone"
    );
    let (_, v) = admin.rpc(call(5, "data__purge")).await;
    assert_eq!(
        v["result"]["content"][0]["text"],
        json!("alpha purged nothing"),
        "{v}"
    );

    // No scope at all: no prompts or resources of the route, and reading them is a 403.
    let nobody = open_as(
        &gw,
        &idp.token(
            &gw.url,
            json!({"sub": "eve", "groups": ["team:data"], "scope": ""}),
        ),
    )
    .await;
    let (_, v) = nobody
        .rpc(r#"{"jsonrpc":"2.0","id":6,"method":"prompts/list"}"#)
        .await;
    assert_eq!(v["result"]["prompts"], json!([]), "{v}");
    let r = nobody.post(r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"data__greet","arguments":{"who":"x"}}}"#).await;
    assert_eq!(r.status(), 403);

    // A session belongs to its caller.
    let stolen = Raw {
        bearer: admin.bearer.clone(),
        ..reader.clone_session()
    };
    let (status, _) = stolen.rpc(call(8, "data__echo")).await;
    assert_eq!(status, 404, "another caller's session id is unknown");
}

#[tokio::test]
async fn upstreams_learn_who_calls_but_never_see_the_callers_token() {
    let (idp, data, other, gw) = setup().await;
    let alice_token = idp.token(
        &gw.url,
        json!({"groups": ["team:data", "team:other"], "scope": "mcp:read", "tid": "acme"}),
    );
    let alice = open_as(&gw, &alice_token).await;
    let (_, v) = alice.rpc(call(1, "data__echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: hi"));
    let (_, v) = alice.rpc(call(2, "other__echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("beta: hi"));

    let jwks: Value = get_json(&format!("{}/.well-known/jwks.json", gw.base)).await;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let minted: Vec<String> = data
        .probe
        .headers
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.trim_start_matches("Bearer ").to_string())
        .collect();
    assert!(!minted.is_empty(), "the minted route got identity tokens");
    for token in &minted {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&["data"]);
        v.set_issuer(&[&gw.base]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .expect("minted token verifies")
            .claims;
        assert_eq!(claims["sub"], json!("alice"));
        assert_eq!(claims["tenant"], json!("acme"));
        assert!(claims["exp"].as_u64().unwrap() <= now() + 61, "short-lived");
    }
    let headers = other.probe.headers.lock().unwrap().clone();
    assert!(
        headers.contains(&("x-mcp-edge-subject".into(), "alice".into())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("x-mcp-edge-groups".into(), "team:data,team:other".into())),
        "{headers:?}"
    );
    for (name, value) in data
        .probe
        .headers
        .lock()
        .unwrap()
        .iter()
        .chain(headers.iter())
    {
        assert!(
            !value.contains(&alice_token),
            "{name} carried the caller's token upstream"
        );
    }
}

#[derive(Clone)]
struct Approver {
    approve: bool,
}

impl ClientHandler for Approver {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        let asked = serde_json::to_value(&request).unwrap();
        assert!(
            asked["message"].as_str().unwrap().contains("data__echo"),
            "{asked}"
        );
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"approve": self.approve})))
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        info.capabilities = serde_json::from_value(json!({"elicitation": {}})).unwrap();
        info
    }
}

#[tokio::test]
async fn approval_required_asks_the_user_through_elicitation() {
    let idp = Idp::start(false).await;
    let data = spawn_upstream("alpha").await.unwrap();
    let route = "visibility: [team:data]\ntools:\n  echo: { approval: required }";
    let extra = format!("auth:\n  mode: jwt\n  issuer: {}\n", idp.url);
    let gw = Gateway::start(Setup {
        routes: vec![("data", data.url.clone(), route)],
        extra: &extra,
    });
    let token = idp.token(&gw.url, json!({"groups": ["team:data"]}));
    let connect = |approve: bool| {
        let config = StreamableHttpClientTransportConfig::with_uri(gw.url.clone())
            .auth_header(token.clone());
        Approver { approve }.serve(StreamableHttpClientTransport::from_config(config))
    };
    let args = json!({"text": "approved"}).as_object().cloned().unwrap();
    let yes = connect(true).await.unwrap();
    let r = yes
        .call_tool(CallToolRequestParams::new("data__echo").with_arguments(args.clone()))
        .await
        .unwrap();
    assert_eq!(r.content[0].as_text().unwrap().text, "alpha: approved");

    let no = connect(false).await.unwrap();
    let err = no
        .call_tool(CallToolRequestParams::new("data__echo").with_arguments(args.clone()))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("was not run"), "{err:?}");

    // A client that cannot be asked is told so.
    let config =
        StreamableHttpClientTransportConfig::with_uri(gw.url.clone()).auth_header(token.clone());
    let mute = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    let err = mute
        .call_tool(CallToolRequestParams::new("data__echo").with_arguments(args))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("cannot ask"), "{err:?}");
}

#[test]
fn explain_prints_what_a_caller_would_see() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("routes")).unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        "listen: 127.0.0.1:0\npublic_url: http://localhost\nroutes_dir: routes\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("routes/data.yaml"),
        "name: data\nvisibility: [team:data]\nupstream: { url: 'http://127.0.0.1:1/mcp' }\naccess: { read: [mcp:read], write: [mcp:write], destroy: [mcp:admin] }\ntools:\n  drop: { deny: true }\n  export: { access: write, approval: required }\n  search: { access: read }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("routes/other.yaml"),
        "name: other\nvisibility: [team:other]\nupstream: { url: 'http://127.0.0.1:1/mcp' }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["explain", "--config"])
        .arg(dir.path().join("gw.yaml"))
        .args([
            "--subject",
            "alice",
            "--groups",
            "team:data",
            "--scopes",
            "mcp:read",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "route data: visible, grants read",
        "  data__drop  denied (hidden from everyone)",
        "  data__export  write: needs one of [mcp:write mcp:admin]",
        "  data__search  read: allowed",
        "route other: hidden (visible to [team:other])",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn a_token_whose_key_the_idp_withdrew_is_refused_after_the_next_key_refresh() {
    let idp = Idp::start(false).await;
    let data = spawn_upstream("alpha").await.unwrap();
    let gw = Gateway::start(Setup {
        routes: vec![("data", data.url.clone(), "")],
        extra: &format!(
            "auth:\n  mode: jwt\n  issuer: {}\n  jwks_refresh: 1s\n",
            idp.url
        ),
    });
    let token = idp.token(&gw.url, json!({}));
    let raw = open_as(&gw, &token).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(raw.rpc(ping).await.0, 200, "verified (and cached)");
    idp.withdraw_keys();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut status = 200;
    while status != 401 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        status = raw.rpc(ping).await.0;
    }
    assert_eq!(
        status, 401,
        "the cached verification outlived the key that made it"
    );
}
