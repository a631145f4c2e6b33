//! What each protocol era requires of a result. A 2026-07-28 client rejects a result without
//! `resultType`, and a cacheable one (discover, the four lists, `resources/read`) without an
//! integer `ttlMs` and a `cacheScope`; a 2025 client is never shown those 2026 fields. Results
//! are probed without being built, and rewritten only when something is missing or extra.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The freshness a result may be cached for, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHint {
    pub ttl_ms: u64,
    /// `"public"`: any user may be served it; else `"private"` (this authorization only).
    pub public: bool,
}

impl CacheHint {
    /// What a result without hints counts as (a 2025 upstream, a failed or partial merge).
    pub const NONE: CacheHint = CacheHint {
        ttl_ms: 0,
        public: false,
    };
    /// The start of a merge: anything merged in can only shorten or narrow it.
    pub const OPEN: CacheHint = CacheHint {
        ttl_ms: u64::MAX,
        public: true,
    };

    /// The hint that holds for a result merged from both.
    pub fn and(self, other: CacheHint) -> CacheHint {
        CacheHint {
            ttl_ms: self.ttl_ms.min(other.ttl_ms),
            public: self.public && other.public,
        }
    }

    /// The hint an upstream result carries (absent or invalid fields count as `NONE`'s).
    pub fn of(result: &RawValue) -> CacheHint {
        let p = Probe::of(result);
        CacheHint {
            ttl_ms: p.ttl.as_ref().and_then(Value::as_u64).unwrap_or(0),
            public: p.scope.as_deref() == Some("public") && p.ttl.is_some(),
        }
    }

    fn scope(self) -> &'static str {
        if self.public { "public" } else { "private" }
    }
}

/// Methods whose complete results carry cache hints.
pub fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// The fields of a result the gateway reads, in one pass over it (the rest is skipped, not
/// built).
#[derive(Deserialize, Default)]
pub struct Probe {
    #[serde(rename = "resultType", default)]
    result_type: Option<String>,
    #[serde(rename = "ttlMs", default)]
    ttl: Option<Value>,
    #[serde(rename = "cacheScope", default)]
    scope: Option<String>,
    #[serde(rename = "isError", default)]
    is_error: Option<Value>,
}

impl Probe {
    pub fn of(result: &RawValue) -> Probe {
        serde_json::from_str(result.get()).unwrap_or_default()
    }

    /// Whether the result asks the client for input (`input_required`, 2026-07-28).
    pub fn asks_for_input(&self) -> bool {
        self.result_type.as_deref() == Some("input_required")
    }

    /// Whether the tool ran and reported `isError: true`.
    pub fn is_tool_error(&self) -> bool {
        matches!(self.is_error, Some(Value::Bool(true)))
    }
}

/// The `ttlMs` a result states, if it states one.
pub fn stated_ttl(result: &RawValue) -> Option<u64> {
    Probe::of(result).ttl.as_ref().and_then(Value::as_u64)
}

/// Completes a merged result for a 2026 client.
pub fn complete_map(result: &mut Map<String, Value>, hint: CacheHint) {
    result.insert("resultType".into(), "complete".into());
    result.insert("ttlMs".into(), hint.ttl_ms.min(i64::MAX as u64).into());
    result.insert("cacheScope".into(), hint.scope().into());
}

/// The form of an upstream's result for a 2026 client of `method`: `resultType` added when
/// missing (a 2025 upstream's result is complete), and cache hints on cacheable results
/// (`NONE`'s when the upstream gave none). `None`: it is fine as it is.
pub fn for_stateless(result: &RawValue, p: &Probe, method: &str) -> Option<Box<RawValue>> {
    // Only a complete result carries hints (never an `input_required` one).
    let complete = p.result_type.as_deref().is_none_or(|t| t == "complete");
    let add_hints = cacheable(method) && complete && (p.ttl.is_none() || p.scope.is_none());
    if p.result_type.is_some() && !add_hints {
        return None;
    }
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(result.get()).ok()?;
    let raw = |v: &str| RawValue::from_string(v.to_string()).ok();
    if p.result_type.is_none() {
        fields.insert("resultType".into(), raw("\"complete\"")?);
    }
    if add_hints {
        let hint = CacheHint::of(result);
        fields.insert("ttlMs".into(), raw(&hint.ttl_ms.to_string())?);
        fields.insert("cacheScope".into(), raw(&format!("\"{}\"", hint.scope()))?);
    }
    serde_json::value::to_raw_value(&fields).ok()
}

