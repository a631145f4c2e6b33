//! Talking to upstream MCP servers over Pingora's pooled connector: one HTTP exchange at a time,
//! streamed (`Exchange`), or collected into the one JSON-RPC reply the gateway waits for (`rpc`).

use crate::config::snapshot::Upstream;
use crate::mcp::jsonrpc::{Kind, Message};
use crate::mcp::sse;
use bytes::Bytes;
use http::HeaderValue;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use serde_json::value::RawValue;
use std::time::Duration;

/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The most a collected (non-streamed) upstream answer may hold.
const MAX_COLLECTED: usize = 32 * 1024 * 1024;
/// The most an IdP document (metadata, JWKS) may hold.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream refused the connection")]
    Connect,
    #[error("upstream connection failed")]
    Io,
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream answered HTTP {0}")]
    Status(u16),
    #[error("upstream sent an answer that is not MCP")]
    Garbage,
    #[error("upstream answer too large")]
    TooLarge,
}

/// What to send upstream.
pub struct Outgoing<'a> {
    pub method: http::Method,
    pub body: Bytes,
    pub session: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    /// `Mcp-Method` and `Mcp-Name`, for the stateless revision.
    pub mcp_method: Option<&'a str>,
    pub mcp_name: Option<&'a str>,
    /// Client headers copied as they are (the per-server endpoint); they win over the above.
    pub copied: Vec<(&'static str, &'a str)>,
    /// Credentials and identity for the upstream.
    pub extra: &'a [(String, String)],
    /// `Mcp-Param-*` headers of a call (2026-07-28).
    pub params: &'a [(String, String)],
}

impl<'a> Outgoing<'a> {
    pub fn post(body: impl Into<Bytes>) -> Self {
        Self {
            method: http::Method::POST,
            body: body.into(),
            session: None,
            protocol_version: None,
            mcp_method: None,
            mcp_name: None,
            params: &[],
            copied: Vec::new(),
            extra: &[],
        }
    }
}

/// One request in flight: response header read, body not yet.
pub struct Exchange {
    http: HttpSession,
}

impl Exchange {
    pub async fn send(
        connector: &Connector,
        upstream: &Upstream,
        out: &Outgoing<'_>,
    ) -> Result<Self, UpstreamError> {
        let (mut http, reused) = connector
            .get_http_session(&upstream.peer)
            .await
            .map_err(|_| UpstreamError::Connect)?;
        let header = build_header(upstream, out).map_err(|_| UpstreamError::Io)?;
        let sent = write_request(&mut http, header, &out.body).await;
        // A pooled connection the upstream closed meanwhile: one retry on a fresh one.
        let mut http = match sent {
            Ok(()) => http,
            Err(_) if reused => {
                let (mut fresh, _) = connector
                    .get_http_session(&upstream.peer)
                    .await
                    .map_err(|_| UpstreamError::Connect)?;
                let header = build_header(upstream, out).map_err(|_| UpstreamError::Io)?;
                write_request(&mut fresh, header, &out.body)
                    .await
                    .map_err(|_| UpstreamError::Io)?;
                fresh
            }
            Err(_) => return Err(UpstreamError::Io),
        };
        http.read_response_header()
            .await
            .map_err(|_| UpstreamError::Io)?;
        Ok(Self { http })
    }

    pub fn status(&self) -> u16 {
        self.http.response_header().map_or(0, |h| h.status.as_u16())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.http
            .response_header()
            .and_then(|h| h.headers.get(name))
            .and_then(|v| v.to_str().ok())
    }

    pub fn is_sse(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    }

