//! Authorization, a pure step: the route's policy over the caller and the upstream's listing of
//! the tool. Hidden tools are unknown; a class beyond the caller's scopes is a 403 step-up;
//! `Ok(true)` means allowed once the user approves.

use crate::auth::metadata;
use crate::config::{Route, Snapshot};
use crate::error::Cause;
use crate::mcp::jsonrpc;
use crate::policy::{Caller, Class, Decision};
use serde_json::Value;

/// The refusal of a tool the caller may not know of: unlisted, hidden and denied look alike.
pub fn unknown_tool(exposed: &str) -> Cause {
    Cause::Unknown {
        what: "tool",
        name: exposed.to_string(),
        code: jsonrpc::INVALID_PARAMS,
    }
}

pub fn decide(
    snap: &Snapshot,
    caller: &Caller,
    route: &Route,
    method: &str,
    tool: Option<&str>,
    exposed: &str,
    listed: Option<&Value>,
) -> Result<bool, Cause> {
    let step_up = |what: String, class: Class| {
        let scopes = route.policy.scopes_for(class);
        Cause::InsufficientScope {
            what,
            challenge: metadata::scope_challenge(snap, &scopes),
            scopes,
        }
    };
    let Some(tool) = tool else {
        // Prompts, resources and completions are read-class.
        return if route.policy.grants(caller, Class::Read) {
            Ok(false)
        } else {
            Err(step_up(
                format!("`{method}` on `{}`", route.name),
                Class::Read,
            ))
        };
    };
    match route.policy.decide(caller, tool, listed) {
        Decision::Hidden => Err(unknown_tool(exposed)),
        Decision::NeedsScope { class, .. } => Err(step_up(
            format!("tool `{exposed}` ({} access)", class.as_str()),
            class,
        )),
        Decision::Allow { approval, .. } => Ok(approval),
    }
}

#[cfg(test)]
mod tests {
    use super::super::route::tests::{caller, snapshot};
    use super::*;

    fn decide_tool(scopes: &[&str], tool: &str, listed: Option<&Value>) -> Result<bool, Cause> {
        let snap = snapshot();
        let route = snap.route("alpha").unwrap();
        decide(
            &snap,
            &caller(&[], scopes),
            route,
            "tools/call",
            Some(tool),
            &format!("alpha__{tool}"),
            listed,
        )
    }

    #[test]
    fn denied_tools_are_unknown_and_classes_need_their_scopes() {
        assert!(matches!(
            decide_tool(&["d"], "purge", None),
            Err(Cause::Unknown { .. })
        ));
        assert!(matches!(
            decide_tool(&["r"], "ship", None),
            Err(Cause::InsufficientScope { .. })
        ));
        assert!(
            decide_tool(&["w"], "ship", None).unwrap(),
            "approval required"
        );
        assert!(!decide_tool(&["r"], "look", None).unwrap());
    }

    #[test]
    fn annotations_give_the_class_of_unconfigured_tools() {
        let read_only = serde_json::json!({"name": "q", "annotations": {"readOnlyHint": true}});
        let destructive =
            serde_json::json!({"name": "q", "annotations": {"destructiveHint": true}});
        assert!(decide_tool(&["r"], "q", Some(&read_only)).is_ok());
        match decide_tool(&["w"], "q", Some(&destructive)) {
            Err(Cause::InsufficientScope {
                scopes, challenge, ..
            }) => {
                assert_eq!(scopes, ["d"]);
                assert!(challenge.contains("insufficient_scope"), "{challenge}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_need_the_read_class() {
        let snap = snapshot();
        let route = snap.route("alpha").unwrap();
        let none = decide(
            &snap,
            &caller(&[], &[]),
            route,
            "resources/read",
            None,
            "x",
            None,
        );
        assert!(matches!(none, Err(Cause::InsufficientScope { .. })));
        let read = decide(
            &snap,
            &caller(&[], &["r"]),
            route,
            "resources/read",
            None,
            "x",
            None,
        );
        assert!(!read.unwrap());
    }
}
