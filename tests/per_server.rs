//! The per-server door `/servers/{route}/mcp` takes the same pipeline as `/mcp`: rate limits,
//! audit records, authentication, per-tool policy and identity toward the upstream apply there
//! exactly as on the merged endpoint (it was once a second data path that skipped them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::idp::Idp;
use common::*;
use serde_json::{Value, json};

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"text":"hi","ms":1,"bytes":1}}}).to_string()
}

fn server_url(gw: &Gateway, route: &str) -> String {
    format!("{}/servers/{route}/mcp", gw.base)
}

#[tokio::test]
async fn per_server_calls_are_rate_limited_and_audited() {
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(Setup {
        routes: vec![(
            "alpha",
            alpha.url.clone(),
            "limits:\n  per_user_rpm: 60\n  burst: 2",
        )],
        extra: &audit_jsonl(dir.path()),
    });
    let hammer = Raw::open(&server_url(&gw, "alpha")).await;
    let other = Raw::open(&server_url(&gw, "alpha")).await;
    for i in 1..=2 {
        let (status, v) = hammer.rpc(call(i, "echo")).await;
        assert_eq!(
            (status, v["result"]["content"][0]["text"].clone()),
            (200, json!("alpha: hi"))
        );
    }
    let resp = hammer.post(call(3, "echo")).await;
    assert_eq!(resp.status(), 429, "past the route's bucket");
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(3), json!(-32029))
    );
    let (status, _) = other.rpc(call(1, "echo")).await;
    assert_eq!(status, 200, "another session is another caller");
    assert_eq!(
        gw.metric("mcp_edge_rate_limited_total{scope=\"route\"}")
            .await,
        1.0
    );
    assert!(gw.terminate().success(), "graceful stop");

    let records: Vec<Value> = audit_records(dir.path());
    let summary: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (s("route"), s("target"), s("decision"), s("outcome"))
        })
        .collect();
    let row = |d: &str, o: &str| ("alpha".into(), "echo".into(), d.to_string(), o.to_string());
    assert_eq!(
        summary,
        vec![
            row("allowed", "ok"),
            row("allowed", "ok"),
            row("refused", "rate_limited"),
            row("allowed", "ok"),
        ],
        "one record per per-server call and refusal, none for the handshake"
    );
    assert_eq!(records[0]["arguments"]["text"]["type"], json!("string"));
    assert_eq!(records[0]["upstream_status"], json!(200));
}

#[tokio::test]
async fn per_server_authenticates_applies_tool_policy_and_sends_identity_not_tokens() {
    let idp = Idp::start(false).await;
    let data = spawn_upstream("alpha").await.unwrap();
    let route = "visibility: [team:data]\nidentity: headers\naccess:\n  read: [mcp:read]\n  write: [mcp:write]\n\
        tools:\n  large: { deny: true }\n  wait: { access: write }\n  echo: { access: read }";
    let gw = Gateway::start(Setup {
        routes: vec![("data", data.url.clone(), route)],
        extra: &format!(
            "auth:\n  mode: jwt\n  issuer: {}\n  scopes_supported: [mcp:read, mcp:write]\n",
            idp.url
        ),
    });
    let url = server_url(&gw, "data");

    // No token: 401 with the challenge, as on /mcp.
    let r = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(call(1, "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata")
    );

    // A caller outside the route's groups finds no endpoint there.
    let outsider = idp.token(
        &gw.url,
        json!({"groups": ["team:other"], "scope": "mcp:read"}),
    );
    let r = http()
        .post(&url)
        .header("authorization", format!("Bearer {outsider}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let token = idp.token(
        &gw.url,
        json!({"groups": ["team:data"], "scope": "mcp:read"}),
    );
    let reader = Raw::open_with(&url, Some(&token)).await;
    let names = reader.tool_names().await;
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert!(
        !names.contains(&"large".to_string()) && !names.contains(&"wait".to_string()),
        "denied and out-of-scope tools are not listed: {names:?}"
    );
    let (_, v) = reader.rpc(call(2, "large")).await;
    assert_eq!(v["error"]["code"], json!(-32602));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool"),
        "{v}"
    );
    let r = reader.post(call(3, "wait")).await;
    assert_eq!(r.status(), 403, "write class needs mcp:write (step-up)");
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let (_, v) = reader.rpc(call(4, "echo")).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: hi"));

    let seen = data.probe.headers.lock().unwrap().clone();
    assert!(
        seen.contains(&("x-mcp-edge-subject".into(), "alice".into())),
        "the upstream learns who calls: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, v)| !v.contains(&token)),
        "the caller's token never goes upstream"
    );
}
