//! The hash chain: each record names the hash of the one before it in the same sink, and its own
//! hash covers its exact bytes. An edited record no longer matches its hash; a deleted, inserted
//! or reordered one breaks the link from the next. `mcp-edge audit verify` checks a file.

use super::Record;
use sha2::{Digest, Sha256};

const PREFIX: &str = "{\"hash\":\"";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Chains `record` after `prev`: the line to store and its hash.
pub fn link(record: &mut Record, prev: &str) -> (String, String) {
    record.prev = prev.to_string();
    let body = serde_json::to_string(record).unwrap_or_default();
    let hash = hex(&Sha256::digest(body.as_bytes()));
    let line = format!("{PREFIX}{hash}\",{}", body.get(1..).unwrap_or_default());
    (line, hash)
}

/// The hash a stored line claims and the line without it, if it has the chained form.
fn split(line: &str) -> Option<(&str, String)> {
    let rest = line.strip_prefix(PREFIX)?;
    let hash = rest.get(..64)?;
    let body = rest.get(64..)?.strip_prefix("\",")?;
    Some((hash, format!("{{{body}")))
}

/// The hash of a line's content as stored (to resume a chain).
pub fn claimed_hash(line: &str) -> Option<String> {
    split(line).map(|(h, _)| h.to_string())
}

/// What a verification found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record intact and linked; the first one follows `starts_after`.
    Intact {
        records: usize,
        starts_after: String,
    },
    /// Where it breaks (1-based line) and how.
    Broken { line: usize, why: String },
}

pub fn verify<'a>(lines: impl Iterator<Item = &'a str>) -> Verdict {
    let mut prev: Option<String> = None;
    let mut first_prev = String::new();
    let mut count = 0;
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 1;
        let Some((claimed, body)) = split(line) else {
            return Verdict::Broken {
                line: n,
                why: "not an audit record".into(),
            };
        };
        if hex(&Sha256::digest(body.as_bytes())) != claimed {
            return Verdict::Broken {
                line: n,
                why: "the record was altered (its content no longer matches its hash)".into(),
            };
        }
        let linked = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["prev"].as_str().map(String::from));
        let Some(linked) = linked else {
            return Verdict::Broken {
                line: n,
                why: "the record names no previous hash".into(),
            };
        };
        match &prev {
            None => first_prev = linked,
            Some(p) if *p != linked => {
                return Verdict::Broken {
                    line: n,
                    why: format!(
                        "the chain is broken: this record does not follow line {} (a record was deleted, inserted or reordered)",
                        n - 1
                    ),
                };
            }
            Some(_) => {}
        }
        prev = Some(claimed.to_string());
        count += 1;
    }
    Verdict::Intact {
        records: count,
        starts_after: first_prev,
    }
}
