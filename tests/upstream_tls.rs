//! TLS toward upstreams: a route trusts the CA it names and presents the client certificate an
//! mTLS upstream requires; without the certificate the upstream refuses the gateway; without the
//! CA the gateway refuses the upstream; a route file cannot point its TLS files outside its own
//! secrets directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::tls::{TestCa, mtls_relay};
use common::{Gateway, Raw, Setup, code, spawn_upstream};
use std::net::SocketAddr;
use std::process::Command;

fn https_url(relay: SocketAddr, plain: &str) -> String {
    let path = plain.splitn(4, '/').nth(3).unwrap_or("mcp");
    format!("https://127.0.0.1:{}/{path}", relay.port())
}

#[tokio::test]
async fn a_route_trusts_its_ca_and_presents_its_client_certificate() {
    let alpha = spawn_upstream("alpha").await.unwrap();
    let beta = spawn_upstream("beta").await.unwrap();
    let server_ca = TestCa::new("upstream server CA");
    let client_ca = TestCa::new("upstream client CA");
    let target = |u: &str| -> SocketAddr {
        u.trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let relay_a = mtls_relay(
        &server_ca.issue(&["alpha.test"]),
        &client_ca,
        target(&alpha.url),
    )
    .await;
    let relay_b = mtls_relay(
        &server_ca.issue(&["beta.test"]),
        &client_ca,
        target(&beta.url),
    )
    .await;
    let client = client_ca.issue(&["mcp-edge"]);
    let with_cert = "  tls:\n    ca: ca.pem\n    cert: client.crt\n    key: client.key\n";
    let without_cert = "  tls:\n    ca: ca.pem\n";
    let system_roots = "  tls:\n    cert: client.crt\n    key: client.key\n";
    let gw = Gateway::start_with(
        Setup {
            routes: vec![
                ("alpha", https_url(relay_a, &alpha.url), with_cert),
                ("beta", https_url(relay_b, &beta.url), without_cert),
                ("gamma", https_url(relay_a, &alpha.url), system_roots),
            ],
            extra: "route_secrets_dir: ../secrets\n",
        },
        |conf| {
            for route in ["alpha", "beta", "gamma"] {
                let dir = conf.join("../secrets").join(route);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("ca.pem"), server_ca.pem()).unwrap();
                std::fs::write(dir.join("client.crt"), &client.cert).unwrap();
                std::fs::write(dir.join("client.key"), &client.key).unwrap();
            }
        },
    );
    let raw = Raw::open(&gw.url).await;
    let names = raw.tool_names().await;
    assert!(names.iter().any(|n| n == "alpha__echo"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("beta__")),
        "the upstream refused a gateway without a client certificate: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("gamma__")),
        "a certificate of a CA the route does not trust is refused: {names:?}"
    );
    let (status, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"mtls"}}}"#)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], "alpha: mtls", "{v}");
    let (_, v) = raw
        .rpc(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"beta__echo","arguments":{"text":"x"}}}"#)
        .await;
    assert_ne!(code(&v), 0, "no client certificate, no call: {v}");
}

#[test]
fn route_tls_files_come_only_from_the_routes_own_secrets_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("routes")).unwrap();
    std::fs::create_dir_all(root.join("secrets/alpha")).unwrap();
    std::fs::create_dir_all(root.join("secrets/beta")).unwrap();
    let ca = TestCa::new("ca");
    std::fs::write(root.join("secrets/beta/ca.pem"), ca.pem()).unwrap();
    std::fs::write(
        root.join("mcp-edge.yaml"),
        "listen: 127.0.0.1:0\npublic_url: http://127.0.0.1:1\nroutes_dir: routes\nroute_secrets_dir: secrets\n",
    )
    .unwrap();
    std::fs::write(
        root.join("routes/alpha.yaml"),
        "name: alpha\nupstream:\n  url: https://127.0.0.1:9/mcp\n  tls:\n    ca: ../beta/ca.pem\n",
    )
    .unwrap();
    std::fs::write(
        root.join("routes/gamma.yaml"),
        "name: gamma\nupstream:\n  url: http://127.0.0.1:9/mcp\n  tls:\n    cert: c.pem\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(root.join("mcp-edge.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alpha.yaml: upstream.tls.ca: a route file may read only secret files below"),
        "{err}"
    );
    assert!(
        err.contains("gamma.yaml: upstream.tls: needs an https:// upstream.url"),
        "{err}"
    );
}
