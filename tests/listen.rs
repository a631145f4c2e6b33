//! `subscriptions/listen` on `/mcp` (2026-07-28): the acknowledgement first, tagged with the
//! request's id; list changes from a reload of the gateway's routes and from an upstream's own
//! listen stream, re-tagged; only the kinds asked for; and the method unknown to 2025 sessions.
//! The upstream is `common::modern`'s 2026-07-28-only server, whose `touch` tool announces that
//! its tools changed on every open listen stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::modern::changing_upstream;
use common::*;
use serde_json::{Value, json};

fn envelope() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": {}})
}

fn post_stateless(
    gw: &Gateway,
    method: &str,
    name: Option<&str>,
    body: Value,
) -> reqwest::RequestBuilder {
    let mut req = http()
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    req.body(body.to_string())
}

#[tokio::test]
async fn listen_streams_carry_the_gateways_and_the_upstreams_list_changes() {
    let changing = changing_upstream().await;
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("changing", changing, ""), ("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    let listen = json!({"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen",
        "params": {"_meta": envelope(), "notifications": {"toolsListChanged": true, "resourcesListChanged": false}}});
    let resp = post_stateless(&gw, "subscriptions/listen", None, listen)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();

    // The acknowledgement comes first: the request's id, the kinds honoured.
    let ack = sse_events(&mut stream, &mut buf, 1).await;
    assert_eq!(
        ack[0]["method"],
        json!("notifications/subscriptions/acknowledged"),
        "{ack:?}"
    );
    assert_eq!(
        ack[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        json!("listen-1")
    );
    assert_eq!(
        ack[0]["params"]["notifications"],
        json!({"toolsListChanged": true})
    );

    // An upstream's change, from its own listen stream, re-tagged for this client.
    let touch = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "changing__touch", "arguments": {}, "_meta": envelope()}});
    let touched = post_stateless(&gw, "tools/call", Some("changing__touch"), touch)
        .send()
        .await
        .unwrap();
    assert_eq!(
        common::answer(touched).await["result"]["content"][0]["text"],
        json!("touched")
    );
    let changed = sse_events(&mut stream, &mut buf, 1).await;
    assert_eq!(changed.len(), 1, "the upstream's change did not arrive");
    assert_eq!(
        changed[0]["method"],
        json!("notifications/tools/list_changed")
    );
    assert_eq!(
        changed[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        json!("listen-1")
    );

    // The gateway's own change (a route added by a reload): tools only, as asked.
    std::fs::write(
        gw.routes_dir().join("beta.yaml"),
        format!(
            "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            beta.url
        ),
    )
    .unwrap();
    let reloaded = sse_events(&mut stream, &mut buf, 1).await;
    assert_eq!(reloaded.len(), 1, "the reload's change did not arrive");
    assert_eq!(
        reloaded[0]["method"],
        json!("notifications/tools/list_changed")
    );
    assert_eq!(
        reloaded[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        json!("listen-1")
    );

    // A 2025 session has its GET stream instead.
    let raw = Raw::open(&gw.url).await;
    let (_, e) = raw
        .rpc(
            json!({"jsonrpc": "2.0", "id": 5, "method": "subscriptions/listen", "params": {}})
                .to_string(),
        )
        .await;
    assert_eq!(e["error"]["code"], json!(-32601), "{e}");
}
