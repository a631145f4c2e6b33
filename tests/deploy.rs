//! The container recipe and the Kubernetes manifests in `deploy/`: parsed, cross-checked against
//! each other (labels, ports, Secret keys, mounts), and the gateway config they carry passes
//! `mcp-edge check` with the routes from their ConfigMap and the Secret's values as environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every document of every manifest, by `kind/name`.
fn manifests() -> HashMap<String, Value> {
    let mut all = HashMap::new();
    for entry in std::fs::read_dir(repo("deploy/k8s")).expect("deploy/k8s") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            let kind = v["kind"].as_str().expect("kind").to_string();
            let name = v["metadata"]["name"].as_str().expect("name").to_string();
            assert!(
                all.insert(format!("{kind}/{name}"), v).is_none(),
                "{kind}/{name} twice"
            );
        }
    }
    all
}

fn get<'a>(all: &'a HashMap<String, Value>, key: &str) -> &'a Value {
    all.get(key)
        .unwrap_or_else(|| panic!("deploy/k8s has no {key}"))
}

fn str_map(v: &Value) -> HashMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap_or_default().to_string(),
                        v.as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_deployment_runs_three_hardened_replicas_ready_on_readyz() {
    let all = manifests();
    let deploy = get(&all, "Deployment/mcp-edge");
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(3));
    let labels = str_map(&spec["template"]["metadata"]["labels"]);
    assert_eq!(str_map(&spec["selector"]["matchLabels"]), labels);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    let ports: HashMap<String, u64> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name").to_string(),
                p["containerPort"].as_u64().expect("port"),
            )
        })
        .collect();
    let probe = &c["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"].as_str(), Some("/readyz"));
    let probe_port = ports[probe["port"].as_str().expect("named probe port")];

    // The config the pod reads: admin where the probe looks, MCP where the Service sends.
    let config = get(&all, "ConfigMap/mcp-edge-config")["data"]["mcp-edge.yaml"]
        .as_str()
        .expect("mcp-edge.yaml in the config map");
    let config: Value = serde_yaml::from_str(config).expect("config YAML");
    let port_of = |listen: &Value| -> u64 {
        let l = listen.as_str().expect("listen");
        l.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    };
    assert_eq!(port_of(&config["admin"]["listen"]), probe_port);
    assert_eq!(port_of(&config["listen"]), ports["mcp"]);

    let service = get(&all, "Service/mcp-edge");
    assert_eq!(str_map(&service["spec"]["selector"]), labels);
    let target = service["spec"]["ports"][0]["targetPort"].as_str();
    assert!(
        target.is_some_and(|t| ports.contains_key(t)),
        "the Service targets a port the container has"
    );

    // Every mount has its volume; the writable one is /tmp, where upgrade_sock lives.
    let volumes: Vec<&str> = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().expect("volume name"))
        .collect();
    let mounts = c["volumeMounts"].as_sequence().expect("mounts");
    for m in mounts {
        assert!(volumes.contains(&m["name"].as_str().expect("mount name")));
    }
    let routes_mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == config["routes_dir"].as_str())
        .expect("routes_dir is a mounted volume");
    let routes_volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == routes_mount["name"])
        .expect("routes volume");
    assert_eq!(
        routes_volume["configMap"]["name"].as_str(),
        Some("mcp-edge-routes")
    );
    let sock = config["server"]["upgrade_sock"].as_str().expect("sock");
    assert!(mounts.iter().any(|m| {
        m["readOnly"].as_bool() != Some(true)
            && m["mountPath"]
                .as_str()
                .is_some_and(|p| sock.starts_with(&format!("{p}/")))
    }));

    // Redis and PostgreSQL are where the config says they are.
    let store = config["sessions"]["store"]
        .as_str()
        .expect("sessions.store");
    assert!(store.starts_with("redis://mcp-edge-redis:"));
    get(&all, "Service/mcp-edge-redis");
    get(&all, "Deployment/mcp-edge-redis");
    let audit = config["audit"]["sinks"][0]["postgres"]["url"]
        .as_str()
        .expect("postgres sink");
    assert!(audit.contains("host=mcp-edge-postgres"));
    get(&all, "Service/mcp-edge-postgres");
    get(&all, "StatefulSet/mcp-edge-postgres");
}

#[test]
fn the_configmap_config_passes_check_with_the_secret_as_environment() {
    let all = manifests();
    let secret = str_map(&get(&all, "Secret/mcp-edge-keys")["stringData"]);
    let deploy = get(&all, "Deployment/mcp-edge");
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    let mut env = HashMap::new();
    for e in c["env"].as_sequence().expect("env") {
        let name = e["name"].as_str().expect("env name");
        let key = e["valueFrom"]["secretKeyRef"]["key"]
            .as_str()
            .expect("env from the Secret");
        let value = secret
            .get(key)
            .unwrap_or_else(|| panic!("the Secret has no {key}"));
        env.insert(name.to_string(), value.clone());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = get(&all, "ConfigMap/mcp-edge-config")["data"]["mcp-edge.yaml"]
        .as_str()
        .expect("config");
    // The pod's paths, moved under the temp dir.
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&routes).expect("routes dir");
    let config = config.replace(
        "routes_dir: /etc/mcp-edge-routes",
        &format!("routes_dir: {}", routes.display()),
    );
    assert!(!config.contains("/etc/mcp-edge-routes"));
    // The cluster's names, which `check` resolves and this machine cannot.
    let config = cluster_names_here(&config);
    let file = dir.path().join("mcp-edge.yaml");
    std::fs::write(&file, config).expect("write config");
    let route_files = str_map(&get(&all, "ConfigMap/mcp-edge-routes")["data"]);
    assert!(!route_files.is_empty());
    for (name, text) in &route_files {
        std::fs::write(routes.join(name), cluster_names_here(text)).expect("write route");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(&file)
        .envs(&env)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the Secret's values the same config is refused: the keys really come from it.
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("run check");
    assert!(!out.status.success());
}

#[test]
fn the_image_is_built_in_stages_and_runs_as_a_user() {
    let text = std::fs::read_to_string(repo("deploy/Dockerfile")).expect("Dockerfile");
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage: build, then a small runtime");
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    let uid = user[5..].split(':').next().expect("uid");
    assert_ne!(uid, "0");
    assert_ne!(uid, "root");
    // The last stage's entry point is the binary the build stage copied in.
    let copied = text
        .lines()
        .find(|l| l.starts_with("COPY --from=build"))
        .expect("binary copied from the build stage");
    let binary = copied.split_whitespace().last().expect("destination");
    assert!(text.contains(&format!("ENTRYPOINT [\"{binary}\"]")));
    // Every path the build copies exists (the recipe builds this tree).
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(repo(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    // The Deployment runs the image's binary with a config at the mounted path.
    let all = manifests();
    let c = &get(&all, "Deployment/mcp-edge")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"/etc/mcp-edge/mcp-edge.yaml"));
}

/// A manifest's text with the names only the cluster resolves pointed at this machine.
fn cluster_names_here(text: &str) -> String {
    let mut text = text.to_string();
    for name in ["login.example.com", "tickets-mcp.support.svc"] {
        text = text.replace(name, "localhost");
    }
    text
}
