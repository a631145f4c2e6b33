//! `approval: required`: before the call goes upstream the gateway asks the user through an
//! elicitation on the call's own event stream, and proceeds only on an explicit yes. Clients that
//! cannot be asked (no elicitation capability, or stateless) are refused with a clear error.

use super::{Era, Gateway, Request, respond};
use crate::config::Route;
use crate::error::GatewayError;
use crate::mcp::{jsonrpc, sse};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::time::Duration;

/// How long the user has to answer.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);
/// Prefix of the ids of the gateway's own approval requests.
pub const APPROVAL_PREFIX: &str = "mcp-edge:approval:";
/// JSON-RPC code of a call refused for want of approval.
const NOT_APPROVED: i64 = -32001;

pub enum Approval {
    /// The user said yes; the answer is an open event stream.
    Approved,
    /// Refused before anything was sent: render as usual.
    Refused(GatewayError),
    /// Refused on the open event stream, which is now closed.
    Ended,
}

impl Gateway {
    pub(super) async fn approve(
        &self,
        s: &mut Session,
        req: &Request<'_>,
        route: &Route,
        exposed: &str,
        id: &RawValue,
    ) -> Approval {
        let can_ask = match &req.era {
            Era::Session { state, .. } => serde_json::from_str::<Value>(&state.capabilities)
                .is_ok_and(|c| c.get("elicitation").is_some()),
            _ => false,
        };
        if !can_ask {
            return Approval::Refused(GatewayError::rpc(
                id,
                NOT_APPROVED,
                format!(
                    "tool `{exposed}` needs the user's approval for each call, and this client cannot ask (it declared no elicitation support)"
                ),
            ));
        }
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.approvals().insert(n, tx);
        let mut params = json!({
            "message": format!("Allow the tool `{exposed}` of `{}` to run now?", route.name),
            "requestedSchema": {
                "type": "object",
                "properties": {"approve": {"type": "boolean", "title": "Approve this call"}},
                "required": ["approve"],
            },
        });
        if req.version.as_str() >= "2025-11-25" {
            params["mode"] = json!("form");
        }
        let ask_id = jsonrpc::to_raw(&format!("{APPROVAL_PREFIX}{n}"));
        let mut out = Vec::new();
        sse::write_event(
            &mut out,
            &jsonrpc::request(&ask_id, "elicitation/create", Some(&params)),
        );
        let sent = respond::sse_start(s, &[]).await.is_ok()
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
        self.approvals().remove(&n);
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
        let e = GatewayError::rpc(
            id,
            NOT_APPROVED,
            format!("tool `{exposed}` was not run: {why}"),
        );
        let mut out = Vec::new();
        sse::write_event(&mut out, &e.body());
        let _ = s.write_response_body(Some(Bytes::from(out)), true).await;
        Approval::Ended
    }

    /// Delivers a client's answer to an approval request; false if nobody here waits for it.
    pub(super) fn answer_approval(&self, n: u64, result: Value) -> bool {
        match self.approvals().remove(&n) {
            Some(tx) => tx.send(result).is_ok(),
            None => false,
        }
    }
}
