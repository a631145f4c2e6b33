//! Rewriting between a client's request and the upstream's: the gateway's own request ids and
//! progress tokens upstream, mapped back in every answer, relayed upstream requests given ids
//! that name their route, and the stateless revision's `_meta` left out toward 2025 sessions.

use super::era;
use super::jsonrpc::{self, Kind, Message, RawParams};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Prefix of the ids of upstream requests (sampling, elicitation) relayed to the client.
pub const RELAY_PREFIX: &str = "mcp-edge:";

/// The id the gateway gives a client's request upstream. Derived, not stored, so that a
/// `notifications/cancelled` reaching any instance maps to the same upstream id; it names the
/// caller, so one caller's cancellation can never name another's request.
pub fn upstream_id(caller_key: u64, client_id: &RawValue) -> String {
    format!("c:{caller_key:016x}:{}", client_id.get())
}

/// How a call ended, as its final upstream response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Result,
    /// The tool ran and reported `isError: true`.
    ToolError,
    /// A JSON-RPC error.
    Error,
    /// A 2026 upstream asks a 2025 session client for input: the message is the upstream's
    /// `input_required` result, for the gateway to drive (never sent as it is).
    InputRequired,
    /// A 2025 upstream's server request during a 2026 client's call: the message is the
    /// upstream's request, for the gateway to turn into an `input_required` round.
    ServerRequest,
}

/// How one upstream answer is mapped back to the client.
pub struct Rewriter<'a> {
    pub route: &'a str,
    pub upstream_id: &'a RawValue,
    pub client_id: &'a RawValue,
    pub client_token: Option<Box<RawValue>>,
    /// The method, when the client speaks the stateless revision (its results are completed
    /// as it requires); `None` for a 2025 session (2026 fields are left out).
    pub stateless: Option<&'a str>,
}

impl Rewriter<'_> {
    /// The client's form of one upstream message, with the call's outcome when it is the final
    /// response.
    pub fn message(&self, data: &[u8]) -> Option<(Cow<'static, [u8]>, Option<Ending>)> {
        let (msg, kind) = Message::parse(data).ok()?;
        match kind {
            Kind::Response if msg.id.map(RawValue::get) == Some(self.upstream_id.get()) => {
                let probe = msg.result.map(era::Probe::of);
                // A 2026 upstream asking a 2025 session client for input: the round is driven
                // through the client's session (the result as the upstream sent it).
                if self.stateless.is_none()
                    && probe.as_ref().is_some_and(era::Probe::asks_for_input)
                {
                    let result = msg.result.map(|r| r.get().as_bytes().to_vec())?;
                    return Some((Cow::Owned(result), Some(Ending::InputRequired)));
                }
                let (outcome, fitted) = match (msg.result, &probe) {
                    (Some(r), Some(p)) => (
                        if p.is_tool_error() {
                            Ending::ToolError
                        } else {
                            Ending::Result
                        },
                        match self.stateless {
                            Some(method) => era::for_stateless(r, p, method),
                            None => era::for_session(r, p),
                        },
                    ),
                    _ => (Ending::Error, None),
                };
                let result = fitted.as_deref().or(msg.result);
                let answer = jsonrpc::response(self.client_id, result, msg.error);
                Some((Cow::Owned(answer), Some(outcome)))
            }
            Kind::Response => None,
            Kind::Notification if msg.method() == "notifications/progress" => {
                let client_token = self.client_token.as_ref()?;
                let mut params = jsonrpc::split_params(msg.params).ok()?;
                let token = params.get("progressToken")?;
                if token.get() != self.upstream_id.get() {
                    return None;
                }
                params.insert("progressToken".into(), Cow::Borrowed(client_token.as_ref()));
                let out = jsonrpc::rebuild("notifications/progress", None, Some(&params));
                Some((Cow::Owned(out), None))
            }
            Kind::Notification => Some((Cow::Owned(data.to_vec()), None)),
            // A 2026-07-28 stream carries no server requests: the gateway turns the upstream's
            // request into an `input_required` round (the message as the upstream sent it).
            Kind::Request if self.stateless.is_some() => {
                Some((Cow::Owned(data.to_vec()), Some(Ending::ServerRequest)))
            }
            Kind::Request => {
                let id =
                    jsonrpc::to_raw(&format!("{RELAY_PREFIX}{}:{}", self.route, msg.id_text()));
                let params = jsonrpc::split_params(msg.params).ok()?;
                let out = jsonrpc::rebuild(&msg.method(), Some(&id), Some(&params));
                Some((Cow::Owned(out), None))
            }
        }
    }
}

