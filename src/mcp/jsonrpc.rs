//! JSON-RPC 2.0 envelopes, read without deserializing what we only pass along: `params`,
//! `result` and `error` stay raw text, so a 256 KiB argument is scanned once and never rebuilt.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// One JSON-RPC message as it arrived.
#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    #[serde(default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// Why a body is not a JSON-RPC message, as the code the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: i64,
    pub message: &'static str,
}

const NOT_JSON: Invalid = Invalid {
    code: PARSE_ERROR,
    message: "Parse error: the body is not valid JSON",
};

impl<'a> Message<'a> {
    /// Parses and checks one message: -32700 for text that is not JSON, -32600 for JSON that is
    /// not a single JSON-RPC 2.0 request, notification or response.
    pub fn parse(body: &'a [u8]) -> Result<(Self, Kind), Invalid> {
        let text = std::str::from_utf8(body).map_err(|_| Invalid {
            code: PARSE_ERROR,
            message: "Parse error: the body is not UTF-8 JSON",
        })?;
        let invalid = |message| Invalid {
            code: INVALID_REQUEST,
            message,
        };
        let first = text.trim_start().as_bytes().first().copied();
        if first == Some(b'[') {
            return Err(invalid(
                "Invalid Request: JSON-RPC batches are not supported; send one message per POST",
            ));
        }
        // One scan: the envelope is read straight from the text (params, result and error are
        // validated and kept raw); a syntax error is a parse error, a wrong shape is not.
        let not_json = || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err();
        let msg: Message = serde_json::from_str(text).map_err(|e| match e.classify() {
            // Only on this error path is the text scanned again, to tell bad JSON from a bad shape.
            serde_json::error::Category::Data if not_json() => NOT_JSON,
            serde_json::error::Category::Data if first == Some(b'{') => {
                invalid("Invalid Request: not a JSON-RPC 2.0 message")
            }
            serde_json::error::Category::Data => {
                invalid("Invalid Request: expected a JSON-RPC object")
            }
            _ => NOT_JSON,
        })?;
        if msg.jsonrpc.as_deref() != Some("2.0") {
            return Err(invalid("Invalid Request: `jsonrpc` must be \"2.0\""));
        }
        if let Some(id) = msg.id
            && !is_valid_id(id)
        {
            return Err(invalid(
                "Invalid Request: `id` must be a string or an integer",
            ));
        }
        if let Some(m) = msg.method
            && !m.get().starts_with('"')
        {
            return Err(invalid("Invalid Request: `method` must be a string"));
        }
        let kind = match (msg.method.is_some(), msg.id.is_some()) {
            (true, true) => Kind::Request,
            (true, false) => Kind::Notification,
            (false, true) if msg.result.is_some() != msg.error.is_some() => Kind::Response,
            _ => {
                return Err(invalid(
                    "Invalid Request: expected a request, a notification or a response",
                ));
            }
        };
        Ok((msg, kind))
    }

    /// The method name, unescaped.
    pub fn method(&self) -> Cow<'a, str> {
        self.method
            .and_then(|m| serde_json::from_str::<Cow<'a, str>>(m.get()).ok())
            .unwrap_or(Cow::Borrowed(""))
    }

    /// The raw text of the id, or `null`.
    pub fn id_text(&self) -> &'a str {
        self.id.map_or("null", RawValue::get)
    }
}

fn is_valid_id(id: &RawValue) -> bool {
    let t = id.get();
    t.starts_with('"')
        || (!t.is_empty()
            && t.trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit()))
}

/// A request's params as an ordered map of raw values, for rewriting a few keys in place. Keys
/// borrow from the body unless they had escapes.
pub type RawParams<'a> = BTreeMap<Cow<'a, str>, Cow<'a, RawValue>>;

/// An object key, borrowed from the text when it can be.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

/// Parses `params` (absent = empty) into raw parts, borrowed from the body; an error means
/// params is not an object.
pub fn split_params<'a>(params: Option<&'a RawValue>) -> Result<RawParams<'a>, Invalid> {
    struct Parts;
    impl<'de> serde::de::Visitor<'de> for Parts {
        type Value = RawParams<'de>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut parts = RawParams::new();
            while let Some((Key(k), v)) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                parts.insert(k, Cow::Borrowed(v));
            }
            Ok(parts)
        }
    }
    let Some(p) = params else {
        return Ok(RawParams::new());
    };
    let mut de = serde_json::Deserializer::from_str(p.get());
    serde::Deserializer::deserialize_map(&mut de, Parts)
        .and_then(|parts| de.end().map(|()| parts))
        .map_err(|_| Invalid {
            code: INVALID_PARAMS,
            message: "Invalid params: `params` must be an object",
        })
}

