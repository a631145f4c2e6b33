//! `sessions.store`: what instances must agree on beyond sealed ids, in a real Redis. A DELETEd
//! session stays ended on every instance and after a restart; an OAuth login state is used once
//! across instances. Without the store both are per instance (documented).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::idp::Idp;
use common::oauth::*;
use common::redis::SESSION_KEY;
use common::*;
use serde_json::json;

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
    let deleted = on_a.delete_session().await;
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
    let client_id = register(&web, &a, REDIRECT).await;
    let (to_idp, flow) = consent(&web, &a, &client_id, &[]).await;
    let callback = through_idp(&web, &to_idp).await;
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
