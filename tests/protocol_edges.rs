//! The transport and JSON-RPC edges, over raw HTTP: every bad request gets a specific answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn json_rpc_errors_carry_the_right_code_and_id() {
    let (_a, _b, gw) = standard_gateway().await;
    let raw = Raw::open(&gw.url).await;

    let (status, v) = raw.rpc("{not json").await;
    assert_eq!((status, code(&v)), (400, -32700), "{v}");

    let (status, v) = raw.rpc(r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!((status, code(&v)), (400, -32600), "{v}");
    let (status, v) = raw
        .rpc(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .await;
    assert_eq!((status, code(&v)), (400, -32600), "{v}");

    let (status, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":"m","method":"no/such"}"#)
        .await;
    assert_eq!(
        (status, code(&v), v["id"].clone()),
        (200, -32601, json!("m")),
        "{v}"
    );

    let (status, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__nope"}}"#)
        .await;
    // Unknown upstream tool: the upstream's own answer, re-identified.
    assert_eq!((status, v["id"].clone()), (200, json!(7)), "{v}");
    assert!(
        v.get("error").is_some() || v["result"]["isError"] == json!(true),
        "{v}"
    );

    let (_, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"nobody__echo"}}"#)
        .await;
    assert_eq!((code(&v), v["id"].clone()), (-32602, json!(8)), "{v}");
    let (_, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo"}}"#)
        .await;
    assert_eq!(code(&v), -32602, "an unprefixed name is unknown: {v}");

    let (_, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":10,"method":"tools/list","params":{"cursor":"abc"}}"#)
        .await;
    assert_eq!(code(&v), -32602, "{v}");

    let (status, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":11,"method":"ping"}"#)
        .await;
    assert_eq!((status, v["result"].clone()), (200, json!({})));

    let r = raw
        .post(r#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#)
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn transport_rules_size_media_types_versions_origin() {
    let (_a, _b, gw) = standard_gateway().await;
    let raw = Raw::open(&gw.url).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    let send =
        |ct: &'static str, accept: &'static str, version: &'static str, origin: Option<&str>| {
            let mut b = raw
                .client
                .post(&raw.url)
                .header("content-type", ct)
                .header("accept", accept)
                .header("mcp-protocol-version", version)
                .header("mcp-session-id", raw.session.clone().expect("session"))
                .body(ping);
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            b.send()
        };
    let json = "application/json";
    let v = "2025-11-25";
    for (ct, accept, version, origin, want) in [
        (json, ACCEPT, v, None, 200),
        ("application/json; charset=utf-8", ACCEPT, v, None, 200),
        ("text/plain", ACCEPT, v, None, 415),
        (json, "application/json", v, None, 406),
        (json, "text/event-stream", v, None, 406),
        (json, ACCEPT, "1999-01-01", None, 400),
        (json, ACCEPT, v, Some("http://evil.example.com"), 403),
        // The public URL's own origin is allowed.
        (json, ACCEPT, v, Some(gw.base.as_str()), 200),
    ] {
        let got = send(ct, accept, version, origin)
            .await
            .expect("send")
            .status();
        assert_eq!(got, want, "{ct} / {accept} / {version} / {origin:?}");
    }

    // Body cap: exactly the cap is served, one byte more is 413.
    let call = |pad: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"alpha__echo","arguments":{{"text":"{}"}}}}}}"#,
            "z".repeat(pad)
        )
    };
    let overhead = call(0).len();
    let (status, v) = raw.rpc(call(BODY_CAP - overhead)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["content"][0]["text"].as_str().map(str::len),
        Some(7 + BODY_CAP - overhead)
    );
    let r = raw.post(call(BODY_CAP - overhead + 1)).await;
    assert_eq!(r.status(), 413);

    // Header cap (default 32 KiB): a 30 KiB header is served, larger heads are 431 on every door
    // (past about 1 MiB Pingora refuses the head itself, with 400).
    let (status, _) = {
        let resp = raw
            .request(ping)
            .header("x-pad", "p".repeat(30 * 1024))
            .send()
            .await
            .expect("send");
        (resp.status(), ())
    };
    assert_eq!(status, 200);
    for url in [
        gw.url.clone(),
        format!("{}/.well-known/oauth-protected-resource", gw.base),
    ] {
        let r = raw
            .client
            .post(&url)
            .header("x-pad", "p".repeat(512 * 1024))
            .body(ping)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 431, "{url}");
    }

    let r = http()
        .get(&gw.url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 400, "a stream needs a session");
    let r = raw
        .client
        .get(&gw.url)
        .header("accept", "application/json")
        .header("mcp-session-id", raw.session.clone().expect("session"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 406);
    let r = raw
        .client
        .get(&gw.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", raw.session.clone().expect("session"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    drop(r);
    let r = http()
        .post(format!("{}/elsewhere", gw.base))
        .body("{}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn sessions_are_sealed_checked_and_ended() {
    let (_a, _b, gw) = standard_gateway().await;
    let mut raw = Raw::open(&gw.url).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let token = raw.session.clone().expect("session");

    raw.session = None;
    assert_eq!(raw.post(ping).await.status(), 400, "missing session id");
    raw.session = Some(format!("{token}x"));
    assert_eq!(raw.post(ping).await.status(), 404, "tampered session id");
    raw.session = Some("made-up".into());
    assert_eq!(raw.post(ping).await.status(), 404, "unknown session id");

    raw.session = Some(token.clone());
    assert_eq!(raw.post(ping).await.status(), 200);
    let r = raw
        .client
        .delete(&gw.url)
        .header("mcp-session-id", &token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), 200);
    assert_eq!(
        raw.post(ping).await.status(),
        404,
        "an ended session is gone"
    );
}

#[tokio::test]
async fn upstream_forgetting_its_session_is_reinitialized_once() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let addr = alpha
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    let raw = Raw::open(&gw.url).await;
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"again"}}}"#;
    let (_, v) = raw.rpc(call).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: again"));

    // The upstream restarts on the same address and has forgotten every session.
    drop(alpha);
    let restarted = loop {
        if let Ok(u) = spawn_upstream_on("alpha", &addr).await {
            break u;
        }
        tokio::task::yield_now().await;
    };
    let (status, v) = raw.rpc(call).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["result"]["content"][0]["text"],
        json!("alpha: again"),
        "{v}"
    );
    let (_, v) = raw.rpc(call).await;
    assert_eq!(
        v["result"]["content"][0]["text"],
        json!("alpha: again"),
        "replacement remembered: {v}"
    );
    drop(restarted);
}

#[tokio::test]
async fn stateless_headers_must_match_the_body() {
    let (_a, _b, gw) = standard_gateway().await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"alpha__echo","arguments":{"text":"s"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}})
    .to_string();
    let send = |method: &'static str, name: &'static str| {
        http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .header("mcp-name", name)
            .body(body.clone())
            .send()
    };
    let ok = send("tools/call", "alpha__echo").await.expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        answer(ok).await["result"]["content"][0]["text"],
        json!("alpha: s")
    );
    assert_eq!(
        send("tools/call", "beta__echo")
            .await
            .expect("send")
            .status(),
        400
    );
    assert_eq!(
        send("tools/list", "alpha__echo")
            .await
            .expect("send")
            .status(),
        400
    );
}
