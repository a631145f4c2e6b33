//! Many upstreams and several instances: a session id whose size does not grow with the routes,
//! an `initialize` that asks no upstream once each has been seen, one upstream listing per route
//! for many clients (the shared catalog), and, with `sessions.store`, one upstream session per
//! client session whichever instance serves it. Counted at a real upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis::SESSION_KEY;
use common::*;
use serde_json::json;

fn route_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}")).collect()
}

fn routes<'a>(
    up: &counting::Counting,
    names: &'a [String],
    extra: &'a str,
) -> Vec<(&'a str, String, &'a str)> {
    names
        .iter()
        .map(|n| (n.as_str(), up.url(n), extra))
        .collect()
}

fn call(route: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": format!("{route}__count_{route}"), "arguments": {}}})
    .to_string()
}

async fn called(raw: &Raw, route: &str) -> String {
    let (status, v) = raw.rpc(call(route)).await;
    assert_eq!(status, 200, "{v}");
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_string()
}

#[tokio::test]
async fn with_200_routes_the_session_id_stays_small_and_initialize_asks_no_upstream() {
    let up = counting::start().await;
    let names = route_names(200);
    let gw = Gateway::start(Setup {
        routes: routes(&up, &names, ""),
        extra: "",
    });
    // The first client on a fresh instance: each upstream never seen is opened once.
    let started = std::time::Instant::now();
    let first = Raw::open(&gw.url).await;
    let first_took = started.elapsed();
    assert_eq!(up.total("initialize"), 200);
    let started = std::time::Instant::now();
    let second = Raw::open(&gw.url).await;
    // Figures for the README (measured, not asserted: this machine is shared).
    eprintln!(
        "200 routes: first initialize {first_took:?}, next {:?}, session id {} bytes",
        started.elapsed(),
        second.session.as_deref().map_or(0, str::len)
    );
    assert_eq!(
        up.total("initialize"),
        200,
        "every upstream was seen: an initialize opens none"
    );
    for raw in [&first, &second] {
        let id = raw.session.as_deref().unwrap();
        assert!(id.len() <= 1024, "{} bytes with 200 routes", id.len());
    }
    // The second client's upstream session is opened on its first call, for that route only.
    let text = called(&second, "r7").await;
    assert!(text.ends_with("call 1"), "{text}");
    assert_eq!(up.seen("r7", "initialize"), 2);
    assert_eq!(up.total("initialize"), 201);
    // The first client's session opened at initialize is the one its calls use.
    let text = called(&first, "r7").await;
    assert!(
        text.starts_with("r7-s") && text.ends_with("call 1"),
        "{text}"
    );
    assert_eq!(up.total("initialize"), 201);
    // The capabilities merged from what the upstreams declared.
    let (_, v) = Raw::open(&gw.url)
        .await
        .rpc(r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .await;
    assert!(v["result"]["capabilities"]["tools"].is_object(), "{v}");
}

#[tokio::test]
async fn twenty_clients_listing_50_routes_cost_one_upstream_list_per_route() {
    let up = counting::start().await;
    let names = route_names(50);
    let mut all = routes(&up, &names, "");
    all.push(("own", up.url("own"), "catalog: per_caller"));
    let gw = Gateway::start(Setup {
        routes: all,
        extra: "",
    });
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(Raw::open(&gw.url).await);
    }
    let lists = clients.iter().map(|c| c.tool_names());
    let answers = futures::future::join_all(lists).await;
    for names in &answers {
        assert_eq!(names.len(), 51, "{names:?}");
        assert!(names.contains(&"r49__count_r49".to_string()));
    }
    for r in &names {
        let n = up.seen(r, "tools/list");
        assert!((1..=2).contains(&n), "{r} was listed {n} times");
    }
    assert_eq!(
        up.seen("own", "tools/list"),
        20,
        "per_caller lists per caller"
    );
    // A call decides on the shared catalog: no listing of its own.
    let before = up.total("tools/list");
    assert!(called(&clients[3], "r11").await.ends_with("call 1"));
    assert_eq!(up.total("tools/list"), before);
    // A reload (a route added) makes another generation: the next list asks again.
    let listed = up.seen("r0", "tools/list");
    std::fs::write(
        gw.routes_dir().join("late.yaml"),
        format!(
            "name: late\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            up.url("late")
        ),
    )
    .unwrap();
    gw.wait_metric("mcp_edge_config_generation", |g| g >= 2.0)
        .await;
    let names_now = clients[0].tool_names().await;
    assert_eq!(names_now.len(), 52, "{names_now:?}");
    assert_eq!(up.seen("r0", "tools/list"), listed + 1);
}

#[tokio::test]
async fn with_a_store_two_instances_share_one_upstream_session_per_client_session() {
    let redis = common::redis::start();
    let up = counting::start().await;
    let names = route_names(3);
    let extra = format!(
        "sessions:\n  keys: [{SESSION_KEY}]\n  store: redis://127.0.0.1:{}/0\n",
        redis.port
    );
    let setup = || Setup {
        routes: routes(&up, &names, ""),
        extra: &extra,
    };
    let a = Gateway::start(setup());
    let b = Gateway::start(setup());
    // Both instances have seen every upstream: the client session opens none at initialize.
    drop(Raw::open(&a.url).await);
    drop(Raw::open(&b.url).await);
    let inits = up.total("initialize");
    let on_a = Raw::open(&a.url).await;
    let mut on_b = on_a.clone_session();
    on_b.url = b.url.clone();
    assert_eq!(up.total("initialize"), inits);
    // Calls alternate between instances; the upstream counts them in one session.
    let mut session = None;
    for (n, raw) in [&on_a, &on_b, &on_a, &on_b].into_iter().enumerate() {
        let text = called(raw, "r1").await;
        let (s, count) = text.split_once(" call ").unwrap();
        assert_eq!(count, (n + 1).to_string(), "{text}");
        assert_eq!(
            *session.get_or_insert(s.to_string()),
            s,
            "one upstream session"
        );
    }
    assert_eq!(up.total("initialize"), inits + 1);
    // DELETE through the other instance ends the upstream session too, and the client
    // session on both instances.
    let deleted = on_b.delete_session().await;
    assert_eq!(deleted.status(), 200);
    let gone = up.counts.lock().unwrap().deleted.clone();
    assert_eq!(gone, vec![session.unwrap()]);
    assert_eq!(on_a.rpc(call("r1")).await.0, 404);
}