    pub async fn chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        self.http
            .read_response_body()
            .await
            .map_err(|_| UpstreamError::Io)
    }

    /// Returns a fully read connection to the pool; anything else is closed by dropping it.
    pub async fn finish(mut self, connector: &Connector, upstream: &Upstream) {
        if self.http.response_done() {
            connector
                .release_http_session(self.http, &upstream.peer, Some(POOL_IDLE))
                .await;
        } else {
            self.http.shutdown().await;
        }
    }

    /// Reads the rest of the body (bounded).
    pub async fn collect(&mut self) -> Result<Vec<u8>, UpstreamError> {
        self.collect_at_most(MAX_COLLECTED).await
    }

    /// Reads the rest of the body, refusing it past `cap` bytes.
    pub async fn collect_at_most(&mut self, cap: usize) -> Result<Vec<u8>, UpstreamError> {
        let mut body = Vec::new();
        while let Some(c) = self.chunk().await? {
            if body.len() + c.len() > cap {
                return Err(UpstreamError::TooLarge);
            }
            body.extend_from_slice(&c);
        }
        Ok(body)
    }
}

/// The MCP request headers toward upstreams, named once (no name parsing per request).
// Names as static text: Pingora's `insert_header` reads a name from its bytes either way, and a
// `HeaderName` argument would first be copied into a title-cased one.
const MCP_SESSION_ID: &str = "mcp-session-id";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

fn build_header(upstream: &Upstream, out: &Outgoing<'_>) -> pingora::Result<Box<RequestHeader>> {
    use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST};
    // No case map: names go out lowercase (as HTTP/2 requires and HTTP/1.1 allows), and each
    // header is stored once instead of twice.
    let mut h =
        RequestHeader::build_no_case(out.method.clone(), upstream.path.as_bytes(), Some(8))?;
    h.insert_header(HOST, upstream.authority.as_str())?;
    if out.method == http::Method::GET {
        h.insert_header(ACCEPT, HeaderValue::from_static("text/event-stream"))?;
    } else {
        h.insert_header(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        )?;
    }
    if out.method == http::Method::POST {
        h.insert_header(CONTENT_TYPE, HeaderValue::from_static("application/json"))?;
    }
    h.insert_header(CONTENT_LENGTH, out.body.len())?;
    if let Some(s) = out.session {
        h.insert_header(MCP_SESSION_ID, s)?;
    }
    if let Some(v) = out.protocol_version {
        h.insert_header(MCP_PROTOCOL_VERSION, v)?;
    }
    if let Some(m) = out.mcp_method {
        h.insert_header(MCP_METHOD, m)?;
    }
    if let Some(n) = out.mcp_name {
        h.insert_header(MCP_NAME, crate::mcp::headers::encode(n).as_ref())?;
    }
    for (k, v) in &out.copied {
        h.insert_header(*k, *v)?;
    }
    for (k, v) in out.extra.iter().chain(out.params) {
        h.insert_header(k.clone(), v.as_str())?;
    }
    Ok(Box::new(h))
}

async fn write_request(
    http: &mut HttpSession,
    header: Box<RequestHeader>,
    body: &Bytes,
) -> pingora::Result<()> {
    http.write_request_header(header).await?;
    if !body.is_empty() {
        http.write_request_body(body.clone(), true).await?;
    }
    http.finish_request_body().await
}

/// A JSON-RPC reply collected from an upstream.
#[derive(Debug)]
pub struct Reply {
    /// The upstream's `Mcp-Session-Id`, if it sent one.
    pub session: Option<String>,
    /// The `result` (Ok) or `error` (Err) of the response, raw.
    pub outcome: Result<Box<RawValue>, Box<RawValue>>,
}

/// Sends one request and waits for the response carrying `id` (JSON or SSE). Notifications and
/// requests the upstream sends meanwhile are dropped: callers use this only for the gateway's
/// own traffic (initialize, lists), never for a client's call.
pub async fn rpc(
    connector: &Connector,
    upstream: &Upstream,
    out: &Outgoing<'_>,
    id: &RawValue,
) -> Result<Reply, UpstreamError> {
    let mut ex = Exchange::send(connector, upstream, out).await?;
    let status = ex.status();
    if !(200..300).contains(&status) {
        return Err(UpstreamError::Status(status));
    }
    let session = ex.header("mcp-session-id").map(str::to_string);
    let found = if ex.is_sse() {
        let mut reader = sse::Reader::default();
        let mut found = None;
        while found.is_none() {
            let Some(chunk) = ex.chunk().await? else {
                break;
            };
            reader.push(&chunk);
            if reader.pending() > MAX_COLLECTED {
                return Err(UpstreamError::Garbage);
            }
            while let Some(ev) = reader.next_event() {
                if let Some(o) = response_for(ev.data.as_bytes(), id) {
                    found = Some(o);
                    break;
                }
            }
        }
        found
    } else {
        let body = ex.collect().await?;
        response_for(&body, id)
    };
    ex.finish(connector, upstream).await;
    found
        .map(|outcome| Reply { session, outcome })
        .ok_or(UpstreamError::Garbage)
}

