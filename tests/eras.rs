//! Era bridging, both directions: a 2026-07-28 client in front of a 2025-only upstream, and a
//! 2025 session in front of an upstream that speaks only 2026-07-28 (served statelessly inside
//! the session; its input rounds driven through the session's stream).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::modern::stateless;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_2025_upstreams_request_becomes_an_input_round_for_a_2026_client() {
    let legacy = mcp_edge::demo::spawn_upstream_with(
        "legacy",
        "127.0.0.1:0",
        mcp_edge::demo::Mode::LegacyOnly,
    )
    .await
    .unwrap();
    let gw = Gateway::start(Setup {
        routes: vec![("legacy", legacy.url.clone(), "")],
        extra: "",
    });
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |id: &str, extra: Value| {
        let mut params = json!({"name":"legacy__confirm","arguments":{},"_meta": meta.clone()});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params": params})
    };
    let send = |body: Value| {
        stateless(
            &gw,
            body,
            Some("2026-07-28"),
            Some("tools/call"),
            Some("legacy__confirm"),
        )
    };

    // The upstream's elicitation comes back as the round's one input request; the upstream
    // call is held meanwhile. No server request is sent on the 2026 stream.
    let (status, asked) = send(call("c1", json!({}))).await;
    assert_eq!(status, 200, "{asked}");
    let result = &asked["result"];
    assert_eq!(result["resultType"], json!("input_required"), "{asked}");
    let request = &result["inputRequests"]["mcp-edge.upstream"];
    assert_eq!(request["method"], json!("elicitation/create"), "{asked}");
    assert_eq!(request["params"]["message"], json!("legacy asks: proceed?"));
    let state = result["requestState"].clone();

    // The retry answers; the held call goes on and ends with the upstream's result.
    let answer = json!({"mcp-edge.upstream": {"action": "accept", "content": {"answer": "yes"}}});
    let retry = json!({"requestState": state, "inputResponses": answer});
    let (status, done) = send(call("c2", retry.clone())).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["id"], json!("c2"));
    assert_eq!(
        done["result"]["content"][0]["text"],
        json!("legacy heard: yes"),
        "{done}"
    );
    assert_eq!(done["result"]["resultType"], json!("complete"));

    // The state continued its call once; again, it names nothing.
    let (_, e) = send(call("c3", retry)).await;
    assert_eq!(common::code(&e), -32602, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("gone"),
        "{e}"
    );
}

#[tokio::test]
async fn a_2025_session_reaches_an_upstream_that_speaks_only_2026() {
    let modern = common::modern::changing_upstream().await;
    let (alpha, _beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("modern", modern, ""), ("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    // The upstream refuses initialize; the session serves it statelessly, envelope added.
    let raw = Raw::open(&gw.url).await;
    let names = raw.tool_names().await;
    assert!(
        names.contains(&"modern__touch".to_string()) && names.contains(&"alpha__echo".to_string()),
        "{names:?}"
    );
    let call = |name: &str| {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{}}})
            .to_string()
    };
    let (_, v) = raw.rpc(call("modern__touch")).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("touched"), "{v}");
    assert!(
        v["result"].get("resultType").is_none(),
        "a 2025 client sees no 2026 fields: {v}"
    );
    // Input the upstream asks for is asked of the client on the call's own stream (only what
    // it declared: this session declared nothing, so the call ends with a clear error).
    let (_, e) = raw.rpc(call("modern__ask")).await;
    assert_eq!(code(&e), -32603, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not declare"),
        "{e}"
    );
}

#[tokio::test]
async fn a_2026_upstreams_input_round_is_driven_through_a_2025_session() {
    let modern = common::modern::changing_upstream().await;
    let gw = Gateway::start(Setup {
        routes: vec![("modern", modern, "")],
        extra: "",
    });
    let post = |session: Option<&str>, body: String| {
        let mut b = http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        b.body(body).send()
    };
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{"elicitation":{}},
        "clientInfo":{"name":"raw","version":"1"}}});
    let resp = post(None, init.to_string()).await.unwrap();
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let call = json!({"jsonrpc":"2.0","id":"c","method":"tools/call",
        "params":{"name":"modern__ask","arguments":{}}});
    let resp = post(Some(&session), call.to_string()).await.unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let asked = sse_events(&mut stream, &mut text, 1).await.remove(0);
    assert_eq!(asked["method"], json!("elicitation/create"), "{asked}");
    assert_eq!(asked["params"]["message"], json!("which?"));
    // The client answers; the gateway sends the call again with the answer and the state.
    let answer = json!({"jsonrpc":"2.0","id": asked["id"],
        "result":{"action":"accept","content":{"a":"blue"}}});
    assert_eq!(
        post(Some(&session), answer.to_string())
            .await
            .unwrap()
            .status(),
        202
    );
    let last = sse_events(&mut stream, &mut text, 1).await.remove(0);
    assert_eq!(
        last["result"]["content"][0]["text"],
        json!("answered blue"),
        "{last}"
    );
    // An answer from another session is no answer (ids are bound to the session that was asked).
    let other = post(None, init.to_string()).await.unwrap();
    let other = other.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let stolen = json!({"jsonrpc":"2.0","id": asked["id"], "result":{"action":"accept"}});
    assert_eq!(
        post(Some(&other), stolen.to_string())
            .await
            .unwrap()
            .status(),
        400
    );
}
