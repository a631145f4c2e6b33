//! The audit trail with real sinks: a JSONL directory and a real PostgreSQL. Records for allowed,
//! refused and failed calls; argument values never stored; the chain catches edits, deletions
//! and reordering; a graceful stop loses nothing; PostgreSQL down at start or lost mid-run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::postgres::Postgres;
use common::trail::*;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "top-secret-value-4711";

#[tokio::test]
async fn calls_and_refusals_are_recorded_chained_and_never_hold_argument_values() {
    let pg = Postgres::start();
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = Trail::new();
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let mut gw = Gateway::start(Setup {
        routes: vec![
            (
                "alpha",
                alpha.url.clone(),
                "limits:\n  per_tool:\n    large: { per_user_rpm: 60, burst: 1 }",
            ),
            ("dead", dead, "  timeout: 2s"),
        ],
        extra: &audit_yaml(&dir, Some(&pg)),
    });
    let raw = Raw::open(&gw.url).await;
    let call = |id: u64, tool: &str, args: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}).to_string()
    };
    let (_, v) = raw
        .rpc(call(
            1,
            "alpha__echo",
            json!({"text": SECRET, "n": 7, "deep": {"list": [SECRET, true]}}),
        ))
        .await;
    assert!(v["result"].is_object());
    raw.rpc(call(2, "alpha__fail", json!({}))).await;
    raw.rpc(call(3, "nobody__x", json!({"text": SECRET}))).await;
    raw.rpc("{not json").await;
    raw.rpc(call(5, "dead__echo", json!({"text": "x"}))).await;
    raw.rpc(call(6, "alpha__large", json!({"bytes": 1}))).await;
    raw.rpc(call(7, "alpha__large", json!({"bytes": 1}))).await;
    raw.rpc(r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#).await;
    // The head is published as a metric: seven records, labelled with the last chain value.
    let deadline = Instant::now() + Duration::from_secs(15);
    let published = loop {
        let text = gw.metrics_text().await;
        let head = text
            .lines()
            .find(|l| l.starts_with("mcp_edge_audit_chain_head{") && l.contains("sink=\"jsonl\""))
            .unwrap_or_default()
            .to_string();
        if head.ends_with(" 7") || Instant::now() > deadline {
            break head;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(published.ends_with(" 7"), "chain head metric: {published}");
    assert!(gw.terminate().success(), "graceful stop");

    let lines = audit_lines(dir.path());
    let records: Vec<Value> = lines.iter().map(|l| record(l)).collect();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["target"].as_str().unwrap_or("-").to_string(),
                r["decision"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = |t: &str, d: &str, o: &str| (t.to_string(), d.to_string(), o.to_string());
    assert_eq!(
        summary,
        vec![
            expect("alpha__echo", "allowed", "ok"),
            expect("alpha__fail", "allowed", "tool_error"),
            expect("nobody__x", "refused", "refused"),
            expect("-", "refused", "refused"),
            expect("dead__echo", "allowed", "upstream_error"),
            expect("alpha__large", "allowed", "ok"),
            expect("alpha__large", "refused", "rate_limited"),
        ],
        "one record per call and refusal, none for ping or the handshake"
    );
    let first = &records[0];
    assert_eq!(first["request_id"], json!("1"));
    assert_eq!(first["route"], json!("alpha"));
    assert_eq!(first["subject"], json!("anonymous"));
    assert_eq!(first["upstream_status"], json!(200));
    assert!(first["session"].as_str().unwrap().len() == 32);
    assert!(first["bytes_in"].as_u64().unwrap() > 0 && first["bytes_out"].as_u64().unwrap() > 0);
    assert!(first["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(first["arguments"]["n"]["type"], json!("number"));
    assert_eq!(
        first["arguments"]["deep"]["list"][1]["type"],
        json!("boolean")
    );
    assert_eq!(
        first["arguments"]["text"]["hmac"], first["arguments"]["deep"]["list"][0]["hmac"],
        "equal values, equal HMACs"
    );
    assert!(
        records[2]["reason"]
            .as_str()
            .unwrap()
            .contains("Unknown tool")
    );
    assert!(
        records[3]["reason"]
            .as_str()
            .unwrap()
            .contains("Parse error")
    );
    assert!(
        records[6]["reason"]
            .as_str()
            .unwrap()
            .contains("Rate limit")
    );

    let pg_rows = pg_lines(&pg).await;
    assert_eq!(pg_rows.len(), lines.len(), "the same records in PostgreSQL");
    for text in lines.iter().chain(pg_rows.iter()) {
        assert!(
            !text.contains(SECRET),
            "an argument value reached the audit trail"
        );
    }
    // PostgreSQL keeps its own chain and its anchor row, under the same key.
    let pg_anchor: String = pg
        .client()
        .await
        .query_one(
            "SELECT anchor FROM mcp_edge_audit_anchor WHERE sink = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pg_anchor: mcp_edge::audit::chain::Anchor = serde_json::from_str(&pg_anchor).unwrap();
    let key = mcp_edge::audit::chain::ChainKey::new(CHAIN_KEY.as_bytes());
    assert!(matches!(
        mcp_edge::audit::chain::verify(
            pg_rows.iter().map(String::as_str),
            &[key],
            Some(&pg_anchor)
        ),
        mcp_edge::audit::chain::Verdict::Intact {
            records: 7,
            anchored: Some(7),
            ..
        }
    ));

    // The metric named the last record's chain value.
    let last_hash = lines[6][9..73].to_string();
    assert!(
        published.contains(&format!("hash=\"{last_hash}\"")),
        "{published}"
    );

    // The chain, with the key and the anchor: intact as written; an edit, a deletion, a
    // reordering, a cut tail, a re-chaining without the key and a forged anchor are all caught.
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (key_file, anchor) = (dir.key(), dir.anchor());
    let (ok, out) = verify_cli(&[
        Path::new("--key"),
        &key_file,
        Path::new("--anchor"),
        &anchor,
        &file,
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("7 records, chain intact (seq 1..7, follows the start of the trail)"),
        "{out}"
    );
    assert!(out.contains("(seq 7) matches"), "{out}");
    let (ok, out) = verify_cli(&[&file]);
    assert!(!ok && out.contains("--key"), "no key, no verdict: {out}");

    let tampered = dir.apart.path().join("tampered.jsonl");
    let mut without_refusals = lines.clone();
    without_refusals.retain(|l| !l.contains("\"decision\":\"refused\""));
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edited",
            {
                let mut l = lines.clone();
                l[2] = l[2].replace("refused", "allowed");
                l
            },
            ":3: the record was altered or re-chained without the key",
        ),
        (
            "deleted",
            {
                let mut l = lines.clone();
                l.remove(3);
                l
            },
            ":4: the chain is broken",
        ),
        (
            "reordered",
            {
                let mut l = lines.clone();
                l.swap(1, 2);
                l
            },
            ":2: the chain is broken",
        ),
        (
            "truncated",
            lines[..5].to_vec(),
            "the trail ends at seq 5 but the anchor",
        ),
        (
            "re-chained",
            rechain_without_key(&without_refusals),
            ":1: the record was altered or re-chained without the key",
        ),
    ];
    for (what, content, expected) in cases {
        std::fs::write(&tampered, content.join("\n") + "\n").unwrap();
        let (ok, out) = verify_cli(&[
            Path::new("--key"),
            &key_file,
            Path::new("--anchor"),
            &anchor,
            &tampered,
        ]);
        assert!(!ok, "{what} went unnoticed: {out}");
        assert!(out.contains(expected), "{what}: {out}");
    }
    let forged = dir.apart.path().join("forged.anchor");
    let text = std::fs::read_to_string(&anchor).unwrap();
    std::fs::write(&forged, text.replace("\"seq\":7", "\"seq\":5")).unwrap();
    let (ok, out) = verify_cli(&[
        Path::new("--key"),
        &key_file,
        Path::new("--anchor"),
        &forged,
        &file,
    ]);
    assert!(
        !ok && out.contains("the anchor was altered"),
        "forged anchor: {out}"
    );
}

#[tokio::test]
async fn a_graceful_stop_under_load_loses_no_record() {
    let pg = Postgres::start();
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = Trail::new();
    let mut gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: &audit_yaml(&dir, Some(&pg)),
    });
    let clients = 8;
    let per_client = 40;
    let runs: Vec<_> = (0..clients)
        .map(|c| {
            let url = gw.url.clone();
            tokio::spawn(async move {
                let raw = Raw::open(&url).await;
                for i in 0..per_client {
                    let body = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":format!("c{c}")}}});
                    let (status, _) = raw.rpc(body.to_string()).await;
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for r in runs {
        r.await.unwrap();
    }
    assert!(gw.terminate().success());
    let n = clients * per_client;
    assert_eq!(
        audit_lines(dir.path()).len(),
        n,
        "JSONL holds one record per call"
    );
    assert_eq!(
        pg_lines(&pg).await.len(),
        n,
        "PostgreSQL holds one record per call"
    );
}

#[tokio::test]
async fn every_kind_of_exchange_leaves_a_record_and_deep_arguments_a_marker() {
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: &audit_jsonl(dir.path()),
    });
    let raw = Raw::open(&gw.url).await;
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let call = |id: u64, deep: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"alpha__echo","arguments":{{"text":"t","deep":{deep}}}}}}}"#
        )
    };
    raw.rpc(call(1, &nested(40))).await;
    raw.rpc(call(2, &nested(200))).await;
    raw.rpc(r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"alpha__greet"},"argument":{"name":"n","value":"a"}}}"#).await;
    assert_eq!(
        raw.post(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#
        )
        .await
        .status(),
        202
    );
    assert_eq!(
        raw.post(r#"{"jsonrpc":"2.0","id":"mcp-edge:alpha:\"u1\"","result":{"action":"accept","content":{}}}"#)
            .await
            .status(),
        202
    );
    assert!(gw.terminate().success());
    let records = audit_records(dir.path());
    let methods: Vec<&str> = records
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "tools/call",
            "tools/call",
            "completion/complete",
            "notifications/cancelled",
            "response"
        ],
        "one record for each call, completion, cancellation and relayed answer"
    );
    let shallow = records[0]["arguments"]["deep"].to_string();
    assert!(
        shallow.contains("deeper than 32 levels"),
        "cut with a marker: {shallow}"
    );
    assert_eq!(records[0]["arguments"]["text"]["type"], json!("string"));
    let deep = &records[1]["arguments"];
    assert!(
        deep["cut"].as_str().is_some_and(|c| c.contains("128")),
        "200 levels: a marker, never null: {deep}"
    );
    assert_eq!(records[4]["route"], json!("alpha"));
}

#[tokio::test]
async fn refusals_before_authentication_are_counted_not_queued() {
    let idp = common::idp::Idp::start(false).await;
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: &format!(
            "auth:\n  mode: jwt\n  issuer: {}\n{}",
            idp.url,
            audit_jsonl(dir.path())
        ),
    });
    let anonymous = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"x"}}}"#;
    for _ in 0..5 {
        let r = http()
            .post(&gw.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .body(anonymous)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let token = idp.token(&gw.url, json!({}));
    let raw = Raw::open_with(&gw.url, Some(&token)).await;
    let (_, v) = raw.rpc(anonymous).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: x"));
    assert_eq!(
        gw.metric("mcp_edge_auth_failures_total{reason=\"missing\"}")
            .await,
        5.0,
        "counted"
    );
    assert!(gw.terminate().success());
    let records = audit_records(dir.path());
    assert_eq!(
        records.len(),
        1,
        "only the authenticated call is queued: {records:?}"
    );
    assert_eq!(records[0]["subject"], json!("alice"));
}
