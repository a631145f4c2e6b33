//! A 2025-era MCP upstream serving many routes at once (`/{route}/mcp`), counting what each
//! route is asked: `initialize` (each one issues a session of its own), `tools/list` (one tool,
//! `count_{route}`), `tools/call` (answers how many calls its session had: the state a stateful
//! upstream keeps per session) and the sessions DELETEd.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Counts {
    /// By route and method: requests seen.
    pub requests: HashMap<(String, String), usize>,
    /// Calls per upstream session.
    pub calls: HashMap<String, usize>,
    /// Sessions ended by DELETE.
    pub deleted: Vec<String>,
    next: usize,
}

pub struct Counting {
    /// `http://127.0.0.1:PORT`; route `r`'s upstream is `{base}/{r}/mcp`.
    pub base: String,
    pub counts: Arc<Mutex<Counts>>,
}

impl Counting {
    pub fn url(&self, route: &str) -> String {
        format!("{}/{route}/mcp", self.base)
    }

    /// Requests of `method` route `route` was asked.
    pub fn seen(&self, route: &str, method: &str) -> usize {
        let counts = self.counts.lock().unwrap();
        let key = (route.to_string(), method.to_string());
        counts.requests.get(&key).copied().unwrap_or(0)
    }

    /// Requests of `method` over all routes.
    pub fn total(&self, method: &str) -> usize {
        let counts = self.counts.lock().unwrap();
        counts
            .requests
            .iter()
            .filter(|((_, m), _)| m == method)
            .map(|(_, n)| n)
            .sum()
    }
}

pub async fn start() -> Counting {
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let c = counts.clone();
    let d = counts.clone();
    let app = axum::Router::new().route(
        "/{route}/mcp",
        post(
            move |Path(route): Path<String>, headers: HeaderMap, body: Bytes| {
                let counts = c.clone();
                async move { serve(&counts, &route, &headers, &body) }
            },
        )
        .delete(move |headers: HeaderMap| {
            let counts = d.clone();
            async move {
                if let Some(s) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
                    counts.lock().unwrap().deleted.push(s.to_string());
                }
                StatusCode::OK
            }
        }),
    );
    // A backlog as deep as a production server's (tokio's default is 128): a fresh gateway opens
    // one connection per route at once, and 200 routes here share this one listener.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Counting {
        base: format!("http://{addr}"),
        counts,
    }
}

fn serve(counts: &Mutex<Counts>, route: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let method = req["method"].as_str().unwrap_or_default().to_string();
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut counts = counts.lock().unwrap();
    *counts
        .requests
        .entry((route.to_string(), method.clone()))
        .or_default() += 1;
    if req.get("id").is_none() {
        return StatusCode::ACCEPTED.into_response();
    }
    let id = req["id"].clone();
    let answer = |result: Value| axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    match (method.as_str(), session) {
        ("initialize", _) => {
            counts.next += 1;
            let session = format!("{route}-s{}", counts.next);
            let result = answer(json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {"listChanged": true}},
                "serverInfo": {"name": route, "version": "1"},
            }));
            ([("mcp-session-id", session)], result).into_response()
        }
        (_, None) => StatusCode::BAD_REQUEST.into_response(),
        (_, Some(s)) if counts.deleted.contains(&s) => StatusCode::NOT_FOUND.into_response(),
        ("tools/list", _) => answer(json!({"tools": [{
            "name": format!("count_{route}"),
            "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": true},
        }]}))
        .into_response(),
        ("tools/call", Some(s)) => {
            let n = counts.calls.entry(s.clone()).or_default();
            *n += 1;
            let text = format!("{s} call {n}");
            answer(json!({"content": [{"type": "text", "text": text}]})).into_response()
        }
        _ => answer(json!({})).into_response(),
    }
}
