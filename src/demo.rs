//! Sample upstream MCP servers (rmcp, Streamable HTTP on loopback) for `mcp-edge demo`, the
//! test suite and the benchmark: echo, progress, a cancellable wait, a large answer, a failure.

use axum::response::IntoResponse;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ElicitRequestParams, ElicitResult, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::schemars::JsonSchema;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a sample upstream observed, for tests to poll.
#[derive(Debug, Default)]
pub struct Probe {
    /// `authorization` and `x-mcp-edge-*` headers of every request, in order.
    pub headers: std::sync::Mutex<Vec<(String, String)>>,
    /// Each request's `Mcp-Session-Id` and `x-mcp-edge-subject`, in order.
    pub sessions: std::sync::Mutex<Vec<(Option<String>, Option<String>)>>,
    /// `wait` calls that ended because the request was cancelled.
    pub cancelled: AtomicUsize,
    /// `wait` calls started.
    pub waiting: AtomicUsize,
}

#[derive(Clone)]
pub struct SampleServer {
    name: &'static str,
    probe: Arc<Probe>,
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct EchoArgs {
    /// Text to send back.
    pub text: String,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ProgressArgs {
    /// Number of progress notifications before the answer.
    pub steps: u32,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct WaitArgs {
    /// How long to wait, in milliseconds.
    pub ms: u64,
}

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct LargeArgs {
    /// Size of the text answered, in bytes.
    pub bytes: usize,
}

#[tool_router]
impl SampleServer {
    pub fn new(name: &'static str, probe: Arc<Probe>) -> Self {
        Self {
            name,
            probe,
            tool_router: Self::tool_router(),
        }
    }

    /// Sends the text back, prefixed with this server's name.
    #[tool(annotations(read_only_hint = true))]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        format!("{}: {}", self.name, args.text)
    }

    /// Reports progress `steps` times, then answers "done".
    #[tool(annotations(read_only_hint = true))]
    async fn progress(
        &self,
        Parameters(args): Parameters<ProgressArgs>,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> String {
        if let Some(token) = meta.get_progress_token() {
            for step in 1..=args.steps {
                let _ = client
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(step))
                            .with_total(f64::from(args.steps)),
                    )
                    .await;
            }
        }
        "done".to_string()
    }

    /// Waits `ms` milliseconds unless the request is cancelled first.
    #[tool(annotations(read_only_hint = true))]
    async fn wait(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        context: RequestContext<RoleServer>,
    ) -> String {
        self.probe.waiting.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            _ = context.ct.cancelled() => {
                self.probe.cancelled.fetch_add(1, Ordering::SeqCst);
                "cancelled".to_string()
            }
            _ = tokio::time::sleep(Duration::from_millis(args.ms)) => "waited".to_string(),
        }
    }

    /// Answers `bytes` bytes of text.
    #[tool(annotations(read_only_hint = true))]
    async fn large(&self, Parameters(args): Parameters<LargeArgs>) -> String {
        "x".repeat(args.bytes.min(64 * 1024 * 1024))
    }

