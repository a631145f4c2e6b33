//! Callers stay apart, tried as an attacker would: another caller's approval question, another
//! caller's upstream session on the stateless path, relayed answers to routes one cannot see,
//! and tool names the upstream never listed (a case-insensitive upstream would run them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::idp::Idp;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

fn answer_to(id: &str, approve: bool) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"action":"accept","content":{"approve":approve}}})
        .to_string()
}

#[tokio::test]
async fn nobody_but_the_asked_caller_can_answer_an_approval() {
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(Setup {
        routes: vec![(
            "alpha",
            alpha.url.clone(),
            "tools:\n  echo: { approval: required }",
        )],
        extra: &audit_jsonl(dir.path()),
    });
    let alice = Raw::open_asking(&gw.url).await;
    let bob = Raw::open_asking(&gw.url).await;
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"<b>wire 1M</b>"}}});
    let resp = alice.post(call.to_string()).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    let question: Value =
        serde_json::from_str(seen.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(question["method"], json!("elicitation/create"));
    let message = question["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("alpha__echo") && message.contains("<b>wire 1M</b>"),
        "the question names the tool and shows its arguments: {message}"
    );
    let ask_id = question["id"].as_str().unwrap().to_string();
    let random_part = ask_id.rsplit(':').next().unwrap();
    assert_eq!(random_part.len(), 32, "128 random bits: {ask_id}");

    // Bob answers Alice's question: exactly like an id nobody asked.
    let stolen = bob.post(answer_to(&ask_id, true)).await;
    let (stolen_status, stolen_body) = (stolen.status(), stolen.text().await.unwrap());
    let guessed = bob
        .post(answer_to(
            "mcp-edge:approval:0000000000000000000000000000002a",
            true,
        ))
        .await;
    assert_eq!(stolen_status, 400);
    assert_eq!(
        (guessed.status(), guessed.text().await.unwrap()),
        (stolen_status, stolen_body)
    );

    // Alice's own answer runs the call.
    assert_eq!(alice.post(answer_to(&ask_id, true)).await.status(), 202);
    let mut rest = seen;
    while let Some(chunk) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("alpha: <b>wire 1M</b>"), "{rest}");

    // The answers are on the record, with who gave them.
    let mut gw = gw;
    assert!(gw.terminate().success());
    let records: Vec<Value> = audit_records(dir.path());
    let approvals: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["method"] == "approval")
        .map(|r| {
            (
                r["target"].as_str().unwrap_or("-").to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        approvals,
        vec![("alpha__echo".to_string(), "ok".to_string())]
    );
    let refused_answers = records
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .is_some_and(|x| x.contains("unknown request id"))
        })
        .count();
    assert_eq!(
        refused_answers, 2,
        "Bob's two tries are recorded as refusals"
    );
}

#[tokio::test]
async fn stateless_callers_never_share_an_upstream_session() {
    let idp = Idp::start(false).await;
    // An upstream without a stateless mode: the gateway opens sessions with it for stateless
    // callers, and those must never be shared between two callers.
    let alpha = mcp_edge::demo::spawn_upstream_with(
        "alpha",
        "127.0.0.1:0",
        mcp_edge::demo::Mode::LegacyOnly,
    )
    .await
    .unwrap();
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "identity: headers")],
        extra: &format!("auth:\n  mode: jwt\n  issuer: {}\n", idp.url),
    });
    let call = |who: &str, n: u64| {
        let token = idp.token(&gw.url, json!({"sub": who}));
        http()
            .post(&gw.url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "alpha__echo")
            .body(json!({"jsonrpc":"2.0","id":n,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":who},
                "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}).to_string())
            .send()
    };
    for (n, who) in ["alice", "bob", "alice", "bob"].into_iter().enumerate() {
        let r = call(who, n as u64).await.unwrap();
        let v = answer(r).await;
        assert_eq!(
            v["result"]["content"][0]["text"],
            json!(format!("alpha: {who}")),
            "{v}"
        );
    }
    let seen = alpha.probe.sessions.lock().unwrap().clone();
    let mut subjects: HashMap<String, HashSet<String>> = HashMap::new();
    for (session, subject) in seen {
        if let (Some(session), Some(subject)) = (session, subject) {
            subjects.entry(session).or_default().insert(subject);
        }
    }
    assert!(
        subjects.len() >= 2,
        "one upstream session per caller: {subjects:?}"
    );
    for (session, who) in &subjects {
        assert_eq!(who.len(), 1, "session {session} served {who:?}");
    }
}

#[tokio::test]
async fn answers_cannot_be_relayed_to_routes_the_caller_cannot_see() {
    let idp = Idp::start(false).await;
    let (open, secret) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![
            ("open", open.url.clone(), "visibility: [\"*\"]"),
            ("secret", secret.url.clone(), "visibility: [team:secret]"),
        ],
        extra: &format!("auth:\n  mode: jwt\n  issuer: {}\n", idp.url),
    });
    let bob = Raw::open_with(&gw.url, Some(&idp.token(&gw.url, json!({"sub": "bob"})))).await;
    let relay = |id: &str| {
        json!({"jsonrpc":"2.0","id":id,"result":{"action":"accept","content":{}}}).to_string()
    };
    let hidden = bob.post(relay("mcp-edge:secret:\"1\"")).await;
    let nowhere = bob.post(relay("mcp-edge:nowhere:\"1\"")).await;
    assert_eq!(
        hidden.status(),
        400,
        "a route Bob cannot see takes no answers from him"
    );
    assert_eq!(
        (nowhere.status(), nowhere.text().await.unwrap()),
        (hidden.status(), hidden.text().await.unwrap()),
        "and looks exactly like a route that does not exist"
    );
    let visible = bob.post(relay("mcp-edge:open:\"1\"")).await;
    assert_eq!(
        visible.status(),
        202,
        "a visible route still gets its answers"
    );
}

#[tokio::test]
async fn names_the_upstream_did_not_list_are_unknown_like_denied_ones() {
    let alpha = spawn_upstream("alpha").await.unwrap();
    let gw = Gateway::start(Setup {
        routes: vec![(
            "alpha",
            alpha.url.clone(),
            "tools:\n  purge: { deny: true }",
        )],
        extra: "",
    });
    let raw = Raw::open(&gw.url).await;
    let error_of = |name: &'static str| {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":name,"arguments":{}}}).to_string();
        let raw = &raw;
        async move {
            let (status, v) = raw.rpc(body).await;
            let message = v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .replace(name, "NAME");
            (status, v["error"]["code"].clone(), message)
        }
    };
    let denied = error_of("alpha__purge").await;
    assert_eq!(denied.1, json!(-32602), "{denied:?}");
    for name in [
        "alpha__Purge",
        "alpha__PURGE",
        "alpha__nothing",
        "ghost__purge",
    ] {
        assert_eq!(
            error_of(name).await,
            denied,
            "{name} answers like a denied tool"
        );
    }
    let (_, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"listed"}}}"#)
        .await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: listed"));
}
