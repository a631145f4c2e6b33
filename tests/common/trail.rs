//! The audit tests' trail: a JSONL directory and, apart from it, the chain key and the anchor;
//! the sinks' YAML; reading records back; the verify CLI; and what an attacker without the key
//! could do to a trail.

use super::postgres::Postgres;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub const CHAIN_KEY: &str = "audit-chain-key-for-tests-42";

/// Where a test's trail lives: the JSONL directory, and apart from it the anchor and the key.
pub struct Trail {
    pub dir: tempfile::TempDir,
    pub apart: tempfile::TempDir,
}

impl Trail {
    pub fn new() -> Self {
        let t = Self {
            dir: tempfile::tempdir().unwrap(),
            apart: tempfile::tempdir().unwrap(),
        };
        std::fs::write(t.key(), format!("{CHAIN_KEY}\n")).unwrap();
        t
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn key(&self) -> PathBuf {
        self.apart.path().join("chain.key")
    }
    pub fn anchor(&self) -> PathBuf {
        self.apart.path().join("audit.anchor")
    }
}

pub fn audit_yaml(trail: &Trail, pg: Option<&Postgres>) -> String {
    let mut y = format!(
        "audit:\n  hmac_key: audit-test-key-0123456789\n  chain_key: ${{file:{}}}\n  sinks:\n    - jsonl: {{ dir: {}, fsync: always, anchor: {} }}\n",
        trail.key().display(),
        trail.path().display(),
        trail.anchor().display()
    );
    if let Some(pg) = pg {
        y.push_str(&format!(
            "    - postgres: {{ url: \"{}\", retention_days: 30 }}\n",
            pg.url()
        ));
    }
    y
}

pub async fn pg_lines(pg: &Postgres) -> Vec<String> {
    let client = pg.client().await;
    client
        .query("SELECT line FROM mcp_edge_audit ORDER BY seq", &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// `mcp-edge audit verify` with these arguments: success, and stdout followed by stderr.
pub fn verify_cli(args: &[&Path]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["audit", "verify"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// What someone with write access but without the key could do: drop records and re-chain the
/// rest (sequence numbers, links and chain values recomputed under a key they made up).
pub fn rechain_without_key(lines: &[String]) -> Vec<String> {
    use hmac::Mac;
    let mut prev = String::new();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = record(l);
            v.as_object_mut().unwrap().remove("hash");
            v["prev"] = json!(prev);
            v["seq"] = json!(i + 1);
            let body = v.to_string();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"a guessed key").unwrap();
            mac.update(body.as_bytes());
            let hash: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            prev = hash.clone();
            format!("{{\"hash\":\"{hash}\",{}", &body[1..])
        })
        .collect()
}

pub fn record(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}