    /// Asks the user (elicitation) to confirm, and says what they answered.
    #[tool(annotations(read_only_hint = true))]
    async fn confirm(&self, client: Peer<RoleServer>) -> Result<String, ErrorData> {
        let ask: ElicitRequestParams = from_json(json!({
            "mode": "form",
            "message": format!("{} asks: proceed?", self.name),
            "requestedSchema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        }))?;
        let reply: ElicitResult = client
            .create_elicitation(ask)
            .await
            .map_err(|e| ErrorData::internal_error(format!("elicitation failed: {e}"), None))?;
        let answer = reply
            .content
            .as_ref()
            .and_then(|c| c.get("answer"))
            .and_then(|a| a.as_str())
            .unwrap_or("nothing");
        Ok(format!("{} heard: {answer}", self.name))
    }

    /// Removes everything (it does not really): a destructive tool.
    #[tool(annotations(destructive_hint = true, read_only_hint = false))]
    async fn purge(&self) -> String {
        format!("{} purged nothing", self.name)
    }

    /// Keeps a note (not really): a tool with no hints, so of the write class.
    #[tool]
    async fn note(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        format!("{} noted {}", self.name, args.text)
    }

    /// Always fails as a tool (isError), to show errors pass through.
    #[tool(annotations(read_only_hint = true))]
    async fn fail(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "{} failed on purpose",
            self.name
        ))]))
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ErrorData> {
    serde_json::from_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SampleServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(self.name, env!("CARGO_PKG_VERSION")))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        from_json(json!({"resources": [{
            "uri": format!("demo://{}/readme", self.name),
            "name": "readme",
            "mimeType": "text/plain",
        }]}))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from_json(json!({"resourceTemplates": [{
            "uriTemplate": format!("demo://{}/items/{{id}}", self.name),
            "name": "item",
        }]}))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let own = format!("demo://{}/", self.name);
        if !request.uri.starts_with(&own) {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        }
        let text = format!("{} resource {}", self.name, &request.uri[own.len()..]);
        from_json::<rmcp::model::ReadResourceResult>(json!({"contents": [{
            "uri": request.uri, "mimeType": "text/plain", "text": text,
        }]}))
        .map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        from_json(json!({"prompts": [{
            "name": "greet",
            "description": "A greeting",
            "arguments": [{"name": "who", "required": true}],
        }]}))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != "greet" {
            return Err(ErrorData::invalid_params(
                format!("no prompt {}", request.name),
                None,
            ));
        }
        let who = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("who"))
            .and_then(|w| w.as_str())
            .unwrap_or("you")
            .to_string();
        from_json::<rmcp::model::GetPromptResult>(json!({"messages": [{
            "role": "user",
            "content": {"type": "text", "text": format!("{} greets {who}", self.name)},
        }]}))
        .map(Into::into)
    }
}

/// A running sample upstream.
pub struct Upstream {
    pub url: String,
    pub probe: Arc<Probe>,
    stop: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a sample upstream on `127.0.0.1:0` in the current tokio runtime.
pub async fn spawn_upstream(name: &'static str) -> std::io::Result<Upstream> {
    spawn_upstream_on(name, "127.0.0.1:0").await
}

/// Starts a sample upstream on a given address (a restarted upstream keeps its address).
pub async fn spawn_upstream_on(name: &'static str, addr: &str) -> std::io::Result<Upstream> {
    spawn_upstream_with(name, addr, Mode::Sessions).await
}

/// How a sample upstream speaks Streamable HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Sessions, SSE answers (rmcp's default).
    Sessions,
    /// No sessions, plain JSON answers unless a tool sends notifications (the benchmark's).
    StatelessJson,
    /// Sessions only: an upstream of the 2025 revisions, which refuses `server/discover`.
    LegacyOnly,
}

/// Starts a sample upstream on `addr` in the given mode.
pub async fn spawn_upstream_with(
    name: &'static str,
    addr: &str,
    mode: Mode,
) -> std::io::Result<Upstream> {
    let probe = Arc::new(Probe::default());
    let server = SampleServer::new(name, probe.clone());
    let stop = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(Some(Duration::from_millis(500)))
        .with_legacy_session_mode(mode != Mode::StatelessJson)
        .with_json_response(mode == Mode::StatelessJson)
        .with_cancellation_token(stop.child_token());
    let service: StreamableHttpService<SampleServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
    let seen = probe.clone();
    let router =
        axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let seen = seen.clone();
                    let observed: Vec<(String, String)> = req
                        .headers()
                        .iter()
                        .filter(|(name, _)| {
                            *name == "authorization" || name.as_str().starts_with("x-mcp-edge-")
                        })
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    seen.sessions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((header("mcp-session-id"), header("x-mcp-edge-subject")));
                    seen.headers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend(observed);
                    let discover = header("mcp-method").as_deref() == Some("server/discover");
                    async move {
                        if mode == Mode::LegacyOnly && discover {
                            return axum::http::StatusCode::BAD_REQUEST.into_response();
                        }
                        next.run(req).await
                    }
                },
            ));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled_owned().await })
            .await;
    });
    Ok(Upstream {
        url: format!("http://{addr}/mcp"),
        probe,
        stop,
    })
}