/// Leaves the stateless revision's own `_meta` keys out of `params` (and `_meta` itself when
/// nothing else is in it).
pub fn strip_stateless_meta(params: &mut RawParams<'_>) {
    let Some(meta) = params.get("_meta") else {
        return;
    };
    let Ok(mut meta) = serde_json::from_str::<serde_json::Map<String, Value>>(meta.get()) else {
        return;
    };
    for key in super::STATELESS_META_KEYS {
        meta.remove(*key);
    }
    if meta.is_empty() {
        params.remove("_meta");
    } else {
        params.insert("_meta".into(), Cow::Owned(jsonrpc::to_raw(&meta)));
    }
}

/// Adds the stateless revision's `_meta` envelope to a 2025 session client's `params`, for an
/// upstream that speaks only that revision: the version, and the capabilities the client
/// declared at `initialize` (`capabilities`, JSON).
pub fn add_stateless_meta(params: &mut RawParams<'_>, capabilities: &str) {
    let mut meta: serde_json::Map<String, Value> = params
        .get("_meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    meta.insert(
        super::META_PROTOCOL_VERSION.into(),
        Value::String(super::STATELESS_VERSION.into()),
    );
    meta.insert(
        super::META_CLIENT_CAPABILITIES.into(),
        serde_json::from_str(capabilities).unwrap_or(Value::Object(Default::default())),
    );
    params.insert("_meta".into(), Cow::Owned(jsonrpc::to_raw(&meta)));
}

/// Replaces the client's progress token with the gateway's; returns the client's.
pub fn swap_progress_token(params: &mut RawParams<'_>, ours: &RawValue) -> Option<Box<RawValue>> {
    let meta = params.get("_meta")?;
    let mut meta = jsonrpc::split_params(Some(meta.as_ref())).ok()?;
    let theirs = meta.get("progressToken")?.clone().into_owned();
    meta.insert("progressToken".into(), Cow::Borrowed(ours));
    let meta = jsonrpc::to_raw(&meta);
    params.insert("_meta".into(), Cow::Owned(meta));
    Some(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> RawParams<'static> {
        let json: &'static str = Box::leak(json.to_string().into_boxed_str());
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        jsonrpc::split_params(Some(Box::leak(Box::new(raw)))).unwrap()
    }

    #[test]
    fn progress_tokens_and_ids_map_both_ways() {
        let ours = jsonrpc::to_raw(&upstream_id(7, &jsonrpc::to_raw(&1)));
        assert_eq!(ours.get(), "\"c:0000000000000007:1\"");
        let mut p = params(r#"{"name":"t","_meta":{"progressToken":"p1","other":1}}"#);
        let theirs = swap_progress_token(&mut p, &ours).unwrap();
        assert_eq!(theirs.get(), "\"p1\"");
        assert!(p["_meta"].get().contains("c:0000000000000007:1"));
        let client_id = jsonrpc::to_raw(&1);
        let rw = Rewriter {
            route: "alpha",
            upstream_id: &ours,
            client_id: &client_id,
            client_token: Some(theirs),
            stateless: None,
        };
        let progress = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":1}}}}"#,
            ours.get()
        );
        let (out, end) = rw.message(progress.as_bytes()).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("\"progressToken\":\"p1\""));
        assert_eq!(end, None);
        let done = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"isError":true}}}}"#,
            ours.get()
        );
        let (out, end) = rw.message(done.as_bytes()).unwrap();
        assert_eq!(end, Some(Ending::ToolError));
        assert!(String::from_utf8_lossy(&out).contains("\"id\":1"));
        let other = r#"{"jsonrpc":"2.0","id":"someone-else","result":{}}"#;
        assert!(
            rw.message(other.as_bytes()).is_none(),
            "another request's answer is dropped"
        );
        let ask = r#"{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{}}"#;
        let (out, _) = rw.message(ask.as_bytes()).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("\"id\":\"mcp-edge:alpha:5\""));
    }

    #[test]
    fn stateless_meta_is_left_out_and_nothing_else() {
        let mut p = params(
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":3}}"#,
        );
        strip_stateless_meta(&mut p);
        assert_eq!(p["_meta"].get(), r#"{"progressToken":3}"#);
        let mut p = params(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#);
        strip_stateless_meta(&mut p);
        assert!(!p.contains_key("_meta"));
    }
}
