//! The gateway driven by rmcp's own Streamable HTTP client, as an MCP client author would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
    GetPromptRequestParams, ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
    Request,
};
use rmcp::service::RequestContext;
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().expect("object")
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

async fn tool_names<S: rmcp::Service<RoleClient>>(
    c: &rmcp::service::RunningService<RoleClient, S>,
) -> Vec<String> {
    c.list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

async fn client(url: &str) -> rmcp::service::RunningService<RoleClient, ()> {
    ().serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("initialize through the gateway")
}

#[tokio::test]
async fn initialize_list_and_call_route_by_prefixed_name() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let c = client(&gw.url).await;
    let info = c.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("mcp-edge")
    );
    assert!(info.capabilities.tools.is_some());

    let names = tool_names(&c).await;
    for expected in ["alpha__echo", "beta__echo", "alpha__progress", "beta__wait"] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "echo"),
        "unprefixed names leak: {names:?}"
    );

    for (tool, want) in [("alpha__echo", "alpha: hi"), ("beta__echo", "beta: hi")] {
        let r = c
            .call_tool(CallToolRequestParams::new(tool).with_arguments(args(json!({"text": "hi"}))))
            .await
            .expect("tools/call");
        assert_eq!(text_of(&r), want);
        assert_ne!(r.is_error, Some(true));
    }
    let failed = c
        .call_tool(CallToolRequestParams::new("beta__fail"))
        .await
        .expect("a tool error is a result");
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), "beta failed on purpose");

    let unknown = c
        .call_tool(CallToolRequestParams::new("gamma__echo"))
        .await
        .expect_err("unknown tool");
    assert!(
        format!("{unknown:?}").contains("-32602") || format!("{unknown}").contains("Unknown tool"),
        "{unknown:?}"
    );
    c.cancel().await.expect("close");
}

#[derive(Clone, Default)]
struct ProgressRecorder {
    seen: Arc<Mutex<Vec<(String, f64)>>>,
}

impl ClientHandler for ProgressRecorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let token = serde_json::to_string(&params.progress_token).unwrap_or_default();
        self.seen
            .lock()
            .expect("lock")
            .push((token, params.progress));
    }
}

#[tokio::test]
async fn progress_notifications_reach_the_client_with_its_own_token() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let recorder = ProgressRecorder::default();
    let c = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(gw.url.clone()))
        .await
        .expect("initialize");
    let handle = c
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("alpha__progress")
                    .with_arguments(args(json!({"steps": 5}))),
            )),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    let token = serde_json::to_string(&handle.progress_token).expect("token");
    let response = handle.await_response().await.expect("response");
    assert!(format!("{response:?}").contains("done"), "{response:?}");
    // Progress precedes the response on the same stream, so it has all arrived by now.
    let seen = recorder.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen.iter().all(|(t, _)| *t == token),
        "tokens mapped back: {seen:?} vs {token}"
    );
    assert_eq!(
        seen.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0]
    );
}

#[tokio::test]
async fn large_results_and_bodies_past_64_kib_pass_through() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let c = client(&gw.url).await;
    let big = c
        .call_tool(
            CallToolRequestParams::new("alpha__large")
                .with_arguments(args(json!({"bytes": 3 * 1024 * 1024}))),
        )
        .await
        .expect("large result");
    assert_eq!(text_of(&big).len(), 3 * 1024 * 1024);

    let text = "y".repeat(64 * 1024 + 1);
    let echoed = c
        .call_tool(
            CallToolRequestParams::new("beta__echo").with_arguments(args(json!({"text": text}))),
        )
        .await
        .expect("64 KiB + 1 argument");
    assert_eq!(text_of(&echoed), format!("beta: {text}"));
}

#[tokio::test]
async fn twenty_concurrent_sessions() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let runs = (0..20).map(|i| {
        let url = gw.url.clone();
        tokio::spawn(async move {
            let c = client(&url).await;
            let tool = if i % 2 == 0 {
                "alpha__echo"
            } else {
                "beta__echo"
            };
            let r = c
                .call_tool(
                    CallToolRequestParams::new(tool)
                        .with_arguments(args(json!({"text": format!("n{i}")}))),
                )
                .await
                .expect("call");
            let want = format!("{}: n{i}", &tool[..tool.find("__").expect("prefix")]);
            assert_eq!(text_of(&r), want);
            c.cancel().await.expect("close");
        })
    });
    for r in futures::future::join_all(runs).await {
        r.expect("session task");
    }
}

