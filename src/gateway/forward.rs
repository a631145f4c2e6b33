//! Proxied calls (`tools/call`, `resources/read`, `prompts/get`, …): resolve the exposed name,
//! rewrite the request with the gateway's own id and progress token, and stream the upstream's
//! answer back event by event with ids and tokens mapped back to the client's.

use super::approval::{APPROVAL_PREFIX, Approval};
use super::{Era, Gateway, Link, Request, peer_label, respond};
use crate::config::Route;
use crate::ctx::{Outcome, Record};
use crate::error::GatewayError;
use crate::mcp::jsonrpc::{self, Kind, Message, RawParams};
use crate::mcp::sse;
use crate::policy::{Class, Decision};
use crate::upstream::{Exchange, Outgoing};
use bytes::Bytes;
use pingora::proxy::Session;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::time::Duration;
use tokio::time::Instant;

/// Prefix of the ids of upstream requests (sampling, elicitation) relayed to the client.
const RELAY_PREFIX: &str = "mcp-edge:";
/// Resource not found, in the 2025 revisions (2026-07-28 uses -32602).
const RESOURCE_NOT_FOUND: i64 = -32002;

/// The id the gateway gives a client's request upstream. Derived, not stored, so that a
/// `notifications/cancelled` reaching any instance maps to the same upstream id.
pub fn upstream_id(client_id: &RawValue) -> String {
    format!("c:{}", client_id.get())
}

/// One proxied call, ready to send.
struct Call<'a> {
    route: &'a Route,
    method: &'a str,
    /// The upstream's name of the tool or prompt (for `Mcp-Name`).
    name: Option<&'a str>,
    body: Bytes,
    /// The client's answer is already an open event stream (an approval was asked on it).
    streaming: bool,
    /// The upstream's HTTP status, once it answered (for the audit record).
    status: std::sync::atomic::AtomicU16,
    rw: Rewriter<'a>,
}

/// How one upstream answer is mapped back to the client.
struct Rewriter<'a> {
    route: &'a str,
    upstream_id: &'a RawValue,
    client_id: &'a RawValue,
    client_token: Option<Box<RawValue>>,
}

