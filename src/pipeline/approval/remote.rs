//! Questions answered through another instance (`sessions.store`): each question asked here is
//! kept in the store (sealed: who may answer it, and which instance waits); an answer that
//! arrives at another instance is checked there against it exactly as here, the question is
//! removed (so it is answered once), and the answer is published, sealed, to the asking
//! instance's channel, which delivers it to the waiting call. Without the store, or when it
//! does not answer, a question can be answered only through the instance that asked (logged).

use super::{APPROVAL_TIMEOUT, Waiting};
use crate::ctx::Ctx;
use crate::mcp::session::Sealer;
use crate::pipeline::Shared;
use crate::store::Redis;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const QUESTION: &[u8] = b"mcp-edge approval question v1";
const ANSWER: &[u8] = b"mcp-edge approval answer v1";

/// What another instance needs to check and route an answer.
#[derive(Serialize, Deserialize)]
pub(super) struct Question {
    pub caller: u64,
    pub session: Option<u128>,
    pub route: usize,
    pub tool: String,
    pub input: bool,
    instance: u64,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    n: u128,
    result: Value,
}

fn key(n: u128) -> String {
    format!("mcp-edge:approval:{n:032x}")
}

fn channel(instance: u64) -> String {
    format!("mcp-edge:approval-answers:{instance:016x}")
}

fn fell_back(store: &Redis, e: &str) {
    if store.should_log() {
        log::warn!(
            "sessions.store failed ({e}); approval questions are answered only through the instance that asked"
        );
    }
}

/// Keeps question `n` in the store (and starts this instance's answer channel once).
pub(super) async fn ask(sh: &Shared, n: u128, w: &Waiting) {
    let Some(store) = sh.session_store.clone() else {
        return;
    };
    let instance = sh.approvals.instance;
    if !sh
        .approvals
        .listening
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        // The first question waits (briefly) until answers can reach this instance.
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        let handle = sh.approvals.handle();
        tokio::spawn(listen(handle, store.clone(), sh.sealer.clone(), ready));
        let _ = tokio::time::timeout(Duration::from_secs(1), subscribed).await;
    }
    let q = Question {
        caller: w.caller,
        session: w.session,
        route: w.route,
        tool: w.tool.clone(),
        input: w.input,
        instance,
    };
    let sealed = sh.sealer.seal_as(QUESTION, &q);
    if let Err(e) = store.put(&key(n), &sealed, APPROVAL_TIMEOUT).await {
        fell_back(&store, &e);
    }
}

/// Forgets question `n` in the store too (answered here, or no longer waited for).
pub(super) fn forget(sh: &Shared, n: u128) {
    if let Some(store) = sh.session_store.clone() {
        tokio::spawn(async move { store.remove(&key(n)).await });
    }
}

/// Sends an answer to question `n` asked by another instance, if this caller in this session
/// was asked it there: the question, for the record.
pub(super) async fn answer(sh: &Shared, ctx: &Ctx, n: u128, result: Value) -> Option<Question> {
    let store = sh.session_store.as_deref()?;
    let found = match store.get(&key(n)).await {
        Ok(found) => found?,
        Err(e) => {
            fell_back(store, &e);
            return None;
        }
    };
    let q: Question = sh.sealer.open_as(QUESTION, &found)?;
    if q.caller != ctx.caller_key || q.session != super::session_of(ctx) {
        return None;
    }
    // Removed by whoever answers first: a question is answered once.
    if !store.remove(&key(n)).await.ok()? {
        return None;
    }
    let sealed = sh.sealer.seal_as(ANSWER, &Answer { n, result });
    if let Err(e) = store.publish(&channel(q.instance), &sealed).await {
        fell_back(store, &e);
        return None;
    }
    Some(q)
}

/// This instance's answer channel: answers from other instances to the calls waiting here.
async fn listen(
    approvals: super::Handle,
    store: Arc<Redis>,
    sealer: Arc<Sealer>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let channel = channel(approvals.instance);
    let mut ready = Some(ready);
    loop {
        match store.subscribe(&channel).await {
            Ok(mut pubsub) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(a) = sealer.open_as::<Answer>(ANSWER, &payload) {
                        approvals.deliver(a.n, a.result);
                    }
                }
            }
            Err(e) => fell_back(&store, &e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
