//! Configuration: every shipped file is valid, and a broken one is reported whole, each error
//! with its file, line where known, and YAML path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_edge::config::snapshot::IdpEndpoints;
use mcp_edge::config::{self, Source};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn every_shipped_config_and_route_is_valid() {
    let snap = config::load(&repo("conf/mcp-edge.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let shipped_routes = std::fs::read_dir(repo("routes")).expect("routes").count();
    assert_eq!(
        snap.routes.len(),
        shipped_routes,
        "every file in routes/ is a route"
    );
    assert!(snap.route("catalog").is_some());
    assert!(
        snap.resolve_name("tix__open_ticket").is_some(),
        "tool_prefix is honoured"
    );

    let profiles = std::fs::read_dir(repo("conf/oauth-profiles")).expect("profiles");
    let mut names = Vec::new();
    for entry in profiles {
        let file = entry.expect("entry").path();
        config::check_oauth_profile(&file).unwrap_or_else(|e| panic!("{e}"));
        names.push(file.file_stem().unwrap().to_string_lossy().to_string());
    }
    names.sort();
    assert_eq!(names, ["auth0", "entra", "generic", "keycloak", "okta"]);

    for entry in std::fs::read_dir(repo("conf")).expect("conf") {
        let file = entry.expect("entry").path();
        if file.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        config::compile(
            &Source {
                file: file.clone(),
                text,
            },
            &[],
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(repo("conf/mcp-edge.yaml"))
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_every_error_with_file_and_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("conf");
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(&routes).expect("mkdir");
    std::fs::write(
        conf.join("mcp-edge.yaml"),
        "listen: nowhere\npublic_url: ftp://example.com\nsessions:\n  keys: [short]\naudit:\n  sinks:\n    - jsonl: { dir: audit }\n",
    )
    .expect("write");
    std::fs::write(
        routes.join("a.yaml"),
        "name: a\nupstream:\n  url: http://127.0.0.1:1/mcp\nacess: {}\n",
    )
    .expect("write");
    std::fs::write(
        routes.join("b.yaml"),
        "name: Bad_Name\nupstream:\n  url: ftp://127.0.0.1/mcp\n",
    )
    .expect("write");
    std::fs::write(
        routes.join("c.yaml"),
        "name: c\ntool_prefix: shared\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
    )
    .expect("write");
    std::fs::write(
        routes.join("d.yaml"),
        "name: d\ntool_prefix: shared\nupstream:\n  url: http://127.0.0.1:1/mcp\n  timeout: soon\n",
    )
    .expect("write");
    std::fs::write(routes.join("notes.txt"), "not a route").expect("write");

    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(conf.join("mcp-edge.yaml"))
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "mcp-edge.yaml: listen: `nowhere` is not an ip:port address",
        "mcp-edge.yaml: public_url: `ftp://example.com` is not an http(s) URL",
        "mcp-edge.yaml: sessions.keys[0]: must be 32 random bytes",
        "mcp-edge.yaml: audit.chain_key: required when there are audit sinks",
        "a.yaml:4:1: acess: unknown field `acess`, expected one of",
        "b.yaml: name: `Bad_Name` must be 1-32 characters",
        "b.yaml: upstream.url: scheme `ftp` is not supported",
        "d.yaml:5:12: upstream.timeout: invalid value: string \"soon\", expected a duration\n",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(!err.contains("notes.txt"), "only YAML files are routes");
}

#[test]
fn colliding_prefixes_are_a_config_error() {
    let gateway = Source {
        file: "g.yaml".into(),
        text: "listen: 127.0.0.1:0\npublic_url: http://localhost\n".into(),
    };
    let route = |file: &str, text: &str| Source {
        file: file.into(),
        text: text.into(),
    };
    let err = config::compile(
        &gateway,
        &[
            route(
                "c.yaml",
                "name: c\ntool_prefix: shared\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
            ),
            route(
                "d.yaml",
                "name: d\ntool_prefix: shared\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
            ),
            route(
                "e.yaml",
                "name: c\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
            ),
            route(
                "f.yaml",
                "name: f\ntool_prefix: \"\"\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
            ),
            route(
                "g.yaml",
                "name: g\ntool_prefix: \"\"\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
            ),
        ],
    )
    .expect_err("collisions");
    let text = err.to_string();
    assert!(
        text.contains("d.yaml: tool_prefix: prefix `shared` is already used by c.yaml"),
        "{text}"
    );
    assert!(
        text.contains("e.yaml: name: `c` is already used by c.yaml"),
        "{text}"
    );
    assert!(
        text.contains("g.yaml: tool_prefix: no prefix (`\"\"`) is already used by f.yaml"),
        "only one route serves its own names: {text}"
    );
}

#[test]
fn no_authentication_on_a_non_loopback_listener_needs_an_explicit_yes() {
    let compile = |text: &str| {
        let gateway = Source {
            file: "g.yaml".into(),
            text: text.into(),
        };
        config::compile(&gateway, &[])
    };
    let open = "listen: 0.0.0.0:8080\npublic_url: http://localhost\nauth: { mode: none }\n";
    let err = compile(open).expect_err("refused").to_string();
    assert!(
        err.contains("g.yaml: auth.mode: `none` on the non-loopback listener `0.0.0.0:8080`"),
        "{err}"
    );
    assert!(
        compile(
            "listen: 0.0.0.0:8080\npublic_url: http://localhost\nauth: { mode: none, allow_unauthenticated: true }\n"
        )
        .is_ok(),
        "an explicit yes is taken"
    );
    assert!(
        compile("listen: 127.0.0.1:8080\npublic_url: http://localhost\n").is_ok(),
        "loopback needs no yes"
    );
    assert!(
        compile("listen: \"[::1]:8080\"\npublic_url: http://localhost\n").is_ok(),
        "nor IPv6 loopback"
    );
}

#[test]
fn route_files_read_only_their_own_secrets() {
    let dir = tempfile::tempdir().expect("tmp");
    let secrets = dir.path().join("route-secrets");
    std::fs::create_dir_all(secrets.join("cat")).expect("mkdir");
    std::fs::write(secrets.join("cat/token"), "team-token\n").expect("write");
    std::fs::write(dir.path().join("gateway.key"), "gateway secret\n").expect("write");
    let gateway = Source {
        file: dir.path().join("g.yaml"),
        text:
            "listen: 127.0.0.1:0\npublic_url: http://localhost\nroute_secrets_dir: route-secrets\n"
                .into(),
    };
    let route = |header: &str| Source {
        file: dir.path().join("routes/cat.yaml"),
        text: format!(
            "name: cat\nupstream:\n  url: http://127.0.0.1:1/mcp\n  headers:\n    x-key: \"{header}\"\n"
        ),
    };
    let refused = [
        (
            "${env:MCP_EDGE_IDP_SECRET}",
            "only environment variables named `MCP_EDGE_ROUTE_CAT_…`",
        ),
        (
            "${env:MCP_EDGE_ROUTE_DOG_TOKEN}",
            "only environment variables named `MCP_EDGE_ROUTE_CAT_…`",
        ),
        ("${file:GATEWAY}", "only secret files below"),
        (
            "${file:SECRETS/cat/../../gateway.key}",
            "only secret files below",
        ),
    ];
    for (reference, why) in refused {
        let reference = reference
            .replace(
                "GATEWAY",
                &dir.path().join("gateway.key").display().to_string(),
            )
            .replace("SECRETS", &secrets.display().to_string());
        let err = config::compile(&gateway, &[route(&reference)])
            .expect_err(&reference)
            .to_string();
        assert!(
            err.contains("cat.yaml: upstream.headers.x-key: a route file may read")
                && err.contains(why),
            "{reference}: {err}"
        );
        assert!(
            !err.contains("gateway secret"),
            "no secret in the error: {err}"
        );
    }
    let own = format!("${{file:{}}}", secrets.join("cat/token").display());
    let snap = config::compile(&gateway, &[route(&own)]).expect("its own secret file");
    assert_eq!(
        snap.route("cat").expect("cat").headers,
        vec![("x-key".to_string(), "team-token".to_string())]
    );

    // `check` takes a route's own variable, given to the process.
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("routes")).expect("mkdir");
    std::fs::write(
        conf.join("g.yaml"),
        "listen: 127.0.0.1:0\npublic_url: http://localhost\nroutes_dir: routes\n",
    )
    .expect("write");
    std::fs::write(
        conf.join("routes/cat.yaml"),
        "name: cat\nupstream:\n  url: http://127.0.0.1:1/mcp\n  headers: { x-key: \"${env:MCP_EDGE_ROUTE_CAT_TOKEN}\" }\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(conf.join("g.yaml"))
        .env("MCP_EDGE_ROUTE_CAT_TOKEN", "t")
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn oauth_profiles_are_built_in_and_a_file_beside_the_config_overrides_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("routes")).expect("mkdir");
    let config = |profile: &str| {
        format!(
            "listen: 127.0.0.1:0\npublic_url: http://127.0.0.1\nauth:\n  mode: jwt\n  issuer: https://login.example.com\n  jwks_uri: https://login.example.com/keys\n\
             oauth_proxy:\n  profile: {profile}\n  vars: {{ tenant: contoso }}\n  client_id: gateway\n"
        )
    };
    // Offline: the IdP's hosts are not resolved (this machine has no outside DNS).
    let check = |text: String| {
        std::fs::write(conf.join("mcp-edge.yaml"), text).expect("write");
        config::compile::offline(|| config::load(&conf.join("mcp-edge.yaml")))
    };
    // No `oauth-profiles/` beside the configuration: the built-in profile serves.
    let snap = check(config("entra")).unwrap_or_else(|e| panic!("{e}"));
    let authorize = authorize_url(&snap);
    assert!(
        authorize.contains("login.microsoftonline.com/contoso/"),
        "{authorize}"
    );
    // An unknown name says which are built in.
    let err = check(config("nosuch"))
        .expect_err("unknown profile")
        .to_string();
    assert!(
        err.contains("built in are auth0, entra, generic, keycloak, okta"),
        "{err}"
    );
    // A file of the same name beside the configuration overrides the built-in one.
    std::fs::create_dir_all(conf.join("oauth-profiles")).expect("mkdir");
    std::fs::write(
        conf.join("oauth-profiles/entra.yaml"),
        "name: Entra (local)\nissuer: https://idp.internal/{tenant}\nauthorization_endpoint: https://idp.internal/{tenant}/authorize\ntoken_endpoint: https://idp.internal/{tenant}/token\nresource: strip\n",
    )
    .expect("write");
    let snap = check(config("entra")).unwrap_or_else(|e| panic!("{e}"));
    let authorize = authorize_url(&snap);
    assert!(
        authorize.starts_with("https://idp.internal/contoso/"),
        "{authorize}"
    );
    // The generic profile names no endpoints: they come from the issuer's discovery document.
    let snap =
        check(config("generic").replace("tenant: contoso", "issuer: 'https://idp.example/'"))
            .unwrap_or_else(|e| panic!("{e}"));
    match &snap.oauth.as_ref().expect("oauth proxy").endpoints {
        IdpEndpoints::Discovered(document) => assert_eq!(
            document.url,
            "https://idp.example/.well-known/openid-configuration"
        ),
        IdpEndpoints::Fixed(e) => panic!("generic named endpoints: {}", e.authorize_url),
    }
}

fn authorize_url(snap: &config::Snapshot) -> String {
    match &snap.oauth.as_ref().expect("oauth proxy").endpoints {
        IdpEndpoints::Fixed(e) => e.authorize_url.clone(),
        IdpEndpoints::Discovered(_) => panic!("the profile names its endpoints"),
    }
}

#[test]
fn scopes_supported_default_to_the_scopes_routes_name() {
    let gateway = Source {
        file: "g.yaml".into(),
        text: "listen: 127.0.0.1:0\npublic_url: http://localhost\nauth:\n  mode: jwt\n  issuer: https://login.example.com\n".into(),
    };
    let route = Source {
        file: "r.yaml".into(),
        text: "name: data\nupstream:\n  url: http://127.0.0.1:1/mcp\naccess: { read: [mcp:read], write: [mcp:write, mcp:read], destroy: [mcp:admin] }\n".into(),
    };
    let snap = config::compile::offline(|| config::compile(&gateway, &[route]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        snap.scopes_supported().unwrap(),
        ["mcp:admin", "mcp:read", "mcp:write"]
    );
}
