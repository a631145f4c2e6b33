//! Routing, a pure step: which route a call goes to, and the upstream's own name or URI for what
//! the client named. On `/mcp` exposed names are resolved through the snapshot's exact maps
//! (never by splitting strings); on `/servers/{route}/mcp` the route is the door's and names are
//! the upstream's own. A route the caller cannot see does not exist for them.

use crate::config::{Route, Snapshot};
use crate::ctx::Door;
use crate::error::{Cause, RESOURCE_NOT_FOUND};
use crate::mcp::jsonrpc::{self, RawParams};
use crate::policy::Caller;
use serde_json::Value;
use serde_json::value::RawValue;

/// Methods that go to the one upstream that owns what they name.
pub fn is_routed(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
    )
}

/// Where a call goes.
#[derive(Debug)]
pub struct Target<'s> {
    pub route: &'s Route,
    /// The upstream's own name of the tool or prompt (none for resources and completions).
    pub upstream_name: Option<String>,
    /// The parameter to replace before forwarding, with the upstream's form of it.
    pub rewrite: Option<(&'static str, Box<RawValue>)>,
    /// What the stateless revision's `Mcp-Name` says upstream: the upstream's own name or URI.
    pub mcp_name: Option<String>,
}

fn unknown(what: &'static str, name: &str, stateless: bool) -> Cause {
    let code = if what == "resource" && !stateless {
        RESOURCE_NOT_FOUND
    } else {
        jsonrpc::INVALID_PARAMS
    };
    Cause::Unknown {
        what,
        name: name.to_string(),
        code,
    }
}

/// The parameter that names what a routed method is about.
pub fn name_key(method: &str) -> &'static str {
    match method {
        "tools/call" | "prompts/get" => "name",
        "completion/complete" => "ref",
        _ => "uri",
    }
}

