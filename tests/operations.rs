//! Operating it live: hot reload (file watch and SIGHUP), the admin listener and its metrics,
//! per-caller token buckets and per-upstream concurrency caps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn call(id: u64, tool: &str, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"text":text}}})
        .to_string()
}

fn write_route(gw: &Gateway, name: &str, body: &str) {
    // Write-then-rename, as editors do.
    let tmp = gw.routes_dir().join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body).expect("write");
    std::fs::rename(&tmp, gw.routes_dir().join(format!("{name}.yaml"))).expect("rename");
}

/// Waits until the reload counter for `result` passes `above`.
async fn reloads_past(gw: &Gateway, result: &str, above: f64) -> bool {
    let series = format!("mcp_edge_config_reloads_total{{result=\"{result}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if gw.metric(&series).await > above {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn route_edits_apply_live_and_bad_yaml_keeps_the_last_good_config() {
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    let raw = Raw::open(&gw.url).await;
    assert!(
        !raw.tool_names()
            .await
            .iter()
            .any(|n| n.starts_with("beta__"))
    );

    // A new route: listed and callable, in the session opened before it existed.
    let started = Instant::now();
    write_route(
        &gw,
        "beta",
        &format!(
            "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            beta.url
        ),
    );
    let mut seen = false;
    while started.elapsed() < Duration::from_secs(10) {
        if raw.tool_names().await.iter().any(|n| n == "beta__echo") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the new route never appeared");
    println!("new route listed after {:?}", started.elapsed());
    let (_, v) = raw.rpc(call(2, "beta__echo", "live")).await;
    assert_eq!(
        v["result"]["content"][0]["text"],
        json!("beta: live"),
        "{v}"
    );
    assert_eq!(gw.metric("mcp_edge_config_generation").await, 2.0);

    // Broken YAML: rejected, counted, and the last good config keeps serving.
    let errors = gw
        .metric("mcp_edge_config_reloads_total{result=\"error\"}")
        .await;
    write_route(&gw, "beta", "name: beta\nupstream: [not, a, map\n");
    assert!(
        reloads_past(&gw, "error", errors).await,
        "the bad reload was not counted"
    );
    let (_, v) = raw.rpc(call(3, "beta__echo", "still")).await;
    assert_eq!(
        v["result"]["content"][0]["text"],
        json!("beta: still"),
        "{v}"
    );
    assert_eq!(gw.metric("mcp_edge_config_generation").await, 2.0);

    // A route file reaching for a gateway secret: rejected like broken YAML.
    let errors = gw
        .metric("mcp_edge_config_reloads_total{result=\"error\"}")
        .await;
    write_route(
        &gw,
        "beta",
        &format!(
            "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\n  headers: {{ x-leak: \"${{env:MCP_EDGE_IDP_SECRET}}\" }}\n",
            beta.url
        ),
    );
    assert!(
        reloads_past(&gw, "error", errors).await,
        "a route file reading a gateway secret was not refused"
    );
    assert_eq!(gw.metric("mcp_edge_config_generation").await, 2.0);

    // Removing the route takes its tools away.
    std::fs::remove_file(gw.routes_dir().join("beta.yaml")).expect("rm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && raw
            .tool_names()
            .await
            .iter()
            .any(|n| n.starts_with("beta__"))
    {}
    let (_, v) = raw.rpc(call(4, "beta__echo", "gone")).await;
    assert_eq!(v["error"]["code"], json!(-32602), "{v}");
}

#[tokio::test]
async fn sighup_reloads() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    let before = gw
        .metric("mcp_edge_config_reloads_total{result=\"ok\"}")
        .await;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(
        reloads_past(&gw, "ok", before).await,
        "SIGHUP did not reload"
    );
    let raw = Raw::open(&gw.url).await;
    let (_, v) = raw.rpc(call(1, "alpha__echo", "after hup")).await;
    assert_eq!(v["result"]["content"][0]["text"], json!("alpha: after hup"));
}

#[tokio::test]
async fn fifty_reloads_under_load_fail_no_call() {
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![
            ("alpha", alpha.url.clone(), ""),
            ("beta", beta.url.clone(), ""),
        ],
        extra: "",
    });
    let url = gw.url.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let raw = Raw::open(&url).await;
                let mut n = 0u64;
                // Bounded: stops when told, or after 20 000 calls.
                while !stop.load(Ordering::SeqCst) && n < 20_000 {
                    n += 1;
                    let (status, v) = raw.rpc(call(n, "alpha__echo", &format!("w{w}"))).await;
                    if status == 200
                        && v["result"]["content"][0]["text"] == json!(format!("alpha: w{w}"))
                    {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        eprintln!("failed call: {status} {v}");
                    }
                }
            })
        })
        .collect();
    for i in 0..50 {
        let good = i % 2 == 0;
        let result = if good { "ok" } else { "error" };
        let series = format!("mcp_edge_config_reloads_total{{result=\"{result}\"}}");
        let before = gw.metric(&series).await;
        if good {
            write_route(
                &gw,
                "beta",
                &format!(
                    "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\n  timeout: {}s\n",
                    beta.url,
                    10 + i
                ),
            );
        } else {
            write_route(
                &gw,
                "beta",
                "name: beta\nupstream:\n  url: 12\nbogus: true\n",
            );
        }
        assert!(
            reloads_past(&gw, result, before).await,
            "reload {i} ({result}) not seen"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.expect("load task");
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    println!("{ok} calls succeeded during 50 reloads");
    assert!(ok > 0);
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn admin_endpoints_and_metrics_move_with_traffic() {
    let (alpha, _beta, gw) = standard_gateway().await;
    let get = |path: &str| http().get(format!("{}{path}", gw.admin)).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    // Ready once a health probe has reached an upstream.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        ready = get("/readyz").await.expect("readyz").status() == 200;
    }
    assert!(ready, "/readyz never became ready");
    assert_eq!(
        gw.metric("mcp_edge_upstream_up{route=\"alpha\"}").await,
        1.0
    );

    let raw = Raw::open(&gw.url).await;
    for i in 0..3 {
        let (_, v) = raw.rpc(call(i, "alpha__echo", "m")).await;
        assert!(v.get("result").is_some());
    }
    let (_, _) = raw.rpc(call(9, "beta__fail", "m")).await;
    let (_, _) = raw.rpc(call(10, "nobody__x", "m")).await;
    let text = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for family in [
        "mcp_edge_requests_total",
        "mcp_edge_tool_calls_total",
        "mcp_edge_request_duration_seconds_bucket",
        "mcp_edge_upstream_duration_seconds_bucket",
        "mcp_edge_config_generation",
        "mcp_edge_config_last_success_timestamp_seconds",
        "mcp_edge_sessions_opened_total",
        "mcp_edge_upstream_up",
    ] {
        assert!(text.contains(family), "{family} missing from /metrics");
    }
    let ok_calls = "mcp_edge_tool_calls_total{outcome=\"ok\",route=\"alpha\",tool=\"other\"}";
    assert_eq!(gw.metric(ok_calls).await, 3.0, "{text}");
    let tool_errors =
        "mcp_edge_tool_calls_total{outcome=\"tool_error\",route=\"beta\",tool=\"other\"}";
    assert_eq!(gw.metric(tool_errors).await, 1.0, "{text}");
    let refused = "mcp_edge_requests_total{method=\"tools/call\",outcome=\"refused\",route=\"-\"}";
    assert_eq!(gw.metric(refused).await, 1.0, "{text}");
    assert!(gw.metric("mcp_edge_sessions_opened_total").await >= 1.0);
    assert!(!text.contains("nobody__x"), "labels only from the config");

    // An upstream going away shows in its health gauge and readiness follows.
    drop(alpha);
    let up = gw
        .wait_metric("mcp_edge_upstream_up{route=\"alpha\"}", |v| v == 0.0)
        .await;
    assert_eq!(up, 0.0);
    assert_eq!(
        get("/readyz").await.expect("readyz").status(),
        200,
        "beta is still up"
    );
}

#[tokio::test]
async fn token_buckets_refuse_one_caller_with_429_and_spare_another() {
    let (alpha, _beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![(
            "alpha",
            alpha.url.clone(),
            "limits:\n  per_user_rpm: 600\n  per_tool:\n    echo: { per_user_rpm: 60, burst: 3 }",
        )],
        extra: "",
    });
    let hammer = Raw::open(&gw.url).await;
    let other = Raw::open(&gw.url).await;
    for i in 0..3 {
        let (status, v) = hammer.rpc(call(i, "alpha__echo", "x")).await;
        assert_eq!(status, 200, "{v}");
    }
    let resp = hammer.post(call(99, "alpha__echo", "x")).await;
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry), "one token a second: {retry}");
    assert_eq!(h["ratelimit-policy"], "\"tool\";q=60;w=60");
    assert_eq!(h["ratelimit"], "\"tool\";r=0;t=1");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["id"], json!(99));
    assert_eq!(v["error"]["code"], json!(-32029));
    assert_eq!(v["error"]["data"]["retryAfterSeconds"], json!(1));

    // Another caller is unaffected; other tools of the same caller only meet the route bucket.
    let (status, v) = other.rpc(call(1, "alpha__echo", "y")).await;
    assert_eq!(
        (status, v["result"]["content"][0]["text"].clone()),
        (200, json!("alpha: y"))
    );
    let (status, _) = hammer.rpc(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"alpha__large","arguments":{"bytes":3}}}"#).await;
    assert_eq!(status, 200);
    // Lists and pings are not limited.
    let (status, _) = hammer
        .rpc(r#"{"jsonrpc":"2.0","id":6,"method":"tools/list"}"#)
        .await;
    assert_eq!(status, 200);
    let tool_scope = "mcp_edge_rate_limited_total{scope=\"tool\"}";
    assert_eq!(gw.metric(tool_scope).await, 1.0);
    let labelled =
        "mcp_edge_tool_calls_total{outcome=\"rate_limited\",route=\"alpha\",tool=\"echo\"}";
    assert_eq!(
        gw.metric(labelled).await,
        1.0,
        "a tool named in the config labels its metrics"
    );
}

