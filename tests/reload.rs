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
