//! Three gateway processes sharing keys and a real Redis (`sessions.store`, `limits.store`)
//! behind nginx balancing round robin, started by the test: a session works whichever instance
//! serves it, a route's bucket is one bucket for all three, an approval asked on one instance
//! is answered through another (and only by the session asked), a DELETE ends the session on
//! every instance, and an OAuth login whose steps land on different instances completes once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::idp::Idp;
use common::oauth::*;
use common::redis::SESSION_KEY;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};

struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would leave them behind).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Debian's nginx in the foreground as this user: one worker, so requests go round robin.
async fn nginx(port: u16, backends: &[&Gateway]) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let servers: String = backends
        .iter()
        .map(|g| format!("server {};\n", g.base.trim_start_matches("http://")))
        .collect();
    let d = dir.path().display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         upstream edge {{\n{servers}}}\n\
         server {{\n listen 127.0.0.1:{port};\n location / {{\n proxy_pass http://edge;\n\
         proxy_http_version 1.1;\n proxy_set_header Connection \"\";\n proxy_buffering off;\n\
         proxy_read_timeout 60s;\n }}\n }}\n}}\n"
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&file)
        .arg("-p")
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install nginx)");
    let up = eventually(10, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    assert!(up, "nginx did not start");
    Nginx {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
        _dir: dir,
    }
}

fn at(raw: &Raw, url: &str) -> Raw {
    let mut r = raw.clone_session();
    r.url = url.to_string();
    r
}

fn echo(tool: &str, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{"text":text}}}).to_string()
}

/// Starts the approval-needing call and reads its question: the id asked, and the stream.
async fn asked(
    raw: &Raw,
    text: &str,
) -> (
    String,
    impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>,
) {
    let resp = raw.post(echo("beta__echo", text)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    let question: Value =
        serde_json::from_str(seen.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(question["method"], "elicitation/create");
    (question["id"].as_str().unwrap().to_string(), stream)
}

fn yes(id: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"result":{"action":"accept","content":{"approve":true}}})
        .to_string()
}

async fn rest(stream: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>) -> String {
    let mut stream = std::pin::pin!(stream);
    let mut out = String::new();
    while let Some(chunk) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    out
}

