//! Dead, slow and broken upstreams: each costs only its own route, with a JSON-RPC error that
//! carries the request's id and says nothing internal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP server that answers every connection with `reply` (empty: closes at once).
async fn broken_upstream(reply: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                if !reply.is_empty() {
                    let _ = sock.write_all(reply).await;
                }
            });
        }
    });
    format!("http://{addr}/mcp")
}

fn refused_url() -> String {
    format!("http://127.0.0.1:{}/mcp", free_port())
}

fn call(id: u32, tool: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
        .to_string()
}

#[tokio::test]
async fn dead_and_broken_upstreams_cost_only_their_own_route() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let routes = vec![
        ("alpha", alpha.url.clone(), ""),
        ("refused", refused_url(), "  timeout: 5s"),
        ("reset", broken_upstream(b"").await, "  timeout: 5s"),
        ("fivehundred", broken_upstream(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops").await, "  timeout: 5s"),
        ("garbage", broken_upstream(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello").await, "  timeout: 5s"),
    ];
    let gw = Gateway::start(Setup { routes, extra: "" });
    let raw = Raw::open(&gw.url).await;

    let (_, list) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"alpha__echo"), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("alpha__")), "{names:?}");

    for (i, route) in ["refused", "reset", "fivehundred", "garbage"]
        .iter()
        .enumerate()
    {
        let id = 100 + i as u32;
        let started = Instant::now();
        let (status, v) = raw
            .rpc(call(id, &format!("{route}__echo"), json!({"text": "x"})))
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{route} answered within its timeout"
        );
        assert_eq!(status, 200, "{route}: {v}");
        assert_eq!(v["id"], json!(id), "{route}: {v}");
        assert_eq!(v["error"]["code"], json!(-32603), "{route}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(route), "{route}: {msg}");
        assert!(!msg.contains("127.0.0.1"), "no addresses leak: {msg}");
        // Other routes are unaffected.
        let (_, ok) = raw
            .rpc(call(1, "alpha__echo", json!({"text": route})))
            .await;
        assert_eq!(
            ok["result"]["content"][0]["text"],
            json!(format!("alpha: {route}"))
        );
    }
}

#[tokio::test]
async fn slow_upstream_times_out_with_the_request_id_and_is_cancelled() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "  timeout: 300ms")],
        extra: "",
    });
    let raw = Raw::open(&gw.url).await;
    let started = Instant::now();
    let (status, v) = raw.rpc(call(42, "alpha__wait", json!({"ms": 20000}))).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 200);
    assert_eq!(v["id"], json!(42), "{v}");
    assert_eq!(v["error"]["code"], json!(-32603), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within"),
        "{v}"
    );
    assert!(
        eventually(10, || alpha.probe.cancelled.load(Ordering::SeqCst) == 1).await,
        "the timed-out request was not cancelled upstream"
    );
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    let raw = Raw::open(&gw.url).await;
    let resp = raw.post(call(5, "alpha__wait", json!({"ms": 30000}))).await;
    assert_eq!(resp.status(), 200);
    assert!(eventually(10, || alpha.probe.waiting.load(Ordering::SeqCst) == 1).await);
    drop(resp);
    drop(raw);
    assert!(
        eventually(10, || alpha.probe.cancelled.load(Ordering::SeqCst) == 1).await,
        "the upstream kept working for a client that left"
    );
}

/// An MCP server that answers `initialize` and `tools/list` properly, and every `tools/call`
/// with one SSE event that never ends (64 KiB of `x` after another, until the gateway hangs up).
async fn flooding_upstream() -> String {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move {
            let msg: Value = serde_json::from_str(&body).unwrap_or_default();
            let id = msg["id"].clone();
            match msg["method"].as_str() {
                Some("initialize") => axum::Json(json!({"jsonrpc":"2.0","id":id,"result":{
                    "protocolVersion":"2025-11-25","capabilities":{"tools":{}},
                    "serverInfo":{"name":"flood","version":"1"}}}))
                .into_response(),
                Some("tools/list") => axum::Json(json!({"jsonrpc":"2.0","id":id,"result":{
                    "tools":[{"name":"flood","inputSchema":{"type":"object"}}]}}))
                .into_response(),
                Some("tools/call") => {
                    let head = futures::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data: "))
                    });
                    let endless =
                        futures::stream::repeat(bytes::Bytes::from(vec![b'x'; 64 * 1024]))
                            .map(Ok::<_, std::io::Error>);
                    axum::response::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(axum::body::Body::from_stream(head.chain(endless)))
                        .unwrap()
                }
                _ => axum::http::StatusCode::ACCEPTED.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn an_endless_upstream_event_is_cut_at_the_cap_with_memory_bounded() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let gw = Gateway::start(Setup {
        routes: vec![
            ("alpha", alpha.url.clone(), ""),
            ("flood", flooding_upstream().await, "  timeout: 60s"),
        ],
        extra: "max_upstream_message_bytes: 1048576\n",
    });
    let raw = Raw::open(&gw.url).await;
    let started = Instant::now();
    for id in 1..=3 {
        let (status, v) = raw.rpc(call(id, "flood__flood", json!({}))).await;
        assert_eq!(status, 200);
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (json!(id), json!(-32603)),
            "{v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("over 1048576 bytes"), "{message}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cut at the cap, not at the timeout"
    );
    let rss = rss_kib(gw.pid());
    assert!(
        rss < 128 * 1024,
        "the gateway's memory stays bounded: {rss} KiB"
    );
    let (_, ok) = raw
        .rpc(call(9, "alpha__echo", json!({"text": "still here"})))
        .await;
    assert_eq!(
        ok["result"]["content"][0]["text"],
        json!("alpha: still here")
    );
}
