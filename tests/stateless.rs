//! The stateless 2026-07-28 revision over raw HTTP: its error contract (codes, statuses, ids),
//! the results it requires, Base64 header values, and routes served under their own names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

/// One stateless POST: the body, and the headers as given (`None`: left out).
async fn stateless(
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

fn envelope(version: &str) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}})
}

#[tokio::test]
async fn the_stateless_contract_has_its_own_codes_statuses_and_results() {
    let (_a, _b, gw) = standard_gateway().await;
    let v = Some("2026-07-28");
    let list = |meta: Value| json!({"jsonrpc":"2.0","id":"l1","method":"tools/list","params":{"_meta": meta}});

    // Merged lists carry what the revision requires of a result.
    let (status, ok) = stateless(
        &gw,
        list(envelope("2026-07-28")),
        v,
        Some("tools/list"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["result"]["resultType"], json!("complete"));
    assert!(ok["result"]["ttlMs"].is_u64(), "{ok}");
    let scope = ok["result"]["cacheScope"].as_str().unwrap_or_default();
    assert!(scope == "public" || scope == "private", "{ok}");
    assert!(ok["result"]["tools"].as_array().unwrap().len() > 2);

    // Each broken rule, with its code, its status and the request's id.
    let no_caps = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    /// What is broken, the body, the version and method headers, the status and code expected.
    type Case<'a> = (&'a str, Value, Option<&'a str>, Option<&'a str>, u16, i64);
    let cases: Vec<Case> = vec![
        (
            "no clientCapabilities",
            list(no_caps),
            v,
            Some("tools/list"),
            400,
            -32602,
        ),
        (
            "header without envelope",
            json!({"jsonrpc":"2.0","id":"l1","method":"tools/list"}),
            v,
            Some("tools/list"),
            400,
            -32602,
        ),
        (
            "version header missing",
            list(envelope("2026-07-28")),
            None,
            Some("tools/list"),
            400,
            -32020,
        ),
        (
            "Mcp-Method missing",
            list(envelope("2026-07-28")),
            v,
            None,
            400,
            -32020,
        ),
        (
            "unknown version",
            list(envelope("2099-01-01")),
            Some("2099-01-01"),
            Some("tools/list"),
            400,
            -32022,
        ),
    ];
    for (what, body, version, method, want_status, want_code) in cases {
        let (status, e) = stateless(&gw, body, version, method, None).await;
        assert_eq!((status, code(&e)), (want_status, want_code), "{what}: {e}");
        assert_eq!(
            e["id"],
            json!("l1"),
            "{what}: the error answers the request"
        );
    }
    let (_, e) = stateless(
        &gw,
        list(envelope("2099-01-01")),
        Some("2099-01-01"),
        Some("tools/list"),
        None,
    )
    .await;
    assert_eq!(e["error"]["data"]["requested"], json!("2099-01-01"));
    assert!(
        e["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );

    // Removed and unknown methods: 404 with -32601.
    for method in ["ping", "initialize", "logging/setLevel", "no/such"] {
        let body = json!({"jsonrpc":"2.0","id":9,"method":method,"params":{"_meta": envelope("2026-07-28")}});
        let (status, e) = stateless(&gw, body, v, Some(method), None).await;
        assert_eq!(
            (status, code(&e), e["id"].clone()),
            (404, -32601, json!(9)),
            "{method}: {e}"
        );
    }

    // A name in the Base64 form is decoded before it is compared.
    let call = |name: &str| {
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
        "name": name, "arguments": {"text": "é"}, "_meta": envelope("2026-07-28")}})
    };
    let (status, ok) = stateless(
        &gw,
        call("alpha__echo"),
        v,
        Some("tools/call"),
        Some("=?base64?YWxwaGFfX2VjaG8=?="),
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(
        ok["result"]["resultType"],
        json!("complete"),
        "a 2025 upstream's result is completed"
    );
    assert_eq!(ok["result"]["content"][0]["text"], json!("alpha: é"));
    let (status, e) = stateless(
        &gw,
        call("alpha__echo"),
        v,
        Some("tools/call"),
        Some("=?base64?!!?="),
    )
    .await;
    assert_eq!((status, code(&e)), (400, -32020), "malformed sentinel: {e}");

    // An unknown resource names its URI.
    let read = json!({"jsonrpc":"2.0","id":4,"method":"resources/read","params":{
        "uri": "nowhere+x://y", "_meta": envelope("2026-07-28")}});
    let (_, e) = stateless(&gw, read, v, Some("resources/read"), Some("nowhere+x://y")).await;
    assert_eq!(
        (code(&e), e["error"]["data"]["uri"].clone()),
        (-32602, json!("nowhere+x://y")),
        "{e}"
    );
}

#[tokio::test]
async fn an_unprefixed_route_serves_its_own_names() {
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![
            ("alpha", alpha.url.clone(), "tool_prefix: \"\""),
            ("beta", beta.url.clone(), ""),
        ],
        extra: "",
    });
    let raw = Raw::open(&gw.url).await;
    let names = raw.tool_names().await;
    assert!(names.contains(&"echo".to_string()), "{names:?}");
    assert!(names.contains(&"beta__echo".to_string()), "{names:?}");
    let call = |name: &str| {
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{"text":"x"}}}).to_string()
    };
    assert_eq!(
        raw.rpc(call("echo")).await.1["result"]["content"][0]["text"],
        json!("alpha: x")
    );
    assert_eq!(
        raw.rpc(call("beta__echo")).await.1["result"]["content"][0]["text"],
        json!("beta: x")
    );
    let read = json!({"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"demo://alpha/readme"}});
    assert_eq!(
        raw.rpc(read.to_string()).await.1["result"]["contents"][0]["text"],
        json!("alpha resource readme")
    );
}
