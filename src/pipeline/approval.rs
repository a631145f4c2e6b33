//! `approval: required`: before the call goes upstream the gateway asks the user through an
//! elicitation on the call's own event stream, naming the tool and showing its arguments, and
//! proceeds only on an explicit yes. A question's id is 128 random bits bound to the session and
//! caller that asked; an answer from anyone else is treated exactly like an unknown id. Clients
//! that cannot be asked (no elicitation capability) are refused with a clear error; stateless
//! callers are asked in an `input_required` round (`round.rs`).

mod remote;
pub mod round;

use super::Shared;
use crate::cache::Bounded;
use crate::config::Route;
use crate::ctx::{Ctx, Era, Outcome};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::{jsonrpc, sse};
use bytes::Bytes;
use pingora::protocols::http::ServerSession as Session;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the user has to answer.
pub(super) const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Prefix of the ids of the gateway's own approval requests.
pub const APPROVAL_PREFIX: &str = "mcp-edge:approval:";
/// The most of a call's arguments the question shows.
const SHOWN_ARGUMENTS: usize = 1000;

/// Questions waiting for the user's answer, by their random id; and the stateless rounds'
/// nonces already used.
pub struct Approvals {
    waiting: Arc<Mutex<HashMap<u128, Waiting>>>,
    rounds: Bounded<u128, ()>,
    /// This instance's name for answers routed to it through the store.
    instance: u64,
    /// This instance's answer channel is being listened to.
    listening: AtomicBool,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            waiting: Default::default(),
            rounds: Bounded::new(super::shared::LOCAL_CAP),
            instance: rand::random(),
            listening: AtomicBool::new(false),
        }
    }
}

/// What the answer channel's task holds: where to deliver answers from other instances.
struct Handle {
    instance: u64,
    waiting: Arc<Mutex<HashMap<u128, Waiting>>>,
}

impl Handle {
    /// Delivers another instance's answer to question `n` (already checked there).
    fn deliver(&self, n: u128, result: Value) {
        let waiting = lock(&self.waiting).remove(&n);
        if let Some(w) = waiting {
            let _ = w.tx.send(result);
        }
    }
}

fn lock(m: &Mutex<HashMap<u128, Waiting>>) -> std::sync::MutexGuard<'_, HashMap<u128, Waiting>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who may answer one question, and where the answer goes.
struct Waiting {
    caller: u64,
    session: Option<u128>,
    route: usize,
    tool: String,
    /// An upstream's input request relayed by the bridge (else an approval question).
    input: bool,
    tx: oneshot::Sender<Value>,
}

/// Registers a question to this caller in this session: its random id and where the answer
/// arrives (with a store, through whichever instance it is sent to). `what`: the tool asked
/// about (or the upstream's key of an input request).
pub(super) async fn register(
    sh: &Shared,
    ctx: &Ctx,
    route: &Route,
    what: &str,
    input: bool,
) -> (u128, oneshot::Receiver<Value>) {
    let n: u128 = rand::random();
    let (tx, rx) = oneshot::channel();
    let w = Waiting {
        caller: ctx.caller_key,
        session: session_of(ctx),
        route: route.index,
        tool: what.to_string(),
        input,
        tx,
    };
    remote::ask(sh, n, &w).await;
    sh.approvals.waiting().insert(n, w);
    (n, rx)
}

/// Forgets questions no longer waited for.
pub(super) fn forget(sh: &Shared, ids: impl IntoIterator<Item = u128>) {
    let mut waiting = sh.approvals.waiting();
    for n in ids {
        if waiting.remove(&n).is_some() {
            remote::forget(sh, n);
        }
    }
}

impl Approvals {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Waiting>> {
        lock(&self.waiting)
    }

    fn handle(&self) -> Handle {
        Handle {
            instance: self.instance,
            waiting: self.waiting.clone(),
        }
    }
}

pub enum Approval {
    /// The user said yes; the answer is an open event stream.
    Approved,
    /// Refused before anything was sent: render as usual.
    Refused(GatewayError),
    /// Refused on the open event stream, which is now closed.
    Ended,
}

fn session_of(ctx: &Ctx) -> Option<u128> {
    match &ctx.era {
        Era::Session(state) => Some(state.id),
        _ => None,
    }
}

