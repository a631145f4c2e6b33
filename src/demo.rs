//! Sample upstream MCP servers (rmcp, Streamable HTTP on loopback) for `mcp-edge demo`, the
//! test suite and the benchmark: echo, progress, a cancellable wait, a large answer, a failure.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, RequestMetaObject,
    ServerCapabilities, ServerConfig,
};
use rmcp::schemars::JsonSchema;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a sample upstream observed, for tests to poll.
#[derive(Debug, Default)]
pub struct Probe {
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

    /// Always fails as a tool (isError), to show errors pass through.
    #[tool(annotations(read_only_hint = true))]
    async fn fail(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(format!(
            "{} failed on purpose",
            self.name
        ))]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SampleServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.name, env!("CARGO_PKG_VERSION")))
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
    let probe = Arc::new(Probe::default());
    let server = SampleServer::new(name, probe.clone());
    let stop = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(Some(Duration::from_millis(500)))
        .with_cancellation_token(stop.child_token());
    let service: StreamableHttpService<SampleServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
    let router = axum::Router::new().nest_service("/mcp", service);
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