/// The form of an upstream's result for a 2025 client: the 2026 fields left out. `None`: it
/// has none of them.
pub fn for_session(result: &RawValue, p: &Probe) -> Option<Box<RawValue>> {
    if p.result_type.is_none() && p.ttl.is_none() && p.scope.is_none() {
        return None;
    }
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(result.get()).ok()?;
    for key in ["resultType", "ttlMs", "cacheScope"] {
        fields.remove(key);
    }
    serde_json::value::to_raw_value(&fields).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap_or_else(|_| panic!("{s}"))
    }

    fn stateless(result: &RawValue, method: &str) -> Option<Box<RawValue>> {
        for_stateless(result, &Probe::of(result), method)
    }

    fn session(result: &RawValue) -> Option<Box<RawValue>> {
        for_session(result, &Probe::of(result))
    }

    #[test]
    fn one_probe_reads_every_field_and_tolerates_odd_flags() {
        let p = Probe::of(&raw(
            r#"{"content":[{"type":"text","text":"x"}],"isError":true,"resultType":"input_required"}"#,
        ));
        assert!(p.is_tool_error() && p.asks_for_input());
        let odd = Probe::of(&raw(r#"{"isError":null,"resultType":"complete"}"#));
        assert!(!odd.is_tool_error() && !odd.asks_for_input());
        assert_eq!(odd.result_type.as_deref(), Some("complete"));
    }

    #[test]
    fn a_2025_result_is_completed_for_a_2026_client() {
        let out = stateless(&raw(r#"{"tools":[]}"#), "tools/list").map(|r| r.get().to_string());
        assert_eq!(
            out.as_deref(),
            Some(r#"{"cacheScope":"private","resultType":"complete","tools":[],"ttlMs":0}"#)
        );
        let call = stateless(&raw(r#"{"content":[]}"#), "tools/call").map(|r| r.get().to_string());
        assert_eq!(
            call.as_deref(),
            Some(r#"{"content":[],"resultType":"complete"}"#)
        );
        assert!(
            stateless(
                &raw(r#"{"resultType":"complete","content":[]}"#),
                "tools/call"
            )
            .is_none(),
            "nothing to add"
        );
        let listed = r#"{"resultType":"complete","ttlMs":5000,"cacheScope":"public","tools":[]}"#;
        assert!(stateless(&raw(listed), "tools/list").is_none());
        let asking = r#"{"resultType":"input_required","requestState":"x"}"#;
        assert!(
            stateless(&raw(asking), "resources/read").is_none(),
            "an input_required result carries no cache hints"
        );
    }

    #[test]
    fn hints_merge_to_the_shortest_and_narrowest() {
        let public = CacheHint::of(&raw(r#"{"ttlMs":5000,"cacheScope":"public"}"#));
        assert_eq!(
            public,
            CacheHint {
                ttl_ms: 5000,
                public: true
            }
        );
        let merged = CacheHint::OPEN
            .and(public)
            .and(CacheHint::of(&raw(r#"{"tools":[]}"#)));
        assert_eq!(
            merged,
            CacheHint::NONE,
            "a 2025 upstream counts as 0 and private"
        );
        assert_eq!(
            CacheHint::of(&raw(r#"{"ttlMs":1.5,"cacheScope":"public"}"#)).ttl_ms,
            0
        );
    }

    #[test]
    fn a_2025_client_never_sees_2026_fields() {
        let out = session(&raw(
            r#"{"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[]}"#,
        ));
        assert_eq!(
            out.map(|r| r.get().to_string()).as_deref(),
            Some(r#"{"tools":[]}"#)
        );
        assert!(session(&raw(r#"{"tools":[]}"#)).is_none());
    }
}
