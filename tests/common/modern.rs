//! A minimal upstream of the stateless revision only (2026-07-28), written for the tests: it
//! refuses `initialize` (404) and any request without the revision's `_meta` envelope (400,
//! -32602); `server/discover`, `tools/list`, `subscriptions/listen`; tools `touch` (announces a
//! tools list change on every open listen stream) and `ask` (answers `input_required` with one
//! elicitation and `requestState: "s1"`, then, retried with the answer, "answered <a>"),
//! `region` (an `x-mcp-header: Region` argument; says which `Mcp-Param-Region` it received) and
//! `bad` (an invalid annotation, on a number).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{ACCEPT, Gateway, answer, http};

/// A stateless upstream with one tool, `touch`, that announces a tools list change.
pub async fn changing_upstream() -> String {
    let (changes, _) = broadcast::channel::<()>(16);
    let app = axum::Router::new().route(
        "/mcp",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let changes = changes.clone();
            async move { serve_upstream(&changes, &headers, &body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

fn serve_upstream(
    changes: &broadcast::Sender<()>,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Response {
    let req: Value = serde_json::from_slice(body).unwrap();
    let id = req["id"].clone();
    let method = req["method"].as_str().unwrap_or_default();
    let envelope = &req["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"];
    if method != "initialize" && req.get("id").is_some() && envelope != "2026-07-28" {
        let error = json!({"jsonrpc": "2.0", "id": id,
            "error": {"code": -32602, "message": "missing _meta protocolVersion"}});
        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let result =
        |r: Value| axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": r})).into_response();
    match method {
        "server/discover" => result(json!({
            "resultType": "complete", "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {"listChanged": true}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "changing", "version": "1"}},
            "ttlMs": 0, "cacheScope": "public",
        })),
        "tools/list" => result(json!({
            "resultType": "complete", "ttlMs": 0, "cacheScope": "public",
            "tools": [{"name": "touch", "inputSchema": {"type": "object"},
                       "annotations": {"readOnlyHint": true}},
                      {"name": "ask", "inputSchema": {"type": "object"},
                       "annotations": {"readOnlyHint": true}},
                      {"name": "region", "annotations": {"readOnlyHint": true},
                       "inputSchema": {"type": "object", "properties": {
                           "region": {"type": "string", "x-mcp-header": "Region"}}}},
                      {"name": "bad", "annotations": {"readOnlyHint": true},
                       "inputSchema": {"type": "object", "properties": {
                           "n": {"type": "number", "x-mcp-header": "N"}}}}],
        })),
        "tools/call"
            if req["params"]["name"] == "ask"
                && req["params"]["requestState"] == "s1"
                && req["params"]["inputResponses"]["q"]["action"] == "accept" =>
        {
            let a = req["params"]["inputResponses"]["q"]["content"]["a"].clone();
            let text = format!("answered {}", a.as_str().unwrap_or("?"));
            result(json!({"resultType": "complete", "content": [{"type": "text", "text": text}]}))
        }
        "tools/call" if req["params"]["name"] == "region" => {
            let seen = headers
                .get("mcp-param-region")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none");
            result(json!({"resultType": "complete",
                "content": [{"type": "text", "text": format!("region header {seen}")}]}))
        }
        "tools/call" if req["params"]["name"] == "ask" => result(json!({
            "resultType": "input_required",
            "inputRequests": {"q": {"method": "elicitation/create", "params": {
                "mode": "form", "message": "which?",
                "requestedSchema": {"type": "object", "properties": {"a": {"type": "string"}}}}}},
            "requestState": "s1",
        })),
        "tools/call" => {
            let _ = changes.send(());
            result(
                json!({"resultType": "complete", "content": [{"type": "text", "text": "touched"}]}),
            )
        }
        "subscriptions/listen" => {
            let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id},
                           "notifications": {"toolsListChanged": true}}});
            let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": id}}});
            let first = futures::stream::once(async move { event(&ack) });
            let rest = tokio_stream_of(changes.subscribe()).map(move |()| event(&changed));
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(first.chain(rest)))
                .unwrap()
        }
        _ => (axum::http::StatusCode::NOT_FOUND, "").into_response(),
    }
}

fn event(v: &Value) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(format!("event: message\ndata: {v}\n\n")))
}

fn tokio_stream_of(rx: broadcast::Receiver<()>) -> impl futures::Stream<Item = ()> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(()) => return Some(((), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// One stateless POST: the body, and the headers as given (`None`: left out).
pub async fn stateless(
    gw: &Gateway,
    body: Value,
    version: Option<&str>,
    method: Option<&str>,
    name: Option<&str>,
) -> (u16, Value) {
    let mut req = http()
        .post(&gw.url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT);
    for (key, value) in [
        ("mcp-protocol-version", version),
        ("mcp-method", method),
        ("mcp-name", name),
    ] {
        if let Some(v) = value {
            req = req.header(key, v);
        }
    }
    let resp = req.body(body.to_string()).send().await.expect("send");
    (resp.status().as_u16(), answer(resp).await)
}

pub fn envelope(version: &str) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}})
}
