//! The audit trail against PostgreSQL failing, and the chain key rotated: a database down at
//! start, lost mid-run, a full queue; a trail verified across a key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::postgres::Postgres;
use common::trail::*;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[tokio::test]
async fn postgres_down_at_start_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gw.yaml");
    std::fs::create_dir_all(dir.path().join("routes")).unwrap();
    let closed = free_port();
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:0\npublic_url: http://127.0.0.1\nroutes_dir: routes\nadmin: {{ listen: 127.0.0.1:0 }}\n\
             audit:\n  chain_key: audit-chain-key-0123456789\n  sinks:\n    - postgres: {{ url: \"host=127.0.0.1 port={closed} user=postgres password=hunter2\" }}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["run", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started without its audit sink");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit sink postgres: cannot connect"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password leaked into the message"
    );
}

#[tokio::test]
async fn records_wait_for_postgres_and_land_when_it_returns() {
    let mut pg = Postgres::start();
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = Trail::new();
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: &audit_yaml(&dir, Some(&pg)),
    });
    let raw = Raw::open(&gw.url).await;
    let call = |i: u64| {
        json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"x"}}}).to_string()
    };
    for i in 0..3 {
        assert_eq!(raw.rpc(call(i)).await.0, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg_lines(&pg).await.len() < 3 && Instant::now() < deadline {}
    pg.stop();
    for i in 3..6 {
        assert_eq!(
            raw.rpc(call(i)).await.0,
            200,
            "calls go on while the database is away"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw
        .metric("mcp_edge_audit_write_errors_total{sink=\"postgres\"}")
        .await
        < 1.0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.metric("mcp_edge_audit_write_errors_total{sink=\"postgres\"}")
            .await
            >= 1.0
    );
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rows = 0;
    while Instant::now() < deadline {
        rows = pg_lines(&pg).await.len();
        if rows == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 6, "the queued records landed");
    assert_eq!(audit_lines(dir.path()).len(), 6);
}

#[tokio::test]
async fn a_full_queue_refuses_new_calls_rather_than_drop_records() {
    let mut pg = Postgres::start();
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = Trail::new();
    let extra = audit_yaml(&dir, Some(&pg))
        .replace("audit:\n", "audit:\n  queue: 2\n  when_full: refuse\n");
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: &extra,
    });
    let raw = Raw::open(&gw.url).await;
    pg.stop();
    let call = |i: u64| {
        json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"x"}}}).to_string()
    };
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..20 {
        let r = raw.post(call(i)).await;
        if r.status() == 503 {
            refused = Some(r.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(r.status(), 200);
        accepted += 1;
    }
    let refused = refused.expect("the queue never filled");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audit trail is not keeping up"),
        "{refused}"
    );
    assert!(gw.metric("mcp_edge_audit_refused_total").await >= 1.0);
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg_lines(&pg).await.len() < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pg_lines(&pg).await.len(),
        accepted,
        "every accepted call was recorded"
    );
}

#[tokio::test]
async fn a_rotated_chain_key_verifies_with_the_old_and_the_new_key() {
    let alpha = spawn_upstream("alpha").await.unwrap();
    let dir = Trail::new();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"x"}}}"#;
    let run = |extra: String| {
        let routes = vec![("alpha", alpha.url.clone(), "")];
        async move {
            let mut gw = Gateway::start(Setup {
                routes,
                extra: &extra,
            });
            let raw = Raw::open(&gw.url).await;
            for _ in 0..3 {
                assert_eq!(raw.rpc(call).await.0, 200);
            }
            assert!(gw.terminate().success());
        }
    };
    run(audit_yaml(&dir, None)).await;
    // Rotation: the new key in the config, the old one kept for verifying; the chain goes on.
    let new_key = dir.apart.path().join("new.key");
    std::fs::write(&new_key, "the-next-chain-key-0987654321").unwrap();
    run(audit_yaml(&dir, None).replace(
        &dir.key().display().to_string(),
        &new_key.display().to_string(),
    ))
    .await;

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Given newest first: verify puts them in chain order itself.
    files.sort();
    files.reverse();
    let (old_key, anchor) = (dir.key(), dir.anchor());
    let mut args: Vec<&Path> = vec![
        Path::new("--key"),
        &old_key,
        Path::new("--key"),
        &new_key,
        Path::new("--anchor"),
        &anchor,
    ];
    args.extend(files.iter().map(PathBuf::as_path));
    let (ok, out) = verify_cli(&args);
    assert!(ok, "{out}");
    assert!(out.contains("6 records, chain intact (seq 1..6"), "{out}");
    assert!(out.contains("(seq 6) matches"), "{out}");
    // The new key alone does not vouch for the records written under the old one.
    let (ok, out) = verify_cli(&args[2..]);
    assert!(!ok && out.contains(":1: the record is under key"), "{out}");
}
