//! `mcp-edge audit verify`: reads a trail (JSONL files in order, or lines exported from
//! PostgreSQL), the chain keys and an anchor, and says whether the trail is whole.

use super::chain::{Anchor, ChainKey, Verdict, resume, verify};
use std::path::{Path, PathBuf};

/// A key file as `${file:…}` reads it: trailing line ends are not part of the key.
fn read_key(path: &Path) -> Result<ChainKey, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    let end = text
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    Ok(ChainKey::new(&text[..end]))
}

fn read_anchor(path: &Path) -> Result<Anchor, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read anchor {}: {e}", path.display()))?;
    serde_json::from_str(text.trim())
        .map_err(|e| format!("{} is not an anchor: {e}", path.display()))
}

/// Verifies `files` as one trail, in chain order. Returns the report and whether it holds.
pub fn run(
    files: &[PathBuf],
    keys: &[PathBuf],
    anchor: Option<&Path>,
) -> Result<(bool, String), String> {
    if keys.is_empty() {
        return Err("give the chain key with --key FILE (audit.chain_key, or audit.hmac_key when no chain_key is set); several --key during a key rotation".into());
    }
    let keys = keys
        .iter()
        .map(|k| read_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let anchor = anchor.map(read_anchor).transpose()?;
    let mut texts = Vec::with_capacity(files.len());
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        texts.push((f, text));
    }
    // In chain order (the first record's sequence number), whatever order the shell gave.
    texts.sort_by_key(|(_, t)| {
        t.lines()
            .find(|l| !l.trim().is_empty())
            .and_then(resume)
            .map_or(u64::MAX, |h| h.seq)
    });
    let (files, texts): (Vec<&PathBuf>, Vec<String>) = texts.into_iter().unzip();
    // Line numbers over all files, so a break can be named as file:line.
    let mut starts = Vec::with_capacity(files.len());
    let mut total = 0;
    for t in &texts {
        starts.push(total);
        total += t.lines().count();
    }
    let lines = texts.iter().flat_map(|t| t.lines());
    Ok(match verify(lines, &keys, anchor.as_ref()) {
        Verdict::Intact {
            records,
            first_seq,
            starts_after,
            last,
            anchored,
        } => {
            let from = if starts_after.is_empty() {
                "the start of the trail".to_string()
            } else {
                format!(
                    "seq {} (earlier records not given)",
                    first_seq.saturating_sub(1)
                )
            };
            let anchor = match (anchored, &anchor) {
                (Some(seq), Some(a)) => format!("; the anchor of {} (seq {seq}) matches", a.time),
                _ => "; no anchor given: a cut tail would not be seen".into(),
            };
            (
                true,
                format!(
                    "{records} records, chain intact (seq {first_seq}..{}, follows {from}){anchor}\n",
                    last.seq
                ),
            )
        }
        Verdict::Broken { line: 0, why } => (false, format!("{why}\n")),
        Verdict::Broken { line, why } => {
            let i = starts.iter().rposition(|s| *s < line).unwrap_or(0);
            (
                false,
                format!("{}:{}: {why}\n", files[i].display(), line - starts[i]),
            )
        }
    })
}
