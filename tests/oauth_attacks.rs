//! The OAuth proxy under attack, each tried as the attacker would: a login link sent to another
//! browser (confused deputy), a refresh token used by another client, error redirects to a
//! redirect URI nobody consented to, and client metadata documents on private addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::oauth::*;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test]
async fn a_login_link_opened_in_another_browser_yields_nothing() {
    let (_idp, _alpha, gw) = setup(true).await;
    let web = no_redirects();
    let client_id = register(&web, &gw, REDIRECT).await;

    // `prompt=none` from a browser that never consented still meets the consent page.
    let silent = web
        .get(authorize(
            &gw,
            &client_id,
            REDIRECT,
            &[("response_type", "code"), ("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(silent.status(), 200);
    assert!(silent.headers().get("location").is_none());

    // The attacker consents in their own browser and sends the IdP link to a signed-in victim.
    let (to_idp, attacker_cookie) = consent(&web, &gw, &client_id, &[("prompt", "none")]).await;
    let callback = through_idp(&web, &to_idp).await;
    for victim_cookie in [None, Some("__Host-mcp-edge-flow=AAAAAAAAAAAAAAAAAAAAAA")] {
        let mut req = web.get(&callback);
        if let Some(c) = victim_cookie {
            req = req.header("cookie", c);
        }
        let victim = req.send().await.unwrap();
        assert_eq!(victim.status(), 400, "the victim's browser gets no code");
        assert!(
            victim.headers().get("location").is_none(),
            "nothing goes to the client"
        );
        assert!(victim.text().await.unwrap().contains("another browser"));
    }
    // The browser that consented finishes its own login.
    let own = web
        .get(&callback)
        .header("cookie", &attacker_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 302);
    let location = own.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(REDIRECT) && query(&location).contains_key("code"));
    assert!(
        set_cookies(&own).contains(&"__Host-mcp-edge-flow=".to_string()),
        "the flow cookie is cleared at the callback"
    );
}

#[tokio::test]
async fn a_refresh_token_works_only_for_the_client_it_was_issued_to() {
    let (_idp, _alpha, gw) = setup(true).await;
    let web = no_redirects();
    let alice_app = register(&web, &gw, REDIRECT).await;
    let other_app = register(&web, &gw, REDIRECT).await;
    let (to_idp, flow) = consent(&web, &gw, &alice_app, &[]).await;
    let callback = through_idp(&web, &to_idp).await;
    let to_client = web
        .get(&callback)
        .header("cookie", &flow)
        .send()
        .await
        .unwrap();
    let code = query(to_client.headers()["location"].to_str().unwrap())["code"].clone();
    let tokens: Value = redeem(&web, &gw, &alice_app, &code)
        .await
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let use_refresh = |client: &str, token: &str| {
        web.post(format!("{}/oauth/token", gw.base))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", client),
            ])
            .send()
    };
    let stolen = use_refresh(&other_app, refresh).await.unwrap();
    assert_eq!(stolen.status(), 400, "another client cannot use it");
    let err: Value = stolen.json().await.unwrap();
    assert_eq!(err["error"], json!("invalid_grant"));
    let forged = use_refresh(&alice_app, "an-idp-refresh-token")
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        400,
        "only tokens the gateway bound are taken"
    );
    let own = use_refresh(&alice_app, refresh).await.unwrap();
    assert_eq!(own.status(), 200, "the client it was issued to refreshes");
}

#[tokio::test]
async fn authorize_errors_do_not_redirect_to_a_client_nobody_consented_to() {
    let (_idp, _alpha, gw) = setup(true).await;
    let web = no_redirects();
    let evil = "https://attacker.example/cb";
    let client_id = register(&web, &gw, evil).await;
    for extra in [
        vec![("response_type", "token")],
        vec![
            ("response_type", "code"),
            ("code_challenge_method", "plain"),
        ],
    ] {
        let r = web
            .get(authorize(&gw, &client_id, evil, &extra))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{extra:?}");
        assert!(
            r.headers().get("location").is_none(),
            "no open redirect: {extra:?}"
        );
    }
}

/// Serves a client metadata document of `padding` extra bytes and counts the fetches.
async fn metadata_server(padding: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let doc = json!({"client_id": url, "client_name": "Doc Client", "redirect_uris": [REDIRECT], "pad": "x".repeat(padding)});
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/client.json",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    (url, hits)
}

/// Starts a login for the client whose metadata document is at `doc`.
async fn authorize_document(web: &reqwest::Client, gw: &Gateway, doc: &str) -> reqwest::Response {
    web.get(authorize(gw, doc, REDIRECT, &[("response_type", "code")]))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_metadata_documents_on_private_addresses_or_too_large_are_refused() {
    let (_idp, _alpha, gw) = setup(false).await;
    let web = no_redirects();
    let (url, hits) = metadata_server(0).await;
    let r = authorize_document(&web, &gw, &url).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("127.0.0.1") && !body.contains("connect") && !body.contains("public"),
        "one generic error, nothing about the network: {body}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a loopback address is never fetched"
    );
    let closed = format!("http://127.0.0.1:{}/client.json", free_port());
    let r = authorize_document(&web, &gw, &closed).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, body),
        "a closed port looks the same"
    );

    // Allow-listed, a document over 16 KiB is still refused; a small one is used (and cached).
    let (_idp, _alpha, gw) = setup(true).await;
    let (big, _) = metadata_server(20 * 1024).await;
    let r = authorize_document(&web, &gw, &big).await;
    assert_eq!(r.status(), 400, "too large");
    let (small, hits) = metadata_server(0).await;
    for _ in 0..2 {
        let r = authorize_document(&web, &gw, &small).await;
        assert_eq!(
            r.status(),
            200,
            "consent page for the allow-listed document"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once, then cached");
}