#[tokio::test]
async fn concurrency_cap_refuses_excess_calls_at_once() {
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "  max_concurrency: 2")],
        extra: "",
    });
    let raw = Arc::new(Raw::open(&gw.url).await);
    let wait = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"alpha__wait","arguments":{"ms":3000}}}).to_string()
    };
    let slow: Vec<_> = (1..=2)
        .map(|i| {
            let raw = raw.clone();
            let body = wait(i);
            tokio::spawn(async move { raw.rpc(body).await })
        })
        .collect();
    assert!(eventually(10, || alpha.probe.waiting.load(Ordering::SeqCst) == 2).await);
    let started = Instant::now();
    let resp = raw.post(wait(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not queued"
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency limit"),
        "{v}"
    );
    for s in slow {
        let (status, v) = s.await.expect("task");
        assert_eq!(
            (status, v["result"]["content"][0]["text"].clone()),
            (200, json!("waited"))
        );
    }
    let (status, _) = raw.rpc(wait(4)).await;
    assert_eq!(status, 200, "capacity is back");
}

#[derive(Clone, Default)]
struct ListWatcher {
    changes: Arc<AtomicUsize>,
}

impl rmcp::ClientHandler for ListWatcher {
    async fn on_tool_list_changed(
        &self,
        _cx: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn open_streams_hear_list_changed_when_routes_change() {
    use rmcp::ServiceExt;
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    let watcher = ListWatcher::default();
    let client = watcher
        .clone()
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            gw.url.clone(),
        ))
        .await
        .expect("initialize");
    let caps = client.peer_info().expect("info").capabilities.tools.clone();
    assert_eq!(caps.and_then(|t| t.list_changed), Some(true));
    // The client's GET stream is open once the gauge says so.
    assert_eq!(
        gw.wait_metric("mcp_edge_open_streams", |v| v >= 1.0).await,
        1.0
    );

