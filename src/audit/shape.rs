//! The shape of a call's arguments for its audit record: keys and JSON types, each leaf value
//! as a keyed HMAC, never the value. Written straight to JSON text by the writer thread (no
//! `Value` tree is built for the shape), with the HMAC key set up once.

use hmac::{Hmac, Mac};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Sha256;

/// How deep argument shapes go; deeper values are a `{type, cut}` marker.
const SHAPE_DEPTH: usize = 32;

/// HMAC-SHA256 under one key, keyed once (each use clones the keyed state).
#[derive(Clone)]
pub struct Keyed(Hmac<Sha256>);

impl Keyed {
    pub fn new(key: &[u8]) -> Self {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        Self(
            Hmac::<Sha256>::new_from_slice(key)
                .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default())),
        )
    }

    pub fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }
}

/// The arguments of a request body as sent, unparsed (any depth: raw values are skipped
/// without recursion).
pub fn raw_arguments(body: &[u8]) -> Option<&RawValue> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        arguments: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Body>(body).ok()?.params?.arguments
}

/// The shape of a call's arguments as JSON text: `None` when none were sent; an explicit marker
/// (never `null`) when they nest deeper than JSON values are read here.
pub fn arguments_of(body: Option<&[u8]>, key: &Keyed) -> Option<Box<RawValue>> {
    let raw = body.and_then(raw_arguments)?;
    // `to_raw_value` keeps the text it serialized (no second parse to check it).
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v) => serde_json::value::to_raw_value(&Shaped {
            v: &v,
            key,
            depth: 0,
        })
        .ok(),
        Err(_) => RawValue::from_string(
            r#"{"cut":"nested deeper than 128 levels; not shaped"}"#.to_string(),
        )
        .ok(),
    }
}

/// A value as its shape, serialized in place. Keys come out in the order of the parsed map
/// (sorted), leaves as `{"hmac","type"}`.
struct Shaped<'a> {
    v: &'a Value,
    key: &'a Keyed,
    depth: usize,
}

impl Serialize for Shaped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = |v| Shaped {
            v,
            key: self.key,
            depth: self.depth + 1,
        };
        match self.v {
            Value::Object(_) | Value::Array(_) if self.depth >= SHAPE_DEPTH => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("cut", &format_args!("deeper than {SHAPE_DEPTH} levels"))?;
                m.serialize_entry(
                    "type",
                    if self.v.is_object() {
                        "object"
                    } else {
                        "array"
                    },
                )?;
                m.end()
            }
            Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &inner(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&inner(i))?;
                }
                seq.end()
            }
            leaf => {
                let kind = match leaf {
                    Value::Null => "null",
                    Value::Bool(_) => "boolean",
                    Value::Number(_) => "number",
                    _ => "string",
                };
                let digest = self.key.mac(leaf.to_string().as_bytes());
                let mut hex = [0u8; 24];
                // 12 bytes always fit 24 hex digits.
                let _ = hex::encode_to_slice(&digest[..12], &mut hex);
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("hmac", std::str::from_utf8(&hex).unwrap_or_default())?;
                m.serialize_entry("type", kind)?;
                m.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(args: &Value, key: &[u8]) -> Value {
        let body = json!({"params": {"arguments": args}}).to_string();
        let raw = arguments_of(Some(body.as_bytes()), &Keyed::new(key)).unwrap();
        serde_json::from_str(raw.get()).unwrap()
    }

    #[test]
    fn shapes_keep_keys_and_types_and_hide_values() {
        let args = json!({"table": "salaries", "limit": 5, "filters": [{"ssn": "123-45-6789"}], "dry": true});
        let shape_of = shape(&args, b"0123456789abcdef");
        let text = shape_of.to_string();
        assert!(
            !text.contains("salaries") && !text.contains("123-45-6789"),
            "{text}"
        );
        assert_eq!(shape_of["limit"]["type"], "number");
        assert_eq!(shape_of["filters"][0]["ssn"]["type"], "string");
        assert_eq!(shape_of["dry"]["type"], "boolean");
        assert_eq!(
            shape_of["table"],
            shape(&json!("salaries"), b"0123456789abcdef"),
            "same value, same HMAC"
        );
        assert_ne!(
            shape_of["table"],
            shape(&json!("salaries"), b"another key 12345"),
            "keyed"
        );
    }

    #[test]
    fn the_hmac_is_the_keyed_digest_of_the_value_and_deep_values_are_cut() {
        let key = b"0123456789abcdef";
        let leaf = shape(&json!({"a": "x"}), key);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(b"\"x\"");
        let want = hex::encode(&mac.finalize().into_bytes()[..12]);
        assert_eq!(leaf["a"]["hmac"], json!(want));
        let mut deep = json!("leaf");
        for _ in 0..40 {
            deep = json!([deep]);
        }
        let text = shape(&deep, key).to_string();
        assert!(text.contains(r#"{"cut":"deeper than 32 levels","type":"array"}"#));
        assert!(arguments_of(Some(br#"{"params":{}}"#), &Keyed::new(key)).is_none());
    }
}
