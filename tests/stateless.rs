//! The stateless 2026-07-28 revision over raw HTTP: its error contract (codes, statuses, ids),
//! the results it requires, Base64 header values, and routes served under their own names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::modern::{envelope, stateless};
use common::*;
use serde_json::{Value, json};

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

#[tokio::test]
async fn stateless_callers_approve_in_an_input_required_round() {
    let (alpha, _beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![(
            "alpha",
            alpha.url.clone(),
            "tools:\n  echo: { approval: required }",
        )],
        extra: "",
    });
    let v = Some("2026-07-28");
    let name = Some("alpha__echo");
    let with_elicitation = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |meta: &Value, text: &str, extra: Value| {
        let mut params = json!({"name": "alpha__echo", "arguments": {"text": text}, "_meta": meta});
        for (k, val) in extra.as_object().unwrap() {
            params[k] = val.clone();
        }
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params": params})
    };

    // A client that cannot be asked is told which capability the call needs.
    let (status, e) = stateless(
        &gw,
        call(&envelope("2026-07-28"), "x", json!({})),
        v,
        Some("tools/call"),
        name,
    )
    .await;
    assert_eq!((status, code(&e)), (400, -32021), "{e}");
    assert!(
        e["error"]["data"]["requiredCapabilities"]["elicitation"].is_object(),
        "{e}"
    );

    // The first round asks; nothing runs upstream.
    let (status, asked) = stateless(
        &gw,
        call(&with_elicitation, "x", json!({})),
        v,
        Some("tools/call"),
        name,
    )
    .await;
    assert_eq!(status, 200, "{asked}");
    let result = &asked["result"];
    assert_eq!(result["resultType"], json!("input_required"), "{asked}");
    let question = &result["inputRequests"]["mcp-edge.approve"];
    assert_eq!(question["method"], json!("elicitation/create"));
    assert!(
        question["params"]["message"]
            .as_str()
            .unwrap()
            .contains("alpha__echo")
    );
    let state = result["requestState"].clone();
    assert!(state.is_string());

    let yes = json!({"mcp-edge.approve": {"action": "accept", "content": {"approve": true}}});
    let retry = |text: &str, state: &Value, answer: &Value| {
        call(
            &with_elicitation,
            text,
            json!({"requestState": state, "inputResponses": answer}),
        )
    };
    // Bound to the call: other arguments, or a made-up state, are refused.
    let (_, e) = stateless(
        &gw,
        retry("other", &state, &yes),
        v,
        Some("tools/call"),
        name,
    )
    .await;
    assert_eq!(code(&e), -32602, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another call"),
        "{e}"
    );
    let (_, e) = stateless(
        &gw,
        retry("x", &json!("forged"), &yes),
        v,
        Some("tools/call"),
        name,
    )
    .await;
    assert_eq!(code(&e), -32602, "{e}");

    // A no is a no.
    let no = json!({"mcp-edge.approve": {"action": "decline"}});
    let (_, e) = stateless(&gw, retry("x", &state, &no), v, Some("tools/call"), name).await;
    assert_eq!(code(&e), -32001, "{e}");

    // A yes runs the call once; the same state cannot run it again.
    let (status, ran) = stateless(&gw, retry("x", &state, &yes), v, Some("tools/call"), name).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(
        ran["result"]["content"][0]["text"],
        json!("alpha: x"),
        "{ran}"
    );
    assert_eq!(ran["result"]["resultType"], json!("complete"));
    let (_, e) = stateless(&gw, retry("x", &state, &yes), v, Some("tools/call"), name).await;
    assert_eq!(code(&e), -32602, "replayed: {e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{e}"
    );
}

#[tokio::test]
async fn mcp_param_headers_are_checked_and_sent_upstream() {
    let modern = common::modern::changing_upstream().await;
    let gw = Gateway::start(Setup {
        routes: vec![("modern", modern, "")],
        extra: "",
    });
    let v = Some("2026-07-28");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta": envelope("2026-07-28")}});
    let (_, listed) = stateless(&gw, list, v, Some("tools/list"), None).await;
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"modern__region"), "{names:?}");
    assert!(
        !names.contains(&"modern__bad"),
        "a tool with an invalid x-mcp-header is left out: {names:?}"
    );

    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"modern__region","arguments":{"region":"eu-west"},"_meta": envelope("2026-07-28")}});
    let send = |param: Option<&'static str>| {
        let mut req = http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "modern__region");
        if let Some(p) = param {
            req = req.header("Mcp-Param-Region", p);
        }
        req.body(call.to_string()).send()
    };
    // The header says what the argument says: the call goes through, and the upstream gets the
    // header the gateway computed from the arguments.
    let ok = answer(send(Some("eu-west")).await.unwrap()).await;
    assert_eq!(
        ok["result"]["content"][0]["text"],
        json!("region header eu-west"),
        "{ok}"
    );
    for wrong in [Some("us-east"), None] {
        let resp = send(wrong).await.unwrap();
        assert_eq!(resp.status(), 400, "{wrong:?}");
        let e = answer(resp).await;
        assert_eq!(common::code(&e), -32020, "{wrong:?}: {e}");
    }
}