    // A reload that changes nothing visible says nothing; a new route does.
    let before = gw
        .metric("mcp_edge_config_reloads_total{result=\"ok\"}")
        .await;
    write_route(
        &gw,
        "alpha",
        &format!(
            "name: alpha\nowner: someone\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            alpha.url
        ),
    );
    assert!(reloads_past(&gw, "ok", before).await);
    write_route(
        &gw,
        "beta",
        &format!(
            "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            beta.url
        ),
    );
    assert!(
        eventually(10, || watcher.changes.load(Ordering::SeqCst) >= 1).await,
        "no notifications/tools/list_changed"
    );
    assert_eq!(
        watcher.changes.load(Ordering::SeqCst),
        1,
        "one notification for one change"
    );
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"beta__echo".to_string()));
    client.cancel().await.expect("close");
    assert_eq!(
        gw.wait_metric("mcp_edge_open_streams", |v| v == 0.0).await,
        0.0,
        "closed streams are counted down"
    );
}

#[tokio::test]
async fn kubernetes_configmap_symlink_swaps_reload() {
    use std::os::unix::fs::symlink;
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "",
    });
    // The kubelet's layout: versioned directories, a `..data` link to the current one, and
    // per-file links through it; an update swaps `..data` with one rename.
    let dir = gw.routes_dir();
    let v1 = dir.join("..2026_11_22_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(
        v1.join("beta.yaml"),
        format!(
            "name: beta\nvisibility: [\"*\"]\ntool_prefix: one\nupstream:\n  url: {}\n",
            beta.url
        ),
    )
    .unwrap();
    symlink("..2026_11_22_v1", dir.join("..data")).unwrap();
    symlink("..data/beta.yaml", dir.join("beta.yaml")).unwrap();
    let raw = Raw::open(&gw.url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !raw.tool_names().await.iter().any(|n| n == "one__echo") {}
    assert!(raw.tool_names().await.contains(&"one__echo".to_string()));

    let v2 = dir.join("..2026_11_22_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("beta.yaml"),
        format!(
            "name: beta\nvisibility: [\"*\"]\ntool_prefix: two\nupstream:\n  url: {}\n",
            beta.url
        ),
    )
    .unwrap();
    symlink("..2026_11_22_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !raw.tool_names().await.iter().any(|n| n == "two__echo") {}
    let names = raw.tool_names().await;
    assert!(
        names.contains(&"two__echo".to_string()) && !names.contains(&"one__echo".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn fan_outs_have_a_bucket_of_their_own_per_caller() {
    let (alpha, _beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: "limits:\n  fan_out: { per_user_rpm: 60, burst: 3 }\n",
    });
    // With authentication off each session is its own caller: three lists fit in the burst.
    let raw = Raw::open(&gw.url).await;
    let list = |id: u64| json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}).to_string();
    for id in 1..=3 {
        assert_eq!(raw.rpc(list(id)).await.0, 200);
    }
    let refused = raw.post(list(4)).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let v: Value = refused.json().await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(4), json!(-32029))
    );
    let other = Raw::open(&gw.url).await;
    assert_eq!(
        other.rpc(list(1)).await.0,
        200,
        "another caller has its own bucket"
    );
    assert_eq!(
        gw.metric("mcp_edge_rate_limited_total{scope=\"fan_out\"}")
            .await,
        1.0
    );
    let (status, v) = raw
        .rpc(call(5, "alpha__echo", "calls are not fan-outs"))
        .await;
    assert_eq!(status, 200, "{v}");
}
