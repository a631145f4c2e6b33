//! `approval: required`: before the call goes upstream the gateway asks the user through an
//! elicitation on the call's own event stream, and proceeds only on an explicit yes. Clients that
//! cannot be asked (no elicitation capability, or stateless) are refused with a clear error.

use super::Shared;
use crate::config::Route;
use crate::ctx::{Ctx, Era};
use crate::error::{Cause, GatewayError};
use crate::http;
use crate::mcp::{jsonrpc, sse};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the user has to answer.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Prefix of the ids of the gateway's own approval requests.
pub const APPROVAL_PREFIX: &str = "mcp-edge:approval:";

/// Calls waiting for the user's approval, by the number in the elicitation's id.
#[derive(Default)]
pub struct Approvals {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>,
}

impl Approvals {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Value>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

pub async fn approve(
    sh: &Shared,
    s: &mut Session,
    ctx: &Ctx,
    route: &Route,
    exposed: &str,
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
    let n = sh
        .approvals
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    sh.approvals.waiting().insert(n, tx);
    let mut params = json!({
        "message": format!("Allow the tool `{exposed}` of `{}` to run now?", route.name),
        "requestedSchema": {
            "type": "object",
            "properties": {"approve": {"type": "boolean", "title": "Approve this call"}},
            "required": ["approve"],
        },
    });
    if ctx.version.as_str() >= "2025-11-25" {
        params["mode"] = json!("form");
    }
    let ask_id = jsonrpc::to_raw(&format!("{APPROVAL_PREFIX}{n}"));
    let mut out = Vec::new();
    sse::write_event(
        &mut out,
        &jsonrpc::request(&ask_id, "elicitation/create", Some(&params)),
    );
    let sent = http::sse_start(s, &[]).await.is_ok()
        && s.write_response_body(Some(Bytes::from(out)), false)
            .await
            .is_ok();
    let answer = if sent {
        tokio::select! {
            a = tokio::time::timeout(APPROVAL_TIMEOUT, rx) => a.ok().and_then(Result::ok),
            _ = s.as_downstream_mut().read_body_or_idle(true) => None,
        }
    } else {
        None
    };
    sh.approvals.waiting().remove(&n);
    let yes = answer
        .as_ref()
        .is_some_and(|a| a["action"] == "accept" && a["content"]["approve"] == json!(true));
    if yes {
        return Approval::Approved;
    }
    let why = match answer {
        None => "no answer came",
        Some(_) => "the user did not approve it",
    };
    let e = Cause::NotApproved(format!("tool `{exposed}` was not run: {why}")).to(id);
    let mut out = Vec::new();
    sse::write_event(&mut out, &e.body());
    let _ = s.write_response_body(Some(Bytes::from(out)), true).await;
    Approval::Ended
}

/// Delivers a client's answer to an approval request; false if nobody here waits for it.
pub fn answer(sh: &Shared, n: u64, result: Value) -> bool {
    match sh.approvals.waiting().remove(&n) {
        Some(tx) => tx.send(result).is_ok(),
        None => false,
    }
}
