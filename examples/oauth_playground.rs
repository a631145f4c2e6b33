//! An OAuth playground for interop checks by hand: the test suite's IdP (refusing `resource`
//! like Entra ID does) and a sample upstream, plus a gateway configuration that puts the OAuth
//! proxy in front of them. Usage: `cargo run --example oauth_playground -- PORT DIR`, then
//! `mcp-edge run --config DIR/conf/mcp-edge.yaml` and point a client at http://127.0.0.1:PORT/mcp.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/idp.rs"]
#[allow(dead_code)]
mod idp;

use serde_json::json;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().expect("PORT").parse().expect("port number");
    let dir = std::path::PathBuf::from(args.next().expect("DIR"));
    let idp = idp::Idp::start(true).await;
    let upstream = mcp_edge::demo::spawn_upstream("alpha").await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::create_dir_all(dir.join("conf/oauth-profiles")).unwrap();
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::write(dir.join("conf/idp-secret"), idp::CLIENT_SECRET).unwrap();
    std::fs::write(
        dir.join("conf/oauth-profiles/playground.yaml"),
        format!(
            "name: Playground IdP (rejects resource)\nissuer: {u}\nauthorization_endpoint: {u}/authorize\ntoken_endpoint: {u}/token\nresource: strip\n",
            u = idp.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("conf/mcp-edge.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: {base}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
             auth:\n  mode: jwt\n  issuer: {idp}\n  scopes_supported: [mcp:read]\n\
             oauth_proxy:\n  profile: playground\n  client_id: {client}\n  client_secret: ${{file:{secret}}}\n",
            idp = idp.url,
            client = idp::CLIENT_ID,
            secret = dir.join("conf/idp-secret").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("routes/alpha.yaml"),
        format!(
            "name: alpha\nvisibility: [\"*\"]\nupstream:\n  url: {}\n",
            upstream.url
        ),
    )
    .unwrap();
    idp.issue_as(
        &format!("{base}/mcp"),
        json!({"sub": "alice"}),
        &format!("{base}/oauth/callback"),
    );
    println!("idp {} upstream {}", idp.url, upstream.url);
    println!(
        "run: mcp-edge run --config {}",
        dir.join("conf/mcp-edge.yaml").display()
    );
    tokio::signal::ctrl_c().await.unwrap();
    for (kind, params) in idp.seen() {
        println!("idp saw {kind}: resource={:?}", params.get("resource"));
    }
}
