//! The edge's own transport: TLS termination with certificates chosen by SNI (HTTP/1.1 and
//! HTTP/2 by ALPN), a certificate file swapped under a running gateway, and h2c on the plain
//! listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tls::TestCa;
use common::{Gateway, Raw, Setup, answer, routes_for, two_upstreams};
use reqwest::Version;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

const TLS: &str = "tls:\n  cert: tls/edge.crt\n  key: tls/edge.key\n  more:\n    - cert: tls/other.crt\n      key: tls/other.key\n";

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"over tls"}}}"#;

fn write_pair(dir: &Path, name: &str, issued: &common::tls::Issued) {
    std::fs::create_dir_all(dir).unwrap();
    // Key first, each written whole and renamed into place, as a certificate manager does.
    for (ext, text) in [("key", &issued.key), ("crt", &issued.cert)] {
        let tmp = dir.join(format!(".{name}.{ext}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{name}.{ext}"))).unwrap();
    }
}

fn addr(gw: &Gateway) -> SocketAddr {
    gw.base
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

fn url(name: &str, gw: &Gateway) -> String {
    format!("https://{name}:{}/mcp", addr(gw).port())
}

async fn echo_over(raw: &Raw) -> (Version, serde_json::Value) {
    let resp = raw.post(CALL).await;
    assert_eq!(resp.status(), 200);
    let version = resp.version();
    (version, answer(resp).await)
}

#[tokio::test]
async fn https_serves_mcp_over_h1_and_h2_with_the_certificate_sni_names() {
    let (alpha, beta) = two_upstreams().await;
    let ca = TestCa::new("mcp-edge test CA");
    let edge = ca.issue(&["edge.test"]);
    let other = ca.issue(&["*.other.test"]);
    let gw = Gateway::start_with(
        Setup {
            routes: routes_for(&[("alpha", &alpha), ("beta", &beta)]),
            extra: TLS,
        },
        |conf| {
            write_pair(&conf.join("tls"), "edge", &edge);
            write_pair(&conf.join("tls"), "other", &other);
        },
    );
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let names = ["edge.test", "a.other.test", "b.c.other.test"];

    // HTTP/1.1 when the client offers only that.
    let h1 = ca.client(&names, addr(&gw), true);
    let raw = Raw::open_over(h1, &url("edge.test", &gw), None).await;
    let (version, v) = echo_over(&raw).await;
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(v["result"]["content"][0]["text"], "alpha: over tls", "{v}");

    // HTTP/2 by ALPN: a whole session, a streamed (SSE) call and the GET stream.
    let h2 = ca.client(&names, addr(&gw), false);
    let raw = Raw::open_over(h2.clone(), &url("edge.test", &gw), None).await;
    let (version, v) = echo_over(&raw).await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(v["result"]["content"][0]["text"], "alpha: over tls", "{v}");
    let resp = raw
        .post(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"alpha__progress","arguments":{"steps":3},"_meta":{"progressToken":"p"}}}"#)
        .await;
    assert_eq!(resp.version(), Version::HTTP_2);
    let text = resp.text().await.unwrap();
    let progress = text.matches("notifications/progress").count();
    assert_eq!(progress, 3, "progress streamed over h2: {text}");
    assert!(text.contains("done"), "{text}");
    let stream = h2
        .get(url("edge.test", &gw))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", raw.session.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.version(), Version::HTTP_2);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    drop(stream);
    assert_eq!(
        raw.tool_names().await.len(),
        alpha_and_beta_tools(&raw).await
    );

    // SNI picks the wildcard certificate; a name no certificate covers gets the default one,
    // which the client rightly refuses.
    let raw = Raw::open_over(
        ca.client(&names, addr(&gw), false),
        &url("a.other.test", &gw),
        None,
    )
    .await;
    assert_eq!(
        echo_over(&raw).await.1["result"]["content"][0]["text"],
        "alpha: over tls"
    );
    let refused = ca
        .client(&names, addr(&gw), false)
        .get(url("b.c.other.test", &gw))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a name no certificate covers must not verify"
    );
}

/// The number of tools the two sample upstreams expose through the gateway (a stable count).
async fn alpha_and_beta_tools(raw: &Raw) -> usize {
    let names = raw.tool_names().await;
    assert!(names.iter().any(|n| n == "alpha__echo") && names.iter().any(|n| n == "beta__echo"));
    names.len()
}

#[tokio::test]
async fn a_swapped_certificate_file_is_served_without_a_restart_or_a_dropped_connection() {
    let (alpha, beta) = two_upstreams().await;
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let gw = Gateway::start_with(
        Setup {
            routes: routes_for(&[("alpha", &alpha), ("beta", &beta)]),
            extra: TLS,
        },
        |conf| {
            write_pair(&conf.join("tls"), "edge", &old_ca.issue(&["edge.test"]));
            write_pair(&conf.join("tls"), "other", &old_ca.issue(&["other.test"]));
        },
    );
    let names = ["edge.test"];
    let before = Raw::open_over(
        old_ca.client(&names, addr(&gw), false),
        &url("edge.test", &gw),
        None,
    )
    .await;
    assert_eq!(echo_over(&before).await.0, Version::HTTP_2);
    let new_client = new_ca.client(&names, addr(&gw), false);
    let probe = || async { new_client.get(url("edge.test", &gw)).send().await };
    assert!(probe().await.is_err(), "the new CA is not trusted yet");
    let reloads = gw
        .metric("mcp_edge_config_reloads_total{result=\"ok\"}")
        .await;

    let conf = gw.config.parent().unwrap().to_path_buf();
    write_pair(&conf.join("tls"), "edge", &new_ca.issue(&["edge.test"]));
    let mut served = false;
    for _ in 0..250 {
        if probe().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        served,
        "the new certificate is served after the file changed"
    );
    assert!(
        gw.metric("mcp_edge_config_reloads_total{result=\"ok\"}")
            .await
            > reloads
    );
    // The connection opened before the swap is still up and serving.
    let (version, v) = echo_over(&before).await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(v["result"]["content"][0]["text"], "alpha: over tls");
}

#[tokio::test]
async fn h2c_by_prior_knowledge_on_the_plain_listener() {
    let (_alpha, _beta, gw) = common::standard_gateway().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let raw = Raw::open_over(client, &gw.url, None).await;
    let (version, v) = echo_over(&raw).await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(v["result"]["content"][0]["text"], "alpha: over tls", "{v}");
}

#[test]
fn check_refuses_a_key_of_another_certificate_and_tls_without_an_https_url() {
    let ca = TestCa::new("check CA");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path();
    std::fs::create_dir_all(conf.join("routes")).unwrap();
    let a = ca.issue(&["a.test"]);
    let b = ca.issue(&["b.test"]);
    std::fs::write(conf.join("a.crt"), &a.cert).unwrap();
    std::fs::write(conf.join("b.key"), &b.key).unwrap();
    std::fs::write(
        conf.join("mcp-edge.yaml"),
        "listen: 127.0.0.1:0\npublic_url: http://127.0.0.1:8443\nroutes_dir: routes\n\
         tls:\n  cert: a.crt\n  key: b.key\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(conf.join("mcp-edge.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public_url: must be https://"), "{err}");
    assert!(
        err.contains("b.key does not go with") && err.contains("a.crt"),
        "{err}"
    );
}
