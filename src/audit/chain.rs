//! The keyed chain: each record carries its sequence number, the id of the chain key and the
//! chain value of the record before it in the same sink; its own chain value is an HMAC-SHA256
//! of its exact bytes under `audit.chain_key`. An edited record no longer matches; a deleted,
//! inserted or reordered one breaks the link from the next; and without the key nobody can
//! re-chain a file they changed. The head (sequence number and chain value) is published
//! outside the trail (an anchor file or row, and a metric), so a cut tail is found too.
//! `mcp-edge audit verify --key … --anchor …` checks a trail.

use super::Record;
use super::shape::Keyed;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "{\"hash\":\"";
/// A chain value's length in a line: HMAC-SHA256 in hex.
const HASH_HEX: usize = 64;

/// The key of the chain and its public id (so a trail names the key each record is under, and a
/// rotated trail verifies with the old and the new key).
#[derive(Clone)]
pub struct ChainKey {
    key: Keyed,
    id: String,
}

impl ChainKey {
    pub fn new(key: &[u8]) -> Self {
        let mut k = Self {
            key: Keyed::new(key),
            id: String::new(),
        };
        k.id = k.mac(b"mcp-edge audit chain key id")[..16].to_string();
        k
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, bytes: &[u8]) -> String {
        hex::encode(self.key.mac(bytes))
    }
}

/// Where a chain stands: the last record's sequence number and chain value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// Chains `record` after `head` under `key`: the line to store and the new head. The line is
/// written in one buffer: the record's JSON goes after room for the chain value, is MACed where
/// it lies, and its opening brace becomes the comma after the chain value.
pub fn link<'k>(record: &mut Record<'k>, head: &Head, key: &'k ChainKey) -> (String, Head) {
    record.prev.clone_from(&head.hash);
    record.seq = head.seq + 1;
    record.key = &key.id;
    let hash_at = PREFIX.len()..PREFIX.len() + HASH_HEX;
    let body_at = hash_at.end + 1;
    // Room for a typical record, so the line is allocated once.
    let mut line = Vec::with_capacity(body_at + 640);
    line.extend_from_slice(PREFIX.as_bytes());
    line.resize(hash_at.end, b'0');
    line.push(b'"');
    // Serializing plain data to memory does not fail; if it ever did, the line says so.
    if serde_json::to_writer(&mut line, record).is_err() {
        line.truncate(body_at);
        line.extend_from_slice(br#"{"unserializable":true}"#);
    }
    let mac = key.key.mac(&line[body_at..]);
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(mac, &mut line[hash_at.clone()]);
    line[body_at] = b',';
    let hash = String::from_utf8_lossy(&line[hash_at]).into_owned();
    (
        String::from_utf8(line).unwrap_or_default(),
        Head {
            seq: record.seq,
            hash,
        },
    )
}

/// The chain value a stored line claims and the line without it, if it has the chained form.
fn split(line: &str) -> Option<(&str, String)> {
    let rest = line.strip_prefix(PREFIX)?;
    let hash = rest.get(..HASH_HEX)?;
    let body = rest.get(HASH_HEX..)?.strip_prefix("\",")?;
    Some((hash, format!("{{{body}")))
}

/// What a record says about its place in the chain.
#[derive(Deserialize)]
struct Place {
    prev: String,
    seq: u64,
    key: String,
}

/// The head a stored line claims (to resume a chain after a restart).
pub fn resume(line: &str) -> Option<Head> {
    let (hash, body) = split(line)?;
    let place: Place = serde_json::from_str(&body).ok()?;
    Some(Head {
        seq: place.seq,
        hash: hash.to_string(),
    })
}

/// The published head: written outside the trail every so many records or seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    pub time: String,
    pub key: String,
    /// HMAC over the fields above under the chain key: an anchor cannot be made up either.
    pub mac: String,
}

impl Anchor {
    pub fn new(head: &Head, time: String, key: &ChainKey) -> Self {
        let mac = key.mac(Self::signed(head.seq, &head.hash, &time).as_bytes());
        Self {
            seq: head.seq,
            hash: head.hash.clone(),
            time,
            key: key.id.clone(),
            mac,
        }
    }

    fn signed(seq: u64, hash: &str, time: &str) -> String {
        format!("mcp-edge audit anchor\n{seq}\n{hash}\n{time}")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a verification found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every record intact, keyed and linked; `anchored` when an anchor was given and found.
    Intact {
        records: usize,
        first_seq: u64,
        /// The chain value the first record follows (empty at the start of the trail).
        starts_after: String,
        last: Head,
        anchored: Option<u64>,
    },
    /// Where it breaks (1-based line over all input) and how.
    Broken { line: usize, why: String },
}

/// Checks a trail, line by line in order, under `keys` (several during a key rotation) and
/// against an anchor written while it was being written.
pub fn verify<'a>(
    lines: impl Iterator<Item = &'a str>,
    keys: &[ChainKey],
    anchor: Option<&Anchor>,
) -> Verdict {
    if let Some(a) = anchor {
        let key = keys.iter().find(|k| k.id == a.key);
        let Some(key) = key else {
            return broken(
                0,
                format!(
                    "the anchor is under key {}, which was not given (--key)",
                    a.key
                ),
            );
        };
        if key.mac(Anchor::signed(a.seq, &a.hash, &a.time).as_bytes()) != a.mac {
            return broken(0, "the anchor was altered (its MAC does not match)".into());
        }
    }
    let mut head: Option<Head> = None;
    let mut first = (0, String::new());
    let mut anchored = None;
    let mut count = 0;
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 1;
        let Some((claimed, body)) = split(line) else {
            return broken(n, "not an audit record".into());
        };
        let Ok(place) = serde_json::from_str::<Place>(&body) else {
            return broken(
                n,
                "not a keyed audit record (it names no sequence number or key)".into(),
            );
        };
        let Some(key) = keys.iter().find(|k| k.id == place.key) else {
            return broken(
                n,
                format!(
                    "the record is under key {}, which was not given (--key)",
                    place.key
                ),
            );
        };
        if key.mac(body.as_bytes()) != claimed {
            return broken(
                n,
                "the record was altered or re-chained without the key (its chain value does not match)"
                    .into(),
            );
        }
        match &head {
            None => first = (place.seq, place.prev),
            Some(h) if h.hash != place.prev || h.seq + 1 != place.seq => {
                return broken(
                    n,
                    format!(
                        "the chain is broken: this record (seq {}) does not follow seq {} (a record was deleted, inserted or reordered)",
                        place.seq, h.seq
                    ),
                );
            }
            Some(_) => {}
        }
        if let Some(a) = anchor
            && a.seq == place.seq
        {
            if a.hash != claimed {
                return broken(
                    n,
                    format!("the record at seq {} is not the one anchored", a.seq),
                );
            }
            anchored = Some(a.seq);
        }
        head = Some(Head {
            seq: place.seq,
            hash: claimed.to_string(),
        });
        count += 1;
    }
    let last = head.unwrap_or_default();
    if let Some(a) = anchor
        && anchored.is_none()
    {
        let why = if last.seq < a.seq {
            format!(
                "the trail ends at seq {} but the anchor of {} names seq {}: records were cut from the end",
                last.seq, a.time, a.seq
            )
        } else {
            format!(
                "the anchored record (seq {}) is not in the trail (give the files from that record on)",
                a.seq
            )
        };
        return broken(0, why);
    }
    Verdict::Intact {
        records: count,
        first_seq: first.0,
        starts_after: first.1,
        last,
        anchored,
    }
}

fn broken(line: usize, why: String) -> Verdict {
    Verdict::Broken { line, why }
}