/// `named`: the method's `name_key` parameter as the client sent it (decoded once, by the
/// caller, which also records it).
pub fn resolve<'s>(
    snap: &'s Snapshot,
    caller: &Caller,
    door: Door,
    method: &str,
    named: Option<&str>,
    params: &RawParams<'_>,
    stateless: bool,
) -> Result<Target<'s>, Cause> {
    let key = name_key(method);
    let what = match method {
        "tools/call" => "tool",
        "prompts/get" => "prompt",
        "completion/complete" => "reference",
        _ => "resource",
    };
    let required = || Cause::InvalidParams(format!("`{key}` is required"));
    if let Door::Server(i) = door {
        let route = snap
            .routes
            .get(i)
            .ok_or_else(|| unknown(what, "", stateless))?;
        let upstream_name = match key {
            "name" => Some(named.ok_or_else(required)?.to_string()),
            _ => None,
        };
        return Ok(Target {
            route,
            mcp_name: upstream_name.clone(),
            upstream_name,
            rewrite: None,
        });
    }
    let find = |field: &str, exposed: &str| {
        let found = if field == "uri" {
            snap.resolve_uri(exposed)
        } else {
            snap.resolve_name(exposed)
        };
        found
            .filter(|(r, _)| r.policy.visible_to(caller))
            .map(|(r, upstream)| (r, upstream.to_string()))
            .ok_or_else(|| unknown(what, exposed, stateless))
    };
    if key == "ref" {
        let mut reference: Value = params
            .get("ref")
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default();
        let field = if reference["type"] == "ref/resource" {
            "uri"
        } else {
            "name"
        };
        let exposed = reference[field].as_str().unwrap_or_default().to_string();
        let (route, upstream) = find(field, &exposed)?;
        reference[field] = Value::String(upstream);
        return Ok(Target {
            route,
            upstream_name: None,
            rewrite: Some(("ref", jsonrpc::to_raw(&reference))),
            mcp_name: None,
        });
    }
    let exposed = named.ok_or_else(required)?;
    let (route, upstream) = find(key, exposed)?;
    Ok(Target {
        route,
        rewrite: Some((key, jsonrpc::to_raw(&upstream))),
        upstream_name: (key == "name").then(|| upstream.clone()),
        mcp_name: Some(upstream),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{Source, compile};
    use std::path::PathBuf;

    /// Two routes: `alpha` for everyone, `beta` for group `team:b` only.
    pub fn snapshot() -> Snapshot {
        let gateway = Source {
            file: PathBuf::from("/t/mcp-edge.yaml"),
            text: "listen: 127.0.0.1:0\npublic_url: http://127.0.0.1:1\nadmin: { listen: 127.0.0.1:0 }\nauth: { mode: none }\n".into(),
        };
        let route = |name: &str, vis: &str, extra: &str| Source {
            file: PathBuf::from(format!("/t/routes/{name}.yaml")),
            text: format!(
                "name: {name}\nupstream: {{ url: http://127.0.0.1:9/mcp }}\nvisibility: [\"{vis}\"]\n{extra}"
            ),
        };
        compile(
            &gateway,
            &[
                route(
                    "alpha",
                    "*",
                    "access: { read: [r], write: [w], destroy: [d] }\ntools:\n  purge: { deny: true }\n  ship: { access: write, approval: required }\n  look: { access: read }\nlimits: { per_user_rpm: 60, burst: 2, per_tool: { ship: { per_user_rpm: 6 } } }\n",
                ),
                route("beta", "team:b", ""),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn caller(groups: &[&str], scopes: &[&str]) -> Caller {
        Caller {
            subject: "alice".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenant: None,
            client_id: None,
        }
    }

    fn resolve_in<'s>(
        snap: &'s Snapshot,
        caller: &Caller,
        door: Door,
        method: &str,
        params: &RawParams<'_>,
        stateless: bool,
    ) -> Result<Target<'s>, Cause> {
        let named = jsonrpc::str_param(params, name_key(method));
        resolve(
            snap,
            caller,
            door,
            method,
            named.as_deref(),
            params,
            stateless,
        )
    }

    fn params(json: &str) -> RawParams<'static> {
        let json: &'static str = Box::leak(json.to_string().into_boxed_str());
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        jsonrpc::split_params(Some(Box::leak(Box::new(raw)))).unwrap()
    }

    #[test]
    fn exposed_names_resolve_exactly_and_rewrite_to_the_upstream_name() {
        let snap = snapshot();
        let p = params(r#"{"name":"alpha__echo","arguments":{}}"#);
        let t = resolve_in(
            &snap,
            &caller(&[], &[]),
            Door::Merged,
            "tools/call",
            &p,
            false,
        )
        .unwrap();
        assert_eq!(t.route.name, "alpha");
        assert_eq!(t.upstream_name.as_deref(), Some("echo"));
        assert_eq!(t.rewrite.unwrap().1.get(), "\"echo\"");
        for bad in ["alpha_echo", "ALPHA__echo", "gamma__echo", "echo"] {
            let p = params(&format!(r#"{{"name":"{bad}"}}"#));
            let e = resolve_in(
                &snap,
                &caller(&[], &[]),
                Door::Merged,
                "tools/call",
                &p,
                false,
            );
            assert!(matches!(e, Err(Cause::Unknown { .. })), "{bad}");
        }
    }

    #[test]
    fn an_invisible_route_is_unknown_and_resources_keep_their_era_code() {
        let snap = snapshot();
        let p = params(r#"{"name":"beta__echo"}"#);
        let hidden = resolve_in(
            &snap,
            &caller(&[], &[]),
            Door::Merged,
            "tools/call",
            &p,
            false,
        );
        assert!(matches!(hidden, Err(Cause::Unknown { what: "tool", .. })));
        let seen = resolve_in(
            &snap,
            &caller(&["team:b"], &[]),
            Door::Merged,
            "tools/call",
            &p,
            false,
        );
        assert_eq!(seen.unwrap().route.name, "beta");
        let p = params(r#"{"uri":"nowhere+file:///x"}"#);
        for (stateless, code) in [(false, RESOURCE_NOT_FOUND), (true, jsonrpc::INVALID_PARAMS)] {
            match resolve_in(
                &snap,
                &caller(&[], &[]),
                Door::Merged,
                "resources/read",
                &p,
                stateless,
            ) {
                Err(Cause::Unknown { code: c, .. }) => assert_eq!(c, code),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_server_door_keeps_the_upstream_names_and_its_route() {
        let snap = snapshot();
        let p = params(r#"{"name":"echo"}"#);
        let t = resolve_in(
            &snap,
            &caller(&[], &[]),
            Door::Server(0),
            "tools/call",
            &p,
            false,
        )
        .unwrap();
        assert_eq!(
            (t.route.name.as_str(), t.upstream_name.as_deref()),
            ("alpha", Some("echo"))
        );
        assert!(t.rewrite.is_none(), "the body goes upstream as sent");
        let missing = resolve_in(
            &snap,
            &caller(&[], &[]),
            Door::Server(0),
            "tools/call",
            &params("{}"),
            false,
        );
        assert!(matches!(missing, Err(Cause::InvalidParams(_))));
    }
}
