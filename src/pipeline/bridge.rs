//! Era bridging for a 2025 session client in front of a 2026-07-28 upstream: the upstream's
//! `input_required` (elicitation, sampling, roots) is driven through the client's session. Each
//! input request goes to the client on the call's own event stream as a server request (an id
//! of 128 random bits bound to this caller and session, like an approval question); the answers
//! come back as the client's responses, and the call is sent again with them as
//! `inputResponses` and the upstream's exact `requestState`, at most `MAX_ROUNDS` times.

use super::Shared;
use super::approval::{self, APPROVAL_TIMEOUT};
use crate::config::Route;
use crate::ctx::{Ctx, Era};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc::{self, RawParams};
use crate::mcp::sse;
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Prefix of the ids of the input requests the gateway relays.
pub const INPUT_PREFIX: &str = "mcp-edge:input:";
/// Rounds of one call at most (the official clients stop at 10 too).
const MAX_ROUNDS: usize = 10;

/// What the next request of the call carries.
pub struct Answers {
    responses: Map<String, Value>,
    state: Option<Box<RawValue>>,
}

impl Answers {
    /// Puts the answers and the upstream's state into the call's params.
    pub fn apply(self, params: &mut RawParams<'_>) {
        params.insert(
            "inputResponses".into(),
            Cow::Owned(jsonrpc::to_raw(&self.responses)),
        );
        match self.state {
            Some(state) => params.insert("requestState".into(), Cow::Owned(state)),
            None => params.remove("requestState"),
        };
    }
}

/// Which client capability an input request needs.
fn capability(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Asks the client for what the upstream's `input_required` result names; the answers.
#[allow(clippy::too_many_arguments)]
pub async fn ask(
    sh: &Shared,
    s: &mut Session,
    ctx: &Ctx,
    route: &Route,
    result: &[u8],
    id: &RawValue,
    streaming: &mut bool,
    round: usize,
) -> Result<Answers, GatewayError> {
    let cannot = |why: String| Cause::CannotRelay(why).to(id);
    if round > MAX_ROUNDS {
        return Err(cannot(format!(
            "upstream `{}` asked for input more than {MAX_ROUNDS} times",
            route.name
        )));
    }
    let asked: Map<String, Value> = serde_json::from_slice(result)
        .map_err(|_| Cause::UpstreamInvalid(route.name.clone()).to(id))?;
    let requests = asked
        .get("inputRequests")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let state = asked.get("requestState").map(jsonrpc::to_raw);
    if requests.is_empty() && state.is_none() {
        return Err(Cause::UpstreamInvalid(route.name.clone()).to(id));
    }
    let declared: Value = match &ctx.era {
        Era::Session(st) => serde_json::from_str(&st.capabilities).unwrap_or_default(),
        _ => Value::Null,
    };
    let mut out = Vec::new();
    let mut waiting = Vec::with_capacity(requests.len());
    for (key, request) in &requests {
        let method = request["method"].as_str().unwrap_or_default();
        let needed = capability(method).filter(|c| declared[c].is_object());
        if needed.is_none() {
            approval::forget(sh, waiting.iter().map(|(_, n, _)| *n));
            return Err(cannot(format!(
                "upstream `{}` asked for `{method}`, which this client did not declare",
                route.name
            )));
        }
        let (n, rx) = approval::register(sh, ctx, route, key, true).await;
        let ask_id = jsonrpc::to_raw(&format!("{INPUT_PREFIX}{n:032x}"));
        sse::write_event(
            &mut out,
            &jsonrpc::request(&ask_id, method, Some(&request["params"])),
        );
        waiting.push((key.clone(), n, rx));
    }
    let started = *streaming || http::sse_start(s, &[]).await.is_ok();
    *streaming = started;
    let sent = started && s.write_response_body(Bytes::from(out), false).await.is_ok();
    let mut responses = Map::new();
    let mut missing = !sent;
    for (key, n, rx) in &mut waiting {
        if missing {
            break;
        }
        let answer = tokio::select! {
            a = tokio::time::timeout(APPROVAL_TIMEOUT, rx) => a.ok().and_then(Result::ok),
            _ = s.read_body_or_idle(true) => None,
        };
        approval::forget(sh, [*n]);
        match answer {
            Some(answer) if !answer.is_null() => {
                responses.insert(key.clone(), answer);
            }
            _ => missing = true,
        }
    }
    approval::forget(sh, waiting.iter().map(|(_, n, _)| *n));
    if missing {
        return Err(cannot(format!(
            "the client did not answer what upstream `{}` asked",
            route.name
        )));
    }
    Ok(Answers { responses, state })
}
