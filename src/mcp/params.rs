//! `Mcp-Param-*` headers (2026-07-28): a tool's `inputSchema` may mark properties with
//! `x-mcp-header: Token`, and a `tools/call` then mirrors each such argument into the header
//! `Mcp-Param-Token` (a boolean as `true`/`false`, other scalars as text; values that are not
//! plain ASCII in the `=?base64?…?=` form). An annotation is valid only on a property reached from
//! the schema's root through `properties` alone, on a string, integer or boolean property, with
//! a token of HTTP header-name characters, unique regardless of case; a tool with an invalid one
//! is left out of lists, as the official clients do.

use super::headers;
use serde_json::Value;

/// Schema keywords whose values are schemas (`properties` aside): an annotation under them is
/// off the `properties` chain, so invalid.
const ONE: &[&str] = &[
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
const MANY: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const MAP: &[&str] = &[
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// One annotated property: its path of `properties` keys and its header token.
pub type Annotation = (Vec<String>, String);

fn is_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The annotations of a tool's `inputSchema`, or why one is invalid.
pub fn annotations(schema: &Value) -> Result<Vec<Annotation>, String> {
    let mut found = Vec::new();
    walk(schema, Some(Vec::new()), &mut found, 0)?;
    let mut seen = std::collections::HashSet::new();
    for (path, token) in &found {
        if !seen.insert(token.to_ascii_lowercase()) {
            return Err(format!(
                "x-mcp-header `{token}` on `{}` is not unique",
                path.join(".")
            ));
        }
    }
    Ok(found)
}

fn walk(
    schema: &Value,
    path: Option<Vec<String>>,
    found: &mut Vec<Annotation>,
    depth: usize,
) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Ok(());
    };
    if depth > 64 {
        return Ok(());
    }
    if let Some(token) = obj.get("x-mcp-header") {
        let Some(path) = path.as_ref().filter(|p| !p.is_empty()) else {
            return Err("x-mcp-header off a `properties` chain".into());
        };
        let where_ = path.join(".");
        let token = token
            .as_str()
            .filter(|t| is_token(t))
            .ok_or_else(|| format!("x-mcp-header on `{where_}` is not a header-name token"))?;
        if !matches!(
            obj.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "boolean")
        ) {
            return Err(format!(
                "x-mcp-header on `{where_}`, which is not a string, integer or boolean"
            ));
        }
        found.push((path.clone(), token.to_string()));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            let next = path.as_ref().map(|p| {
                let mut p = p.clone();
                p.push(key.clone());
                p
            });
            walk(sub, next, found, depth + 1)?;
        }
    }
    for (key, value) in obj {
        let key = key.as_str();
        if ONE.contains(&key) {
            walk(value, None, found, depth + 1)?;
        } else if MANY.contains(&key) {
            for sub in value.as_array().into_iter().flatten() {
                walk(sub, None, found, depth + 1)?;
            }
        } else if MAP.contains(&key) {
            for sub in value.as_object().into_iter().flat_map(|m| m.values()) {
                walk(sub, None, found, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// The text an argument is mirrored as, if it is a scalar that has one.
fn rendered(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn value_at<'a>(arguments: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(arguments, |node, key| node.get(key))
        .filter(|v| !v.is_null())
}

/// The `Mcp-Param-*` headers a call with `arguments` carries (names lower-case, values encoded).
pub fn headers_for(annotations: &[Annotation], arguments: &Value) -> Vec<(String, String)> {
    annotations
        .iter()
        .filter_map(|(path, token)| {
            let text = rendered(value_at(arguments, path)?)?;
            Some((
                format!("mcp-param-{}", token.to_ascii_lowercase()),
                headers::encode(&text).into_owned(),
            ))
        })
        .collect()
}

/// Whether a received header value says what the argument says (integers compare as numbers).
pub fn matches(annotation_value: Option<&Value>, header: Option<&str>) -> bool {
    let expected = annotation_value.and_then(rendered);
    match (expected, header) {
        (None, None) => true,
        (Some(want), Some(got)) => {
            let Some(got) = headers::decode(got) else {
                return false;
            };
            if got == want {
                return true;
            }
            matches!(annotation_value, Some(Value::Number(n)) if n.is_i64() || n.is_u64())
                && got.trim().parse::<i128>().ok() == want.parse::<i128>().ok()
        }
        _ => false,
    }
}

/// The argument an annotation mirrors, if present and not null.
pub fn argument<'a>(arguments: &'a Value, annotation: &Annotation) -> Option<&'a Value> {
    value_at(arguments, &annotation.0)
}

/// The `Mcp-Param-*` headers a call to a tool with `x-mcp-header` annotations carries upstream
/// (`annotations`: the tool's, read when it was listed; `params`: the call's).
pub fn for_call(
    annotations: &[Annotation],
    params: &crate::mcp::jsonrpc::RawParams<'_>,
) -> Vec<(String, String)> {
    if annotations.is_empty() {
        return Vec::new();
    }
    let arguments = params
        .get("arguments")
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or(serde_json::Value::Null);
    headers_for(annotations, &arguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_read_and_invalid_ones_refused() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
        }});
        let found = annotations(&schema).unwrap();
        assert_eq!(found.len(), 2);
        let args = json!({"region": "eu-west", "opts": {"n": 3}});
        let mut h = headers_for(&found, &args);
        h.sort();
        assert_eq!(
            h,
            [
                ("mcp-param-n".into(), "3".into()),
                ("mcp-param-region".into(), "eu-west".into())
            ]
        );
        for bad in [
            json!({"properties": {"x": {"type": "number", "x-mcp-header": "X"}}}),
            json!({"properties": {"x": {"type": "string", "x-mcp-header": "bad name"}}}),
            json!({"items": {"type": "string", "x-mcp-header": "X"}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "X"}, "b": {"type": "string", "x-mcp-header": "x"}}}),
        ] {
            assert!(annotations(&bad).is_err(), "{bad}");
        }
        assert!(
            matches(Some(&json!(42)), Some("042")),
            "integers compare as numbers"
        );
        assert!(matches(Some(&json!("é")), Some("=?base64?w6k=?=")));
        assert!(!matches(Some(&json!("a")), None));
        assert!(!matches(None, Some("a")));
    }
}
