//! The OAuth proxy end to end against a test IdP that rejects `resource` like Entra ID:
//! metadata → register → authorize (consent) → IdP → callback → token → an MCP call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::idp::{CLIENT_ID, CLIENT_SECRET};
use common::oauth::*;
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn a_client_logs_in_through_the_proxy_and_calls_a_tool() {
    let (idp, _alpha, gw) = setup(true).await;
    let web = no_redirects();

    let prm: Value = get_json(&format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.base
    ))
    .await;
    assert_eq!(prm["authorization_servers"], json!([gw.base]));
    let meta: Value = get_json(&format!(
        "{}/.well-known/oauth-authorization-server",
        gw.base
    ))
    .await;
    assert_eq!(meta["issuer"], json!(gw.base));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["client_id_metadata_document_supported"], json!(true));
    let oidc: Value = get_json(&format!("{}/.well-known/openid-configuration", gw.base)).await;
    assert_eq!(oidc["token_endpoint"], meta["token_endpoint"]);

    let reg: Value = web
        .post(meta["registration_endpoint"].as_str().unwrap())
        .json(&json!({"redirect_uris": [REDIRECT], "client_name": "Test <Client>", "token_endpoint_auth_method": "client_secret_post"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    assert_eq!(reg["token_endpoint_auth_method"], json!("none"));
    let bad = web
        .post(meta["registration_endpoint"].as_str().unwrap())
        .json(&json!({"redirect_uris": ["http://evil.example.com/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        400,
        "plain-http redirects off loopback are refused"
    );

    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let authorize = |redirect: &str| {
        let mut u = url::Url::parse(meta["authorization_endpoint"].as_str().unwrap()).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "client-state")
            .append_pair("scope", "mcp:read")
            .append_pair("resource", &gw.url)
            .append_pair("prompt", "consent");
        u.to_string()
    };
    let wrong = web
        .get(authorize("http://127.0.0.1:9/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.status(),
        400,
        "an unregistered redirect_uri is never redirected to"
    );

    // An unknown client needs the user's consent first.
    let page = web.get(authorize(REDIRECT)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookies = set_cookies(&page);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Test &lt;Client&gt;") && html.contains(REDIRECT),
        "{html}"
    );
    let form = [
        ("request", hidden(&html, "request")),
        ("csrf", hidden(&html, "csrf")),
        ("decision", "allow".into()),
    ];
    let forged = web
        .post(format!("{}/oauth/consent", gw.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403, "no CSRF cookie, no consent");
    let consented = web
        .post(format!("{}/oauth/consent", gw.base))
        .header("cookie", cookies.join("; "))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(consented.status(), 302);
    let consent_cookie = set_cookies(&consented)
        .into_iter()
        .find(|c| c.starts_with("__Host-mcp-edge-consent="))
        .unwrap();
    let flow_cookie = set_cookies(&consented)
        .into_iter()
        .find(|c| c.starts_with("__Host-mcp-edge-flow="))
        .expect("the IdP round trip is bound to this browser");
    let to_idp = consented.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let idp_params = query(&to_idp);
    assert!(to_idp.starts_with(&idp.url));
    assert!(
        !idp_params.contains_key("resource"),
        "resource stripped for this IdP"
    );
    assert!(
        !idp_params.contains_key("prompt"),
        "prompt=consent dropped per profile"
    );
    assert_eq!(idp_params["client_id"], CLIENT_ID);
    assert_eq!(idp_params["code_challenge"], challenge, "PKCE intact");

    let back = web.get(&to_idp).send().await.unwrap();
    assert_eq!(back.status(), 302, "the IdP accepted the request");
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let to_client = web
        .get(&callback)
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(to_client.status(), 302);
    let client_params = query(to_client.headers()["location"].to_str().unwrap());
    assert_eq!(client_params["state"], "client-state");
    assert_eq!(
        web.get(&callback)
            .header("cookie", &flow_cookie)
            .send()
            .await
            .unwrap()
            .status(),
        400,
        "login state is single-use"
    );

    let token = |code: &str, verifier: &str| {
        web.post(meta["token_endpoint"].as_str().unwrap())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("client_id", &client_id),
                ("code_verifier", verifier),
                ("resource", &gw.url),
            ])
            .send()
    };
    let wrong_verifier = token(
        &client_params["code"],
        "not-the-verifier-at-all-0123456789012345678",
    )
    .await
    .unwrap();
    assert_eq!(
        wrong_verifier.status(),
        400,
        "the IdP checks the client's PKCE verifier"
    );
    let err: Value = wrong_verifier.json().await.unwrap();
    assert_eq!(err["error"], json!("invalid_grant"));
    // That code is spent at the IdP; log in again (consent remembered) for a fresh one.
    let again = web
        .get(authorize(REDIRECT))
        .header("cookie", &consent_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 302, "consent is remembered");
    let flow_cookie = set_cookies(&again)
        .into_iter()
        .find(|c| c.starts_with("__Host-mcp-edge-flow="))
        .unwrap();
    let back = web
        .get(again.headers()["location"].to_str().unwrap())
        .send()
        .await
        .unwrap();
    let to_client = web
        .get(back.headers()["location"].to_str().unwrap())
        .header("cookie", &flow_cookie)
        .send()
        .await
        .unwrap();
    let code = query(to_client.headers()["location"].to_str().unwrap())["code"].clone();
    let granted = token(&code, &verifier).await.unwrap();
    assert_eq!(granted.status(), 200);
    assert_eq!(granted.headers()["cache-control"], "no-store");
    let tokens: Value = granted.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();

    for (kind, params) in idp.seen() {
        assert!(
            !params.contains_key("resource"),
            "{kind} sent resource to an IdP that rejects it"
        );
        if kind == "token" {
            assert_eq!(
                params["client_secret"], CLIENT_SECRET,
                "the gateway's credentials, from ${{file:…}}"
            );
        }
    }

    let raw = Raw::open_with(&gw.url, Some(access)).await;
    let (_, v) = raw.rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"logged in"}}}"#).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: logged in"));

    let refreshed = web
        .post(meta["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
            ("resource", &gw.url),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_and_need_consent() {
    let (_idp, _alpha, gw) = setup(true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doc_url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let doc =
        json!({"client_id": doc_url, "client_name": "CIMD Client", "redirect_uris": [REDIRECT]});
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/client.json",
            axum::routing::get(move || async move { axum::Json(doc) }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(
        b"verifier-verifier-verifier-verifier-verifier",
    ));
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", gw.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &doc_url)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let page = no_redirects().get(u.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("CIMD Client"));
}

/// The built-in generic profile names no endpoints: the gateway reads them from the IdP's
/// discovery document, with no `oauth-profiles/` beside its configuration, and a login works.
#[tokio::test]
async fn the_generic_profile_reads_the_idps_endpoints_from_its_discovery_document() {
    let idp = common::idp::Idp::start(false).await;
    let alpha = spawn_upstream("alpha").await.unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), CLIENT_SECRET).unwrap();
    let config = format!(
        "auth:\n  mode: jwt\n  issuer: {u}\n  scopes_supported: [mcp:read]\n\
         oauth_proxy:\n  profile: generic\n  vars: {{ issuer: '{u}' }}\n  client_id: {CLIENT_ID}\n  client_secret: ${{file:{s}}}\n",
        u = idp.url,
        s = secret.path().display(),
    );
    let gw = Gateway::start_with(
        Setup {
            routes: vec![("alpha", alpha.url.clone(), "")],
            extra: &config,
        },
        |conf| assert!(!conf.join("oauth-profiles").exists()),
    );
    idp.issue_as(
        &gw.url,
        json!({"sub": "alice", "scope": "mcp:read"}),
        &format!("{}/oauth/callback", gw.base),
    );
    let web = no_redirects();
    // The token endpoint answers 503 until the document is read, then refuses the empty form.
    let mut status = 503;
    for _ in 0..100 {
        status = web
            .post(format!("{}/oauth/token", gw.base))
            .form(&[("grant_type", "none")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 400, "the discovery document was read");

    let client_id = register(&web, &gw, REDIRECT).await;
    let (to_idp, flow) = consent(&web, &gw, &client_id, &[("resource", &gw.url)]).await;
    assert!(
        to_idp.starts_with(&format!("{}/authorize?", idp.url)),
        "the discovered authorization_endpoint: {to_idp}"
    );
    assert_eq!(
        query(&to_idp)["resource"],
        gw.url,
        "generic passes resource"
    );
    let callback = through_idp(&web, &to_idp).await;
    let to_client = web
        .get(&callback)
        .header("cookie", &flow)
        .send()
        .await
        .unwrap();
    let code = query(to_client.headers()["location"].to_str().unwrap())["code"].clone();
    let granted = redeem(&web, &gw, &client_id, &code).await;
    assert_eq!(granted.status(), 200, "the discovered token_endpoint");
    let tokens: Value = granted.json().await.unwrap();
    let raw = Raw::open_with(&gw.url, tokens["access_token"].as_str()).await;
    let (_, v) = raw.rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"discovered"}}}"#).await;
    assert_eq!(
        v["result"]["content"][0]["text"],
        json!("alpha: discovered")
    );
}