impl Rewriter<'_> {
    /// The client's form of one upstream message, with the call's outcome when it is the final
    /// response.
    fn message(&self, data: &[u8]) -> Option<(Cow<'static, [u8]>, Option<Outcome>)> {
        let (msg, kind) = Message::parse(data).ok()?;
        match kind {
            Kind::Response if msg.id.map(RawValue::get) == Some(self.upstream_id.get()) => {
                let outcome = match msg.result {
                    None => Outcome::Error,
                    Some(r) if is_tool_error(r) => Outcome::ToolError,
                    Some(_) => Outcome::Ok,
                };
                let answer = jsonrpc::reid_response(&msg, self.client_id);
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

/// A request's params, for reading a field (empty when they are not an object).
fn params_for_name<'a>(msg: &Message<'a>) -> RawParams<'a> {
    jsonrpc::split_params(msg.params).unwrap_or_default()
}

/// Whether a result says `isError: true` (read without building the rest of it).
fn is_tool_error(result: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Flag {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    serde_json::from_str::<Flag>(result.get()).is_ok_and(|f| f.is_error)
}

fn unknown(id: &RawValue, what: &str, name: &str, stateless: bool) -> GatewayError {
    let code = if what == "resource" && !stateless {
        RESOURCE_NOT_FOUND
    } else {
        jsonrpc::INVALID_PARAMS
    };
    GatewayError::rpc(id, code, format!("Unknown {what}: `{name}`"))
}

fn unavailable(id: &RawValue, route: &Route) -> GatewayError {
    GatewayError::rpc(
        id,
        jsonrpc::INTERNAL_ERROR,
        format!("upstream `{}` is unavailable; try again later", route.name),
    )
}

fn timed_out(id: &RawValue, route: &Route) -> GatewayError {
    GatewayError::rpc(
        id,
        jsonrpc::INTERNAL_ERROR,
        format!(
            "upstream `{}` did not answer within {}s",
            route.name,
            route.timeout.as_secs_f64()
        ),
    )
}

impl Gateway {
    pub(super) async fn call(
        &self,
        s: &mut Session,
        req: &Request<'_>,
        msg: &Message<'_>,
        method: &str,
        id: &RawValue,
        rec: &mut Record,
    ) -> Result<(), GatewayError> {
        let mut params = jsonrpc::split_params(msg.params)
            .map_err(|e| GatewayError::rpc(id, e.code, e.message))?;
        let stateless = matches!(req.era, Era::Stateless);
        rec.target =
            jsonrpc::str_param(&params, "name").or_else(|| jsonrpc::str_param(&params, "uri"));
        let (route, upstream_name) = self.resolve(req, &mut params, method, id, stateless)?;
        rec.route = Some(route.index);
        let needs_approval = self
            .authorize(req, route, method, upstream_name.as_deref(), msg, id)
            .await?;
        if method == "tools/call" {
            rec.tool = upstream_name
                .as_deref()
                .filter(|t| route.names_tool(t))
                .map(str::to_string);
        }
        let tool = upstream_name.as_deref().filter(|_| method == "tools/call");
        if let Err(refusal) = self
            .take_tokens(req.snap, route, tool, req.caller_key)
            .await
        {
            self.metrics
                .rate_limited
                .with_label_values(&[refusal.scope.as_str()])
                .inc();
            rec.outcome = Some(Outcome::RateLimited);
            return Err(GatewayError::rate_limited(id, &refusal));
        }
        let _in_flight = match route.max_concurrency {
            Some(max) => {
                let (guard, count) = self.inflight.incr(route.name.as_str(), 1);
                if count > max as isize {
                    self.metrics
                        .rate_limited
                        .with_label_values(&["concurrency"])
                        .inc();
                    rec.outcome = Some(Outcome::RateLimited);
                    return Err(GatewayError::upstream_busy(id, &route.name, max));
                }
                Some(guard)
            }
            None => None,
        };
        // Approval comes last, so nobody is asked about a call that a limit would refuse anyway.
        let streaming = if needs_approval {
            let exposed = jsonrpc::str_param(&params_for_name(msg), "name").unwrap_or_default();
            match self.approve(s, req, route, &exposed, id).await {
                Approval::Approved => true,
                Approval::Refused(e) => {
                    rec.outcome = Some(Outcome::Refused);
                    return Err(e);
                }
                Approval::Ended => {
                    rec.outcome = Some(Outcome::Refused);
                    return Ok(());
                }
            }
        } else {
            false
        };
        let upstream_id = jsonrpc::to_raw(&upstream_id(id));
        let client_token = swap_progress_token(&mut params, &upstream_id);
        let call = Call {
            route,
            method,
            name: upstream_name.as_deref(),
            body: Bytes::from(jsonrpc::rebuild(method, Some(&upstream_id), Some(&params))),
            streaming,
            status: std::sync::atomic::AtomicU16::new(0),
            rw: Rewriter {
                route: &route.name,
                upstream_id: &upstream_id,
                client_id: id,
                client_token,
            },
        };
        let started = Instant::now();
        let result = self.forward(s, req, &call, started + route.timeout).await;
        rec.upstream_time = Some(started.elapsed());
        rec.upstream_status =
            Some(call.status.load(std::sync::atomic::Ordering::Relaxed)).filter(|s| *s != 0);
        match result {
            Ok(outcome) => {
                rec.outcome = Some(outcome);
                Ok(())
            }
            Err((outcome, e)) if streaming => {
                // The answer is already an event stream: the error is its last event.
                rec.outcome = Some(outcome);
                let mut out = Vec::new();
                sse::write_event(&mut out, &e.body());
                let _ = s.write_response_body(Some(Bytes::from(out)), true).await;
                Ok(())
            }
            Err((outcome, e)) => {
                rec.outcome = Some(outcome);
                Err(e)
            }
        }
    }

    /// Policy for a resolved call: hidden tools are unknown, classes beyond the caller's scopes
    /// are a 403 step-up. `Ok(true)`: allowed once the user approves.
    async fn authorize(
        &self,
        req: &Request<'_>,
        route: &Route,
        method: &str,
        upstream_name: Option<&str>,
        msg: &Message<'_>,
        id: &RawValue,
    ) -> Result<bool, GatewayError> {
        let exposed = || jsonrpc::str_param(&params_for_name(msg), "name").unwrap_or_default();
        if method != "tools/call" {
            return if route.policy.grants(&req.caller, Class::Read) {
                Ok(false)
            } else {
                let scopes = route.policy.scopes_for(Class::Read);
                Err(GatewayError::insufficient_scope(
                    req.snap,
                    id,
                    &format!("`{method}` on `{}`", route.name),
                    &scopes,
                ))
            };
        }
        let tool = upstream_name.unwrap_or_default();
        let listed = if route
            .policy
            .tools
            .get(tool)
            .is_some_and(|r| r.class.is_some())
        {
            None
        } else {
            self.listing(req, route, tool).await
        };
        match route.policy.decide(&req.caller, tool, listed.as_ref()) {
            Decision::Hidden => Err(unknown(id, "tool", &exposed(), false)),
            Decision::NeedsScope { class, scopes } => Err(GatewayError::insufficient_scope(
                req.snap,
                id,
                &format!("tool `{}` ({} access)", exposed(), class.as_str()),
                &scopes,
            )),
            Decision::Allow { approval, .. } => Ok(approval),
        }
    }

    /// Finds the route of a call and rewrites its exposed name or URI to the upstream's.
    fn resolve<'r>(
        &self,
        req: &Request<'r>,
        params: &mut RawParams<'_>,
        method: &str,
        id: &RawValue,
        stateless: bool,
    ) -> Result<(&'r Route, Option<String>), GatewayError> {
        let snap = req.snap;
        let (key, what) = match method {
            "tools/call" => ("name", "tool"),
            "prompts/get" => ("name", "prompt"),
            "completion/complete" => ("ref", "reference"),
            _ => ("uri", "resource"),
        };
        if key == "ref" {
            let mut reference: Value = params
                .get("ref")
                .and_then(|r| serde_json::from_str(r.get()).ok())
                .unwrap_or_default();
            let field = if reference["type"] == "ref/resource" {
                "uri"
            } else {
                "name"
            };
            let exposed = reference[field].as_str().unwrap_or_default().to_string();
            let found = if field == "uri" {
                snap.resolve_uri(&exposed)
            } else {
                snap.resolve_name(&exposed)
            };
            let (route, upstream) = found
                .filter(|(r, _)| r.policy.visible_to(&req.caller))
                .ok_or_else(|| unknown(id, what, &exposed, stateless))?;
            reference[field] = Value::String(upstream.to_string());
            params.insert("ref".into(), Cow::Owned(jsonrpc::to_raw(&reference)));
            return Ok((route, None));
        }
        let exposed = jsonrpc::str_param(params, key).ok_or_else(|| {
            GatewayError::rpc(
                id,
                jsonrpc::INVALID_PARAMS,
                format!("Invalid params: `{key}` is required"),
            )
        })?;
        let found = if key == "uri" {
            snap.resolve_uri(&exposed)
        } else {
            snap.resolve_name(&exposed)
        };
        // A route the caller cannot see does not exist for them.
        let (route, upstream) = found
            .filter(|(r, _)| r.policy.visible_to(&req.caller))
            .ok_or_else(|| unknown(id, what, &exposed, stateless))?;
        params.insert(key.into(), Cow::Owned(jsonrpc::to_raw(upstream)));
        Ok((route, Some(upstream.to_string())))
    }

    /// Sends the call upstream (re-opening a forgotten upstream session once) and answers the
    /// client; the outcome either way.
    async fn forward(
        &self,
        s: &mut Session,
        req: &Request<'_>,
        call: &Call<'_>,
        deadline: Instant,
    ) -> Result<Outcome, (Outcome, GatewayError)> {
        let (route, id) = (call.route, call.rw.client_id);
        let upstream_failed = |e| (Outcome::UpstreamError, e);
        let session_lost = || {
            (
                Outcome::UpstreamError,
                GatewayError::http(404, "Session not found: initialize a new session"),
            )
        };
        let mut link = self
            .link(req, route)
            .await
            .ok_or_else(|| upstream_failed(unavailable(id, route)))?;
        let mut relinked = false;
        let mut ex = loop {
            let sent = {
                let mut out = Outgoing::post(call.body.clone());
                link.apply(&mut out, call.method, call.name);
                let send = Exchange::send(&self.connector, &route.upstream, &out);
                tokio::time::timeout_at(deadline, send).await
            };
            let ex = match sent {
                Err(_) => return Err((Outcome::Timeout, timed_out(id, route))),
                Ok(Err(e)) => {
                    log::warn!(
                        "{} to upstream {} failed: {e}",
                        call.method,
                        peer_label(route)
                    );
                    return Err(upstream_failed(unavailable(id, route)));
                }
                Ok(Ok(ex)) => ex,
            };
            let status = ex.status();
            call.status
                .store(status, std::sync::atomic::Ordering::Relaxed);
            let has_session = link.has_session();
            if status == 404 && has_session {
                ex.finish(&self.connector, &route.upstream).await;
                if relinked {
                    return Err(session_lost());
                }
                relinked = true;
                link = self.relink(req, route).await.ok_or_else(session_lost)?;
                continue;
            }
            if !(200..300).contains(&status) {
                log::warn!(
                    "{} to upstream {} answered HTTP {status}",
                    call.method,
                    peer_label(route)
                );
                ex.finish(&self.connector, &route.upstream).await;
                let msg = format!("upstream `{}` failed (HTTP {status})", route.name);
                return Err(upstream_failed(GatewayError::rpc(
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    msg,
                )));
            }
            break ex;
        };
        if ex.is_sse() {
            return Ok(self.stream(s, &mut ex, call, deadline, &link).await);
        }
        let body = match tokio::time::timeout_at(deadline, ex.collect()).await {
            Err(_) => return Err((Outcome::Timeout, timed_out(id, route))),
            Ok(Err(_)) => return Err(upstream_failed(unavailable(id, route))),
            Ok(Ok(b)) => b,
        };
        ex.finish(&self.connector, &route.upstream).await;
        match call.rw.message(&body) {
            Some((answer, Some(outcome))) if call.streaming => {
                let mut out = Vec::new();
                sse::write_event(&mut out, &answer);
                let _ = s.write_response_body(Some(Bytes::from(out)), true).await;
                Ok(outcome)
            }
            Some((answer, Some(outcome))) => {
                respond::json(s, 200, answer.into_owned(), &[]).await.ok();
                Ok(outcome)
            }
            _ => {
                log::warn!(
                    "{} to upstream {}: answer is not a JSON-RPC response to our request",
                    call.method,
                    peer_label(route)
                );
                let msg = format!("upstream `{}` sent an invalid answer", route.name);
                Err(upstream_failed(GatewayError::rpc(
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    msg,
                )))
            }
        }
    }

    /// Relays an SSE answer event by event until the final response, the deadline, or the
    /// client leaving (then the upstream request is cancelled).
    async fn stream(
        &self,
        s: &mut Session,
        ex: &mut Exchange,
        call: &Call<'_>,
        deadline: Instant,
        link: &Link,
    ) -> Outcome {
        let (route, rw) = (call.route, &call.rw);
        if !call.streaming && respond::sse_start(s, &[]).await.is_err() {
            self.cancel(route, link, rw.upstream_id).await;
            return Outcome::Cancelled;
        }
        let mut reader = sse::Reader::default();
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout_at(deadline, ex.chunk()) => r,
                _ = s.as_downstream_mut().read_body_or_idle(true) => {
                    log::debug!("client left during a call to {}; cancelling upstream", route.name);
                    self.cancel(route, link, rw.upstream_id).await;
                    return Outcome::Cancelled;
                }
            };
            let failure = match next {
                Err(_) => Some((Outcome::Timeout, timed_out(rw.client_id, route))),
                Ok(Err(_)) | Ok(Ok(None)) => {
                    Some((Outcome::UpstreamError, unavailable(rw.client_id, route)))
                }
                Ok(Ok(Some(chunk))) => {
                    reader.push(&chunk);
                    None
                }
            };
            let mut out = Vec::new();
            let mut done = None;
            while let Some(ev) = reader.next_event() {
                if let Some((data, fin)) = rw.message(ev.data.as_bytes()) {
                    sse::write_event(&mut out, &data);
                    done = fin;
                }
                if done.is_some() {
                    break;
                }
            }
            if let Some((outcome, e)) = &failure
                && done.is_none()
            {
                sse::write_event(&mut out, &e.body());
                done = Some(*outcome);
                self.cancel(route, link, rw.upstream_id).await;
            }
            if (!out.is_empty() || done.is_some())
                && s.write_response_body(Some(Bytes::from(out)), done.is_some())
                    .await
                    .is_err()
            {
                self.cancel(route, link, rw.upstream_id).await;
                return Outcome::Cancelled;
            }
            if let Some(outcome) = done {
                if failure.is_none() {
                    // Let the upstream end its stream so the connection can be reused.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(Some(_)) = ex.chunk().await {}
                    })
                    .await;
                }
                return outcome;
            }
        }
    }

    /// Tells the upstream to stop working on a request the client no longer waits for.
    async fn cancel(&self, route: &Route, link: &Link, upstream_id: &RawValue) {
        let params = serde_json::json!({"requestId": upstream_id, "reason": "client disconnected"});
        let body = jsonrpc::notification("notifications/cancelled", Some(&params));
        let mut out = Outgoing::post(body);
        link.apply(&mut out, "notifications/cancelled", None);
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            crate::upstream::fire(&self.connector, &route.upstream, &out),
        )
        .await;
    }

    /// A client's answer to a relayed upstream request: back to that upstream, original id.
    pub(super) async fn client_response(
        &self,
        req: &Request<'_>,
        msg: &Message<'_>,
    ) -> Result<(), GatewayError> {
        let bad = || GatewayError::http(400, "Bad Request: response to an unknown request id");
        let id: String = serde_json::from_str(msg.id_text()).map_err(|_| bad())?;
        if let Some(n) = id.strip_prefix(APPROVAL_PREFIX) {
            let result = msg
                .result
                .and_then(|r| serde_json::from_str(r.get()).ok())
                .unwrap_or(Value::Null);
            let n = n.parse().map_err(|_| bad())?;
            return if self.answer_approval(n, result) {
                Ok(())
            } else {
                Err(bad())
            };
        }
        let rest = id.strip_prefix(RELAY_PREFIX).ok_or_else(bad)?;
        let (route_name, original) = rest.split_once(':').ok_or_else(bad)?;
        let route = req.snap.route(route_name).ok_or_else(bad)?;
        let original: Box<RawValue> = serde_json::from_str(original).map_err(|_| bad())?;
        let body = jsonrpc::reid_response(msg, &original);
        let link = self.link(req, route).await.ok_or_else(bad)?;
        let mut out = Outgoing::post(body);
        link.apply(&mut out, "", None);
        let _ = tokio::time::timeout(
            req.snap.timeouts.initialize,
            crate::upstream::fire(&self.connector, &route.upstream, &out),
        )
        .await;
        Ok(())
    }
}

/// Replaces the client's progress token with the gateway's; returns the client's.
fn swap_progress_token(params: &mut RawParams<'_>, ours: &RawValue) -> Option<Box<RawValue>> {
    let meta = params.get("_meta")?;
    let mut meta: serde_json::Map<String, Value> = serde_json::from_str(meta.get()).ok()?;
    let theirs = meta.get("progressToken")?.clone();
    meta.insert(
        "progressToken".into(),
        serde_json::from_str(ours.get()).unwrap_or_default(),
    );
    params.insert("_meta".into(), Cow::Owned(jsonrpc::to_raw(&meta)));
    Some(jsonrpc::to_raw(&theirs))
}
