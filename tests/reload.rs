//! Reload hygiene: only the configuration file and route files trigger a reload; files that say
//! what they said are no change (no new generation); a change to routes refetches nothing from
//! the IdP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test]
async fn only_real_configuration_changes_reload_and_routes_refetch_nothing_from_the_idp() {
    let idp = common::idp::Idp::start(false).await;
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: vec![("alpha", alpha.url.clone(), "")],
        extra: &format!("auth:\n  mode: jwt\n  issuer: {}\n", idp.url),
    });
    assert!(
        eventually(15, || idp.jwks_fetches() >= 1).await,
        "the keys are fetched at start"
    );
    let fetched = idp.jwks_fetches();
    let routes = gw.routes_dir();
    let conf = routes.parent().unwrap().join("conf");
    let alpha_file = routes.join("alpha.yaml");
    let same = std::fs::read_to_string(&alpha_file).unwrap();

    // Noise: a log growing beside the configuration, unrelated files, an editor's swap file,
    // and a route file written again with the same content.
    for i in 0..20 {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(conf.join("gateway.log"))
            .unwrap();
        writeln!(log, "line {i}").unwrap();
    }
    std::fs::write(conf.join("notes.txt"), "not configuration").unwrap();
    std::fs::write(routes.join(".alpha.yaml.swp"), "swap").unwrap();
    std::fs::write(&alpha_file, &same).unwrap();

    // Then one real change; once it is in force, everything before it was seen too.
    std::fs::write(
        routes.join("beta.yaml"),
        format!(
            "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            beta.url
        ),
    )
    .unwrap();
    assert_eq!(
        gw.wait_metric("mcp_edge_config_generation", |g| g >= 2.0)
            .await,
        2.0,
        "one new generation, for the one real change"
    );
    assert_eq!(
        gw.metric("mcp_edge_config_reloads_total{result=\"ok\"}")
            .await,
        1.0
    );
    assert_eq!(
        idp.jwks_fetches(),
        fetched,
        "a change of routes fetched the IdP's keys again"
    );

    // Again: an identical rewrite and one real change make exactly one more generation.
    std::fs::write(&alpha_file, &same).unwrap();
    std::fs::write(
        routes.join("beta.yaml"),
        format!(
            "name: beta\nvisibility: [\"*\"]\nupstream:\n  url: {}\nowner: team-b\n",
            beta.url
        ),
    )
    .unwrap();
    assert_eq!(
        gw.wait_metric("mcp_edge_config_generation", |g| g >= 3.0)
            .await,
        3.0
    );
}

#[tokio::test]
async fn sigterm_ends_open_streams_promptly_with_a_reconnect_hint() {
    let (alpha, _beta) = two_upstreams().await;
    // A grace period of 3 s: streams cut only when the process ends would end after it; streams
    // told at once end right away, with the hint, while the process still drains.
    let mut gw = Gateway::start_with(
        Setup {
            routes: vec![("alpha", alpha.url.clone(), "")],
            extra: "",
        },
        |conf| {
            let file = conf.join("mcp-edge.yaml");
            let text = std::fs::read_to_string(&file).unwrap();
            let text = text.replace("grace_period_seconds: 0", "grace_period_seconds: 3");
            std::fs::write(&file, text).unwrap();
        },
    );
    let mut streams = Vec::new();
    for _ in 0..20 {
        let raw = Raw::open(&gw.url).await;
        let resp = raw
            .client
            .get(&raw.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", raw.session.clone().unwrap())
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(tokio::spawn(async move {
            let text = resp.text().await.unwrap_or_default();
            (text, std::time::Instant::now())
        }));
    }
    assert_eq!(
        gw.wait_metric("mcp_edge_open_streams", |v| v >= 20.0).await,
        20.0
    );
    let started = std::time::Instant::now();
    let stopped = tokio::task::spawn_blocking(move || gw.terminate());
    for stream in streams {
        let (text, ended) = tokio::time::timeout(std::time::Duration::from_secs(10), stream)
            .await
            .expect("the stream ended")
            .unwrap();
        assert!(text.contains("retry: 1000"), "no reconnect hint: {text:?}");
        let after = ended.duration_since(started);
        assert!(
            after < std::time::Duration::from_secs(2),
            "a stream ended {after:?} after SIGTERM, not before the grace period ran out"
        );
    }
    assert!(stopped.await.unwrap().success());
}