/// The question's text: the tool, its route, and its arguments as JSON (cut past a length).
fn question(exposed: &str, route: &Route, arguments: Option<&RawValue>) -> String {
    let args = arguments.map_or("{}", RawValue::get);
    let mut shown: String = args.chars().take(SHOWN_ARGUMENTS).collect();
    if shown.len() < args.len() {
        shown.push_str(" …(cut)");
    }
    format!(
        "Allow the tool `{exposed}` of `{}` to run now with these arguments?\n{shown}",
        route.name
    )
}

pub async fn approve(
    sh: &Shared,
    s: &mut Session,
    ctx: &Ctx,
    route: &Route,
    exposed: &str,
    arguments: Option<&RawValue>,
    id: &RawValue,
) -> Approval {
    let can_ask = match &ctx.era {
        Era::Session(state) => serde_json::from_str::<Value>(&state.capabilities)
            .is_ok_and(|c| c.get("elicitation").is_some()),
        _ => false,
    };
    if !can_ask {
        return Approval::Refused(Cause::NotApproved(format!(
            "tool `{exposed}` needs the user's approval for each call, and this client cannot ask (it declared no elicitation support)"
        )).to(id));
    }
    let (n, rx) = register(sh, ctx, route, exposed, false).await;
    let mut params = json!({
        "message": question(exposed, route, arguments),
        "requestedSchema": {
            "type": "object",
            "properties": {"approve": {"type": "boolean", "title": "Approve this call"}},
            "required": ["approve"],
        },
    });
    if ctx.version.as_str() >= "2025-11-25" {
        params["mode"] = json!("form");
    }
    let ask_id = jsonrpc::to_raw(&format!("{APPROVAL_PREFIX}{n:032x}"));
    let mut out = Vec::new();
    sse::write_event(
        &mut out,
        &jsonrpc::request(&ask_id, "elicitation/create", Some(&params)),
    );
    let sent = http::sse_start(s, &[]).await.is_ok()
        && s.write_response_body(Bytes::from(out), false).await.is_ok();
    let answer = if sent {
        tokio::select! {
            a = tokio::time::timeout(APPROVAL_TIMEOUT, rx) => a.ok().and_then(Result::ok),
            _ = s.read_body_or_idle(true) => None,
        }
    } else {
        None
    };
    forget(sh, [n]);
    if answer.as_ref().is_some_and(approves) {
        return Approval::Approved;
    }
    let why = match answer {
        None => "no answer came",
        Some(_) => "the user did not approve it",
    };
    let e = Cause::NotApproved(format!("tool `{exposed}` was not run: {why}")).to(id);
    let mut out = Vec::new();
    sse::write_event(&mut out, &e.body());
    let _ = s.write_response_body(Bytes::from(out), true).await;
    Approval::Ended
}

fn approves(answer: &Value) -> bool {
    answer["action"] == "accept" && answer["content"]["approve"] == json!(true)
}

/// Delivers a client's answer to question `n` (an approval, or an input request the bridge
/// relayed), if this caller, in this session, was asked it, here or (with a store) through
/// another instance; anything else is an unknown id. The answer is recorded on `ctx` (who
/// answered what).
pub async fn answer(
    sh: &Shared,
    ctx: &mut Ctx,
    n: &str,
    result: Value,
) -> Result<(), GatewayError> {
    let unknown = || GatewayError::from(Cause::UnknownResponse);
    let n = u128::from_str_radix(n, 16).map_err(|_| unknown())?;
    let here = {
        let mut all = sh.approvals.waiting();
        match all.get(&n) {
            Some(w) if w.caller == ctx.caller_key && w.session == session_of(ctx) => all.remove(&n),
            Some(_) => return Err(unknown()),
            None => None,
        }
    };
    let (route, tool, input, delivered) = match here {
        Some(w) => {
            remote::forget(sh, n);
            let approved = approves(&result);
            let delivered = w.tx.send(result).is_ok();
            (w.route, w.tool, w.input, delivered.then_some(approved))
        }
        None => {
            let approved = approves(&result);
            let q = remote::answer(sh, ctx, n, result)
                .await
                .ok_or_else(unknown)?;
            (q.route, q.tool, q.input, Some(approved))
        }
    };
    ctx.route = Some(route);
    ctx.target = Some(tool);
    let approved = delivered.ok_or_else(unknown)?;
    if input {
        // A relayed answer to an upstream's input request.
        ctx.method = "response";
        return Ok(());
    }
    ctx.method = "approval";
    if !approved {
        ctx.outcome = Some(Outcome::Refused);
        ctx.refused = Some("the user did not approve the call".into());
    }
    Ok(())
}