/// A string field of params, unescaped.
pub fn str_param<'a>(params: &RawParams<'a>, key: &str) -> Option<String> {
    params
        .get(key)
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
}

/// Any serializable value as a raw JSON value.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[derive(Serialize)]
struct Request<'r, P: Serialize> {
    jsonrpc: &'static str,
    id: &'r RawValue,
    method: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<P>,
}

/// `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`.
pub fn request<P: Serialize>(id: &RawValue, method: &str, params: Option<P>) -> Vec<u8> {
    serde_json::to_vec(&Request {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct Notification<'r, P: Serialize> {
    jsonrpc: &'static str,
    method: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<P>,
}

/// `{"jsonrpc":"2.0","method":…,"params":…}`.
pub fn notification<P: Serialize>(method: &str, params: Option<P>) -> Vec<u8> {
    serde_json::to_vec(&Notification {
        jsonrpc: "2.0",
        method,
        params,
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct Success<'r, R: Serialize + ?Sized> {
    jsonrpc: &'static str,
    id: &'r RawValue,
    result: &'r R,
}

/// `{"jsonrpc":"2.0","id":…,"result":…}`.
pub fn success<R: Serialize + ?Sized>(id: &RawValue, result: &R) -> Vec<u8> {
    serde_json::to_vec(&Success {
        jsonrpc: "2.0",
        id,
        result,
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct ErrorBody<'r> {
    code: i64,
    message: &'r str,
}

#[derive(Serialize)]
struct Failure<'r> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'r RawValue>,
    error: ErrorBody<'r>,
}

/// `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}`; no id when it could not be read.
pub fn failure(id: Option<&RawValue>, code: i64, message: &str) -> Vec<u8> {
    serde_json::to_vec(&Failure {
        jsonrpc: "2.0",
        id,
        error: ErrorBody { code, message },
    })
    .unwrap_or_default()
}

/// A response with its id replaced: `result`/`error` are copied as raw text.
pub fn reid_response(msg: &Message<'_>, id: &RawValue) -> Vec<u8> {
    response(id, msg.result, msg.error)
}

/// A response from its parts, as they are.
pub fn response(id: &RawValue, result: Option<&RawValue>, error: Option<&RawValue>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'r> {
        jsonrpc: &'static str,
        id: &'r RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'r RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'r RawValue>,
    }
    serde_json::to_vec(&Out {
        jsonrpc: "2.0",
        id,
        result,
        error,
    })
    .unwrap_or_default()
}

/// A request or notification with new id and params.
pub fn rebuild(method: &str, id: Option<&RawValue>, params: Option<&RawParams<'_>>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'r, 'p> {
        jsonrpc: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'r RawValue>,
        method: &'r str,
        #[serde(skip_serializing_if = "Option::is_none")]
        params: Option<&'r RawParams<'p>>,
    }
    serde_json::to_vec(&Out {
        jsonrpc: "2.0",
        id,
        method,
        params,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let (m, k) = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#,
        )
        .unwrap();
        assert_eq!(k, Kind::Request);
        assert_eq!(m.method(), "tools/call");
        assert_eq!(m.id_text(), "1");
        let (_, k) =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(k, Kind::Notification);
        let (_, k) = Message::parse(br#"{"jsonrpc":"2.0","id":"x","result":{}}"#).unwrap();
        assert_eq!(k, Kind::Response);
    }

    #[test]
    fn rejects_bad_input_with_the_right_code() {
        assert_eq!(Message::parse(b"{nope").unwrap_err().code, PARSE_ERROR);
        assert_eq!(Message::parse(b"\xff").unwrap_err().code, PARSE_ERROR);
        assert_eq!(
            Message::parse(br#"{"jsonrpc":5,"id":1, nope"#)
                .unwrap_err()
                .code,
            PARSE_ERROR,
            "a wrong type before a syntax error is still a parse error"
        );
        for bad in [
            &br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#[..],
            br#"{"id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#""just a string""#,
        ] {
            assert_eq!(
                Message::parse(bad).unwrap_err().code,
                INVALID_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn params_rewrite_keeps_arguments_verbatim() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a__b","arguments":{"x": [1, 2.50]}}}"#;
        let (m, _) = Message::parse(body).unwrap();
        let mut p = split_params(m.params).unwrap();
        assert_eq!(str_param(&p, "name").as_deref(), Some("a__b"));
        p.insert("name".into(), Cow::Owned(to_raw("b")));
        let id = to_raw("g1");
        let out = String::from_utf8(rebuild("tools/call", Some(&id), Some(&p))).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":"g1","method":"tools/call","params":{"arguments":{"x": [1, 2.50]},"name":"b"}}"#
        );
    }
}
