//! Buckets shared between instances in a real Redis, and the fallback to local buckets when
//! Redis goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

fn call(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"s"}}}).to_string()
}

#[tokio::test]
async fn instances_share_buckets_through_redis_and_fall_back_when_it_is_gone() {
    let mut redis = common::redis::start();
    let alpha = spawn_upstream("alpha").await.expect("alpha");
    let extra = format!(
        "sessions:\n  keys: [{}]\nlimits:\n  store: redis://127.0.0.1:{}/0\n",
        common::redis::SESSION_KEY,
        redis.port
    );
    let route = "limits:\n  per_tool:\n    echo: { per_user_rpm: 60, burst: 3 }";
    let a = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), route)],
        extra: &extra,
    });
    let b = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), route)],
        extra: &extra,
    });
    let on_a = Raw::open(&a.url).await;
    // The same session, served by the other instance: sealed sessions need no shared store.
    let on_b = Raw {
        client: http(),
        url: b.url.clone(),
        session: on_a.session.clone(),
        version: on_a.version.clone(),
        bearer: None,
    };
    for (i, raw) in [&on_a, &on_b, &on_a].into_iter().enumerate() {
        let (status, v) = raw.rpc(call(i as u64)).await;
        assert_eq!(status, 200, "{v}");
    }
    let refused = on_b.post(call(9)).await;
    assert_eq!(
        refused.status(),
        429,
        "the burst of 3 is shared by both instances"
    );
    assert_eq!(refused.headers()["ratelimit-policy"], "\"tool\";q=60;w=60");
    assert_eq!(b.metric("mcp_edge_limit_store_fallbacks_total").await, 0.0);

    // Redis goes away: calls are limited locally, counted, and still served.
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let (status, v) = on_b.rpc(call(10)).await;
    assert_eq!(status, 200, "local buckets take over: {v}");
    assert!(b.metric("mcp_edge_limit_store_fallbacks_total").await >= 1.0);
    for i in 11..13 {
        assert_eq!(on_b.rpc(call(i)).await.0, 200);
    }
    assert_eq!(
        on_b.post(call(13)).await.status(),
        429,
        "the local bucket limits too"
    );
}