#[tokio::test]
async fn client_cancellation_reaches_the_upstream() {
    let (alpha, beta, gw) = standard_gateway().await;
    let c = client(&gw.url).await;
    let handle = c
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("beta__wait").with_arguments(args(json!({"ms": 30000}))),
            )),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send");
    assert!(eventually(10, || beta.probe.waiting.load(Ordering::SeqCst) == 1).await);
    handle.cancel(Some("test".into())).await.expect("cancel");
    assert!(
        eventually(10, || beta.probe.cancelled.load(Ordering::SeqCst) == 1).await,
        "notifications/cancelled did not reach the upstream"
    );
    assert_eq!(alpha.probe.waiting.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn stateless_2026_client_lists_and_calls() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let c = ()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(gw.url.clone()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("server/discover through the gateway");
    let names = tool_names(&c).await;
    assert!(names.contains(&"beta__echo".to_string()), "{names:?}");
    let r = c
        .call_tool(
            CallToolRequestParams::new("beta__echo")
                .with_arguments(args(json!({"text": "stateless"}))),
        )
        .await
        .expect("call");
    assert_eq!(text_of(&r), "beta: stateless");
}

#[tokio::test]
async fn per_server_endpoint_is_unprefixed_and_passes_sessions_through() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let c = client(&format!("{}/servers/alpha/mcp", gw.base)).await;
    assert_eq!(
        c.peer_info()
            .expect("info")
            .server_info
            .as_ref()
            .map(|i| i.name.clone())
            .as_deref(),
        Some("alpha")
    );
    let names = tool_names(&c).await;
    assert!(
        names.contains(&"echo".to_string()) && !names.iter().any(|n| n.contains("__")),
        "{names:?}"
    );
    let r = c
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "direct"}))),
        )
        .await
        .expect("call");
    assert_eq!(text_of(&r), "alpha: direct");
}

#[tokio::test]
async fn resources_templates_and_prompts_are_merged_and_routed() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let c = client(&gw.url).await;
    let resources: Vec<String> = c
        .list_all_resources()
        .await
        .expect("resources/list")
        .into_iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(
        resources,
        vec!["alpha+demo://alpha/readme", "beta+demo://beta/readme"]
    );
    let read = c
        .read_resource(ReadResourceRequestParams::new("beta+demo://beta/readme"))
        .await
        .expect("resources/read");
    let json = serde_json::to_value(&read).expect("json");
    assert_eq!(json["contents"][0]["text"], json!("beta resource readme"));
    assert_eq!(json["contents"][0]["uri"], json!("demo://beta/readme"));

    let templates: Vec<String> = c
        .list_all_resource_templates()
        .await
        .expect("templates")
        .into_iter()
        .map(|t| t.uri_template.clone())
        .collect();
    assert!(
        templates.contains(&"alpha+demo://alpha/items/{id}".to_string()),
        "{templates:?}"
    );
    let item = c
        .read_resource(ReadResourceRequestParams::new(
            "alpha+demo://alpha/items/42",
        ))
        .await
        .expect("templated read");
    assert_eq!(
        serde_json::to_value(&item).expect("json")["contents"][0]["text"],
        json!("alpha resource items/42")
    );
    let missing = c
        .read_resource(ReadResourceRequestParams::new("nobody+demo://x"))
        .await
        .expect_err("unknown route");
    assert!(format!("{missing:?}").contains("-32002"), "{missing:?}");

    let prompts: Vec<String> = c
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(prompts, vec!["alpha__greet", "beta__greet"]);
    let greeting = c
        .get_prompt(
            GetPromptRequestParams::new("beta__greet").with_arguments(args(json!({"who": "ann"}))),
        )
        .await
        .expect("prompts/get");
    assert_eq!(
        serde_json::to_value(&greeting).expect("json")["messages"][0]["content"]["text"],
        json!("beta greets ann")
    );
}

#[derive(Clone, Default)]
struct Answers;

impl ClientHandler for Answers {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        let asked = serde_json::to_value(&request).expect("json");
        assert_eq!(asked["message"], json!("beta asks: proceed?"));
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"answer": "yes"})))
    }

    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        info.capabilities = serde_json::from_value(json!({"elicitation": {}})).expect("caps");
        info
    }
}

#[tokio::test]
async fn upstream_elicitation_is_relayed_to_the_client_and_back() {
    let (_alpha, _beta, gw) = standard_gateway().await;
    let c = Answers
        .serve(StreamableHttpClientTransport::from_uri(gw.url.clone()))
        .await
        .expect("initialize");
    let r = c
        .call_tool(CallToolRequestParams::new("beta__confirm"))
        .await
        .expect("tools/call with elicitation");
    assert_eq!(text_of(&r), "beta heard: yes");
}
