//! `sessions.store`: what instances must agree on beyond sealed ids, in a real Redis. A DELETEd
//! session stays ended on every instance and after a restart; an OAuth login state is used once
//! across instances. Without the store both are per instance (documented).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::idp::Idp;
use common::oauth::*;
use common::redis::SESSION_KEY;
use common::*;
use serde_json::{Value, json};

fn store_config(port: u16) -> String {
    format!("sessions:\n  keys: [{SESSION_KEY}]\n  store: redis://127.0.0.1:{port}/0\n")
}

fn on(gw: &Gateway, raw: &Raw) -> Raw {
    Raw {
        client: http(),
        url: gw.url.clone(),
        session: raw.session.clone(),
        version: raw.version.clone(),
        bearer: None,
    }
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

#[tokio::test]
async fn a_deleted_session_stays_ended_on_every_instance_and_after_a_restart() {
    let redis = common::redis::start();
    let alpha = spawn_upstream("alpha").await.unwrap();
    let setup = || Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: Box::leak(store_config(redis.port).into_boxed_str()),
    };
    let a = Gateway::start(setup());
    let b = Gateway::start(setup());
    let on_a = Raw::open(&a.url).await;
    let on_b = on(&b, &on_a);
    assert_eq!(on_b.rpc(PING).await.0, 200, "sealed sessions work anywhere");
    let deleted = on_a
        .client
        .delete(&a.url)
        .header("mcp-session-id", on_a.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(on_a.rpc(PING).await.0, 404);
    assert_eq!(
        on_b.rpc(PING).await.0,
        404,
        "another instance knows it ended"
    );
    drop(b);
    let c = Gateway::start(setup());
    assert_eq!(
        on(&c, &on_a).rpc(PING).await.0,
        404,
        "and so does a restarted one"
    );
    let fresh = Raw::open(&c.url).await;
    assert_eq!(fresh.rpc(PING).await.0, 200, "other sessions are untouched");
}

#[tokio::test]
async fn an_oauth_login_state_is_used_once_across_instances() {
    let redis = common::redis::start();
    let idp = Idp::start(true).await;
    let alpha = spawn_upstream("alpha").await.unwrap();
    let extra = store_config(redis.port);
    let a = oauth_gateway(&idp, &alpha.url, &extra);
    let b = oauth_gateway(&idp, &alpha.url, &extra);
    idp.issue_as(
        &a.url,
        json!({"sub": "alice"}),
        &format!("{}/oauth/callback", a.base),
    );
    let web = no_redirects();
    let reg: Value = web
        .post(format!("{}/oauth/register", a.base))
        .json(&json!({"redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", a.base)).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", reg["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", &"c".repeat(43))
        .append_pair("code_challenge_method", "S256");
    let page = web.get(u.as_str()).send().await.unwrap();
    let csrf = set_cookies(&page).join("; ");
    let html = page.text().await.unwrap();
    let consented = web
        .post(format!("{}/oauth/consent", a.base))
        .header("cookie", csrf)
        .form(&[
            ("request", hidden(&html, "request")),
            ("csrf", hidden(&html, "csrf")),
            ("decision", "allow".into()),
        ])
        .send()
        .await
        .unwrap();
    let flow = set_cookies(&consented)
        .into_iter()
        .find(|c| c.starts_with("__Host-mcp-edge-flow="))
        .unwrap();
    let to_idp = consented.headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let back = web.get(&to_idp).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    let first = web
        .get(&callback)
        .header("cookie", &flow)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302, "the login completes on instance A");
    let replay = callback.replace(&a.base, &b.base);
    let again = web
        .get(&replay)
        .header("cookie", &flow)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "instance B knows the state was used");
    assert!(again.text().await.unwrap().contains("already used"));
}
