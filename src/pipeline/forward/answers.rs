//! Answers from a whole upstream answer: a JSON one (one message, or newline-delimited ones
//! ending with the response), an upstream's own 4xx JSON-RPC error, a status that is no answer.

use super::{Call, Step, outcome_of};
use crate::ctx::Outcome;
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::jsonrpc;
use crate::mcp::rewrite::Ending;
use crate::mcp::sse;
use crate::pipeline::Shared;
use crate::pipeline::link;
use crate::upstream::Exchange;
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use tokio::time::Instant;

/// Answers the client from an upstream's JSON answer.
pub(super) async fn answer_json(
    s: &mut Session,
    call: &Call<'_>,
    body: &[u8],
) -> Result<Step, GatewayError> {
    let (route, id) = (call.route, call.rw.client_id);
    // One JSON message, or several (newline-delimited) ending with the response: the ones
    // before it (progress, logs) go first when the answer can be a stream.
    let mut before = Vec::new();
    let mut last = None;
    for value in serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>() {
        let Ok(value) = value else {
            break;
        };
        match call.rw.message(value.get().as_bytes()) {
            Some((answer, Some(ending))) => {
                last = Some((answer, ending));
                break;
            }
            Some((message, None)) => before.push(message),
            None => {}
        }
    }
    let Some((answer, ending)) = last else {
        log::warn!(
            "{} to upstream {}: answer is not a JSON-RPC response to our request",
            call.method,
            link::peer_label(route)
        );
        return Err(Cause::UpstreamInvalid(route.name.clone()).to(id));
    };
    if ending == Ending::InputRequired {
        let result = answer.into_owned();
        return Ok(Step::Input {
            result,
            started: false,
        });
    }
    if before.is_empty() && !call.streaming {
        http::json(s, 200, answer.into_owned(), &[]).await.ok();
        return Ok(Step::Done(outcome_of(ending)));
    }
    if !call.streaming && http::sse_start(s, &[]).await.is_err() {
        return Ok(Step::Done(Outcome::Cancelled));
    }
    let mut out = Vec::new();
    for message in before.iter().chain(std::iter::once(&answer)) {
        sse::write_event(&mut out, message);
    }
    let _ = s.write_response_body(Bytes::from(out), true).await;
    Ok(Step::Done(outcome_of(ending)))
}

/// The upstream answered a status that is no answer to relay.
pub(super) fn bad_status(call: &Call<'_>, status: u16) -> GatewayError {
    log::warn!(
        "{} to upstream {} answered HTTP {status}",
        call.method,
        link::peer_label(call.route)
    );
    Cause::UpstreamStatus {
        route: call.route.name.clone(),
        status,
    }
    .to(call.rw.client_id)
}

/// An upstream's 4xx answer: a JSON-RPC error to our request is relayed with its status and
/// code; anything else is reported as the status.
pub(super) async fn refused(
    sh: &Shared,
    s: &mut Session,
    mut ex: Exchange,
    call: &Call<'_>,
    deadline: Instant,
) -> Result<Outcome, GatewayError> {
    let status = ex.status();
    let body = tokio::time::timeout_at(deadline, ex.collect_at_most(call.cap)).await;
    ex.finish(&sh.upstreams.connector, &call.route.upstream)
        .await;
    let error = body.ok().and_then(Result::ok).and_then(|body| {
        let (msg, _) = jsonrpc::Message::parse(&body).ok()?;
        let ours = msg
            .id
            .is_none_or(|i| i.get() == call.rw.upstream_id.get() || i.get() == "null");
        let error = msg.error.filter(|_| ours)?;
        Some(jsonrpc::response(call.rw.client_id, None, Some(error)))
    });
    let Some(answer) = error else {
        return Err(bad_status(call, status));
    };
    http::json(s, status, answer, &[]).await.ok();
    Ok(Outcome::Error)
}