#[tokio::test]
async fn three_instances_behind_a_balancer_behave_as_one() {
    let redis = common::redis::start();
    let (alpha, beta) = two_upstreams().await;
    let extra = format!(
        "sessions:\n  keys: [{SESSION_KEY}]\n  store: redis://127.0.0.1:{p}/0\nlimits:\n  store: redis://127.0.0.1:{p}/1\n",
        p = redis.port
    );
    let setup = || Setup {
        routes: vec![
            (
                "alpha",
                alpha.url.clone(),
                "limits: { per_user_rpm: 4, burst: 4 }",
            ),
            (
                "beta",
                beta.url.clone(),
                "tools:\n  echo: { approval: required }",
            ),
        ],
        extra: &extra,
    };
    let gws = [
        Gateway::start(setup()),
        Gateway::start(setup()),
        Gateway::start(setup()),
    ];
    let lb = nginx(free_port(), &[&gws[0], &gws[1], &gws[2]]).await;

    // Sessions: one session, calls through the balancer land on every instance.
    let client = Raw::open_asking(&lb.url).await;
    let names = client.tool_names().await;
    assert!(
        names.contains(&"alpha__echo".to_string()) && names.contains(&"beta__echo".to_string())
    );
    // Limits: one bucket of 4 for the three instances together.
    let mut statuses = Vec::new();
    for i in 0..7 {
        let (status, v) = client.rpc(echo("alpha__echo", &format!("n{i}"))).await;
        if status == 200 {
            assert_eq!(v["result"]["content"][0]["text"], format!("alpha: n{i}"));
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (4, 3), "{statuses:?}");
    // Refused by more than one instance: each knew what the others had let through.
    let mut refusing = 0;
    for gw in &gws {
        let text = gw.metrics_text().await;
        let refused: f64 = text
            .lines()
            .filter(|l| l.starts_with("mcp_edge_rate_limited_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        refusing += usize::from(refused > 0.0);
    }
    assert!(refusing >= 2, "refusals from {refusing} instance(s)");

    // Approvals: asked on instance 0, answered through instance 1; the answer of another
    // session through instance 2 is an unknown id.
    let on_0 = at(&client, &gws[0].url);
    let (id, stream) = asked(&on_0, "pay 1").await;
    let other = Raw::open_asking(&gws[2].url).await;
    assert_eq!(other.post(yes(&id)).await.status(), 400);
    assert_eq!(at(&client, &gws[1].url).post(yes(&id)).await.status(), 202);
    assert!(rest(stream).await.contains("beta: pay 1"));
    // Answered once: the same answer again, anywhere, is unknown.
    assert_eq!(at(&client, &gws[2].url).post(yes(&id)).await.status(), 400);
    // And through the balancer: the question and its answer on different instances.
    let (id, stream) = asked(&client, "pay 2").await;
    assert_eq!(client.post(yes(&id)).await.status(), 202);
    assert!(rest(stream).await.contains("beta: pay 2"));

    // DELETE through the balancer ends the session on every instance.
    let deleted = client.delete_session().await;
    assert_eq!(deleted.status(), 200);
    for gw in &gws {
        let (status, _) = at(&client, &gw.url)
            .rpc(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#)
            .await;
        assert_eq!(status, 404, "ended on {}", gw.url);
    }
}

#[tokio::test]
async fn an_oauth_login_through_the_balancer_completes_once_whichever_instances_serve_it() {
    let redis = common::redis::start();
    let idp = Idp::start(true).await;
    let alpha = spawn_upstream("alpha").await.unwrap();
    let port = free_port();
    let front = format!("http://127.0.0.1:{port}");
    let extra = format!(
        "public_url: {front}\nsessions:\n  keys: [{SESSION_KEY}]\n  store: redis://127.0.0.1:{}/0\n",
        redis.port
    );
    let gws = [
        oauth_gateway(&idp, &alpha.url, &extra),
        oauth_gateway(&idp, &alpha.url, &extra),
        oauth_gateway(&idp, &alpha.url, &extra),
    ];
    let lb = nginx(port, &[&gws[0], &gws[1], &gws[2]]).await;
    idp.issue_as(
        &lb.url,
        json!({"sub": "alice"}),
        &format!("{front}/oauth/callback"),
    );
    // Registration, consent page, consent, callback and token: round robin puts consecutive
    // steps on different instances.
    let web = no_redirects();
    let client_id = register(&web, front.as_str(), REDIRECT).await;
    let (to_idp, flow) = consent(&web, front.as_str(), &client_id, &[]).await;
    let callback = through_idp(&web, &to_idp).await;
    assert!(callback.starts_with(&front), "{callback}");
    let back = web
        .get(&callback)
        .header("cookie", &flow)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302, "the login completes");
    let code = query(back.headers()["location"].to_str().unwrap())["code"].clone();
    let granted = redeem(&web, front.as_str(), &client_id, &code).await;
    assert_eq!(granted.status(), 200);
    let tokens: Value = granted.json().await.unwrap();
    let raw = Raw::open_with(&lb.url, tokens["access_token"].as_str()).await;
    for i in 0..3 {
        let (_, v) = raw.rpc(echo("alpha__echo", &format!("via lb {i}"))).await;
        assert_eq!(
            v["result"]["content"][0]["text"],
            format!("alpha: via lb {i}")
        );
    }
    // The callback again, whichever instance it reaches: the login state was used.
    for _ in 0..3 {
        let again = web
            .get(&callback)
            .header("cookie", &flow)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 400);
        assert!(again.text().await.unwrap().contains("already used"));
    }
}