fn response_for(data: &[u8], id: &RawValue) -> Option<Result<Box<RawValue>, Box<RawValue>>> {
    let (msg, kind) = Message::parse(data).ok()?;
    if kind != Kind::Response || msg.id.map(RawValue::get) != Some(id.get()) {
        return None;
    }
    match (msg.result, msg.error) {
        (Some(r), _) => Some(Ok(r.to_owned())),
        (_, Some(e)) => Some(Err(e.to_owned())),
        _ => None,
    }
}

/// Sends a notification (or a DELETE) and ignores the answer beyond its status.
pub async fn fire(
    connector: &Connector,
    upstream: &Upstream,
    out: &Outgoing<'_>,
) -> Result<u16, UpstreamError> {
    let mut ex = Exchange::send(connector, upstream, out).await?;
    let status = ex.status();
    ex.collect().await?;
    ex.finish(connector, upstream).await;
    Ok(status)
}

/// The one upstream client: Pingora's pooled connector and the ids of the gateway's own requests.
pub struct Client {
    pub connector: Connector,
    next_id: std::sync::atomic::AtomicU64,
}

impl Client {
    pub fn new(keepalive_pool: usize) -> Self {
        let opts = pingora::connectors::ConnectorOptions::new(keepalive_pool);
        Self {
            connector: Connector::new(Some(opts)),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// An id for a request the gateway itself sends upstream (never a client's id).
    pub fn own_id(&self) -> Box<RawValue> {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::mcp::jsonrpc::to_raw(&format!("mcp-edge-{n}"))
    }

    /// One whole exchange within `timeout`: the status and the body, refused past `cap` bytes.
    pub async fn fetch(
        &self,
        up: &Upstream,
        out: &Outgoing<'_>,
        timeout: Duration,
        cap: usize,
    ) -> Result<(u16, Vec<u8>), String> {
        let exchange = async {
            let mut ex = Exchange::send(&self.connector, up, out)
                .await
                .map_err(|e| e.to_string())?;
            let status = ex.status();
            let body = ex.collect_at_most(cap).await.map_err(|e| e.to_string())?;
            ex.finish(&self.connector, up).await;
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{} did not answer in time", up.url))?
    }

    /// GETs a JSON document (IdP metadata, JWKS, client metadata) of at most `cap` bytes.
    pub async fn get_json(
        &self,
        up: &Upstream,
        timeout: Duration,
        cap: usize,
    ) -> Result<serde_json::Value, String> {
        let mut out = Outgoing::post(Bytes::new());
        out.method = http::Method::GET;
        out.copied = vec![("accept", "application/json")];
        let (status, body) = self.fetch(up, &out, timeout, cap).await?;
        if !(200..300).contains(&status) {
            return Err(format!("{} answered HTTP {status}", up.url));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{} is not JSON: {e}", up.url))
    }
}

/// Runs every future at once, each bounded by `timeout`: the fan-out of initialize, lists,
/// broadcasts and probes. A slow one costs its own answer (`None`), never the others'.
pub async fn all_within<F: std::future::Future>(
    timeout: Duration,
    futures: impl IntoIterator<Item = F>,
) -> Vec<Option<F::Output>> {
    futures::future::join_all(
        futures
            .into_iter()
            .map(|f| async move { tokio::time::timeout(timeout, f).await.ok() }),
    )
    .await
}
