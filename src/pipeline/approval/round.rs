//! `approval: required` for stateless (2026-07-28) callers, who have no stream to be asked on:
//! the call is answered `input_required` with one elicitation (`mcp-edge.approve`) and a
//! `requestState` sealed under the session keys, bound to the caller, the route, the tool and a
//! digest of the arguments, expiring, and single-use (here, and on every instance with a
//! sessions store). The client retries the same call with the state and the user's answer; only
//! an explicit yes lets it through, and the gateway's own keys are left out upstream.

use super::{APPROVAL_TIMEOUT, approves, question};
use crate::config::Route;
use crate::ctx::Ctx;
use crate::error::{Cause, GatewayError};
use crate::mcp::jsonrpc::{self, RawParams};
use crate::mcp::session::now_secs;
use crate::pipeline::Shared;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The gateway's key among the request's `inputRequests`/`inputResponses`.
pub const APPROVE_KEY: &str = "mcp-edge.approve";
/// What a sealed round state is for (it opens as nothing else).
const PURPOSE: &[u8] = b"mcp-edge approval round v1";

/// What a `requestState` of the gateway's says.
#[derive(Serialize, Deserialize)]
struct State {
    caller: u64,
    route: String,
    tool: String,
    /// SHA-256 of the arguments as sent, hex.
    args: String,
    exp: u64,
    nonce: u128,
}

/// How the round went.
pub enum Round {
    /// Approved: `params` no longer carry the gateway's state and answer.
    Approved,
    /// The result that asks the user (`input_required`).
    Ask(Box<RawValue>),
}

fn digest(params: &RawParams<'_>) -> String {
    let args = params.get("arguments").map_or("{}", |a| a.get());
    hex::encode(Sha256::digest(args.as_bytes()))
}

fn can_elicit(params: &RawParams<'_>) -> bool {
    params
        .get("_meta")
        .and_then(|m| serde_json::from_str::<Value>(m.get()).ok())
        .is_some_and(|m| m[crate::mcp::META_CLIENT_CAPABILITIES]["elicitation"].is_object())
}

/// One round of a stateless approval for the call in `params`.
pub async fn approve(
    sh: &Shared,
    ctx: &Ctx,
    route: &Route,
    exposed: &str,
    params: &mut RawParams<'_>,
    id: &RawValue,
) -> Result<Round, GatewayError> {
    if !can_elicit(params) {
        return Err(Cause::MissingCapability {
            what: format!("tool `{exposed}` needs the user's approval for each call"),
            required: json!({"elicitation": {"form": {}}}),
        }
        .to(id));
    }
    let args = digest(params);
    let Some(state) = params.get("requestState") else {
        return Ok(ask(sh, ctx, route, exposed, params, args));
    };
    let invalid = |why: &str| Cause::InvalidParams(format!("requestState: {why}")).to(id);
    let token: String = serde_json::from_str(state.get()).map_err(|_| invalid("not a string"))?;
    let state: State = sh
        .sealer
        .open_as(PURPOSE, &token)
        .ok_or_else(|| invalid("not one this gateway issued"))?;
    let bound = state.caller == ctx.caller_key
        && state.route == route.name
        && state.tool == exposed
        && state.args == args;
    if !bound {
        return Err(invalid("issued for another call"));
    }
    if state.exp <= now_secs() {
        return Err(invalid("expired; call again to be asked again"));
    }
    let answer = params
        .get("inputResponses")
        .and_then(|r| serde_json::from_str::<Map<String, Value>>(r.get()).ok())
        .and_then(|mut r| r.remove(APPROVE_KEY));
    let Some(answer) = answer else {
        // Not answered (yet): ask again rather than fail.
        return Ok(ask(sh, ctx, route, exposed, params, args));
    };
    if !approves(&answer) {
        return Err(Cause::NotApproved(format!(
            "tool `{exposed}` was not run: the user did not approve it"
        ))
        .to(id));
    }
    let store = sh.session_store.as_deref();
    if !crate::store::use_once(
        &sh.approvals.rounds,
        store,
        "approval",
        state.nonce,
        state.exp,
    )
    .await
    {
        return Err(invalid("already used; each approval runs one call"));
    }
    strip(params);
    Ok(Round::Approved)
}

/// The `input_required` result that asks the user, with a fresh state.
fn ask(
    sh: &Shared,
    ctx: &Ctx,
    route: &Route,
    exposed: &str,
    params: &RawParams<'_>,
    args: String,
) -> Round {
    let state = State {
        caller: ctx.caller_key,
        route: route.name.clone(),
        tool: exposed.to_string(),
        args,
        exp: now_secs() + APPROVAL_TIMEOUT.as_secs(),
        nonce: rand::random(),
    };
    let arguments = params.get("arguments").map(|a| a.as_ref());
    let result = json!({
        "resultType": "input_required",
        "inputRequests": {APPROVE_KEY: {
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": question(exposed, route, arguments),
                "requestedSchema": {
                    "type": "object",
                    "properties": {"approve": {"type": "boolean", "title": "Approve this call"}},
                    "required": ["approve"],
                },
            },
        }},
        "requestState": sh.sealer.seal_as(PURPOSE, &state),
    });
    Round::Ask(jsonrpc::to_raw(&result))
}

/// Leaves the gateway's state and answer out of what goes upstream.
fn strip(params: &mut RawParams<'_>) {
    params.remove("requestState");
    let Some(responses) = params
        .get("inputResponses")
        .and_then(|r| serde_json::from_str::<Map<String, Value>>(r.get()).ok())
    else {
        return;
    };
    let mut responses = responses;
    responses.remove(APPROVE_KEY);
    if responses.is_empty() {
        params.remove("inputResponses");
    } else {
        params.insert(
            "inputResponses".into(),
            Cow::Owned(jsonrpc::to_raw(&responses)),
        );
    }
}
