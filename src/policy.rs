//! Who sees and may call what: pure functions of (route policy, caller, tool). Deny by default:
//! a route is visible only to the groups it names, a tool is callable only at a class the
//! caller's scopes grant, and a hidden tool is indistinguishable from one that does not exist.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// How much a tool can do: read < write < destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Read,
    Write,
    Destroy,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Destroy => "destroy",
        }
    }

    /// The class the upstream's annotations suggest: `destructiveHint` → destroy,
    /// `readOnlyHint` → read, otherwise write.
    pub fn from_annotations(tool: &Value) -> Class {
        let hint = |name: &str| tool["annotations"][name].as_bool() == Some(true);
        if hint("destructiveHint") {
            Class::Destroy
        } else if hint("readOnlyHint") {
            Class::Read
        } else {
            Class::Write
        }
    }
}

/// A verified caller (or the one anonymous caller of `auth.mode: none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            groups: Vec::new(),
            scopes: Vec::new(),
            tenant: None,
            client_id: None,
        }
    }
}

/// The scopes that grant each class on a route.
#[derive(Debug, Clone, Default)]
pub struct AccessScopes {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub destroy: Vec<String>,
}

impl AccessScopes {
    /// Scopes that grant `class` (a scope for a higher class grants the lower ones too).
    pub fn granting(&self, class: Class) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let tiers = [
            (Class::Read, &self.read),
            (Class::Write, &self.write),
            (Class::Destroy, &self.destroy),
        ];
        for (tier, scopes) in tiers {
            if tier >= class {
                out.extend(scopes.iter().map(String::as_str));
            }
        }
        out
    }
}

/// Per-tool overrides from the route file.
#[derive(Debug, Clone, Default)]
pub struct ToolRule {
    pub class: Option<Class>,
    pub approval: bool,
    pub deny: bool,
}

/// One route's policy, compiled from its file.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    /// Groups that see the route; `"*"` is every caller.
    pub visibility: Vec<String>,
    /// `None`: every class to whoever sees the route.
    pub access: Option<AccessScopes>,
    pub tools: HashMap<String, ToolRule>,
}

/// What a caller may do with one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Absent from lists, unknown when called.
    Hidden,
    Allow {
        class: Class,
        approval: bool,
    },
    /// Visible route, but the caller's scopes do not reach the tool's class: step-up.
    NeedsScope {
        class: Class,
        scopes: Vec<String>,
    },
}

impl RoutePolicy {
    pub fn visible_to(&self, caller: &Caller) -> bool {
        self.visibility
            .iter()
            .any(|g| g == "*" || caller.groups.iter().any(|cg| cg == g))
    }

    /// Whether the caller's scopes grant `class` here.
    pub fn grants(&self, caller: &Caller, class: Class) -> bool {
        match &self.access {
            None => true,
            Some(a) => a
                .granting(class)
                .iter()
                .any(|s| caller.scopes.iter().any(|cs| cs == s)),
        }
    }

    /// The scopes that would grant `class` here (for a step-up challenge).
    pub fn scopes_for(&self, class: Class) -> Vec<String> {
        self.access
            .as_ref()
            .map(|a| a.granting(class).into_iter().map(String::from).collect())
            .unwrap_or_default()
    }

    /// The highest class granted, if any.
    pub fn granted(&self, caller: &Caller) -> Option<Class> {
        [Class::Destroy, Class::Write, Class::Read]
            .into_iter()
            .find(|c| self.grants(caller, *c))
    }

    /// A tool's class: the route's override, else the upstream's annotations, else write.
    pub fn class_of(&self, tool: &str, listed: Option<&Value>) -> Class {
        self.tools
            .get(tool)
            .and_then(|r| r.class)
            .or_else(|| listed.map(Class::from_annotations))
            .unwrap_or(Class::Write)
    }

    pub fn decide(&self, caller: &Caller, tool: &str, listed: Option<&Value>) -> Decision {
        if !self.visible_to(caller) || self.tools.get(tool).is_some_and(|r| r.deny) {
            return Decision::Hidden;
        }
        let class = self.class_of(tool, listed);
        if self.grants(caller, class) {
            Decision::Allow {
                class,
                approval: self.tools.get(tool).is_some_and(|r| r.approval),
            }
        } else {
            Decision::NeedsScope {
                class,
                scopes: self.scopes_for(class),
            }
        }
    }
}

/// What `mcp-edge explain` prints: the routes and configured tools a caller would see, and at
/// which class, without a token or a running gateway.
pub fn explain(routes: &[(&str, &str, &RoutePolicy)], caller: &Caller) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "caller {}  groups [{}]  scopes [{}]",
        caller.subject,
        caller.groups.join(" "),
        caller.scopes.join(" ")
    );
    for (name, prefix, policy) in routes {
        if !policy.visible_to(caller) {
            let _ = writeln!(
                out,
                "route {name}: hidden (visible to [{}])",
                policy.visibility.join(" ")
            );
            continue;
        }
        let granted = policy.granted(caller).map_or("nothing", Class::as_str);
        let _ = writeln!(out, "route {name}: visible, grants {granted}");
        let mut tools: Vec<_> = policy.tools.keys().collect();
        tools.sort();
        for tool in tools {
            let line = match policy.decide(caller, tool, None) {
                Decision::Hidden => "denied (hidden from everyone)".to_string(),
                Decision::Allow { class, approval } => format!(
                    "{}: allowed{}",
                    class.as_str(),
                    if approval {
                        ", each call approved by the user"
                    } else {
                        ""
                    }
                ),
                Decision::NeedsScope { class, scopes } => {
                    format!("{}: needs one of [{}]", class.as_str(), scopes.join(" "))
                }
            };
            let _ = writeln!(out, "  {prefix}__{tool}  {line}");
        }
        let _ = writeln!(
            out,
            "  other tools: class from the upstream's annotations (readOnlyHint: read, destructiveHint: destroy, else write); {granted} and below allowed"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller(groups: &[&str], scopes: &[&str]) -> Caller {
        Caller {
            subject: "alice".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenant: None,
            client_id: None,
        }
    }

    fn policy() -> RoutePolicy {
        let mut tools = HashMap::new();
        tools.insert(
            "search".into(),
            ToolRule {
                class: Some(Class::Read),
                ..Default::default()
            },
        );
        tools.insert(
            "export".into(),
            ToolRule {
                class: Some(Class::Write),
                approval: true,
                deny: false,
            },
        );
        tools.insert(
            "drop".into(),
            ToolRule {
                deny: true,
                ..Default::default()
            },
        );
        RoutePolicy {
            visibility: vec!["team:data".into()],
            access: Some(AccessScopes {
                read: vec!["mcp:read".into()],
                write: vec!["mcp:write".into()],
                destroy: vec!["mcp:admin".into()],
            }),
            tools,
        }
    }

    #[test]
    fn visibility_deny_classes_and_step_up() {
        let p = policy();
        let reader = caller(&["team:data"], &["mcp:read"]);
        assert_eq!(
            p.decide(&caller(&["team:other"], &["mcp:admin"]), "search", None),
            Decision::Hidden
        );
        assert_eq!(p.decide(&reader, "drop", None), Decision::Hidden);
        assert_eq!(
            p.decide(&reader, "search", None),
            Decision::Allow {
                class: Class::Read,
                approval: false
            }
        );
        assert_eq!(
            p.decide(&reader, "export", None),
            Decision::NeedsScope {
                class: Class::Write,
                scopes: vec!["mcp:write".into(), "mcp:admin".into()]
            }
        );
        let admin = caller(&["team:data"], &["mcp:admin"]);
        assert_eq!(
            p.decide(&admin, "export", None),
            Decision::Allow {
                class: Class::Write,
                approval: true
            }
        );
        assert_eq!(p.granted(&admin), Some(Class::Destroy));
        assert_eq!(p.granted(&caller(&["team:data"], &[])), None);
    }

    #[test]
    fn annotations_decide_unnamed_tools() {
        let p = policy();
        let reader = caller(&["team:data"], &["mcp:read"]);
        let ro = json!({"name":"x","annotations":{"readOnlyHint":true}});
        let destructive = json!({"name":"y","annotations":{"destructiveHint":true}});
        let plain = json!({"name":"z"});
        assert_eq!(p.class_of("x", Some(&ro)), Class::Read);
        assert_eq!(p.class_of("y", Some(&destructive)), Class::Destroy);
        assert_eq!(p.class_of("z", Some(&plain)), Class::Write);
        assert_eq!(
            p.class_of("search", Some(&destructive)),
            Class::Read,
            "the route's override wins"
        );
        assert!(matches!(
            p.decide(&reader, "x", Some(&ro)),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            p.decide(&reader, "y", Some(&destructive)),
            Decision::NeedsScope {
                class: Class::Destroy,
                ..
            }
        ));
    }

    #[test]
    fn no_access_section_grants_everything_to_the_visible() {
        let p = RoutePolicy {
            visibility: vec!["*".into()],
            ..Default::default()
        };
        let anyone = Caller::anonymous();
        assert!(p.visible_to(&anyone));
        assert_eq!(p.granted(&anyone), Some(Class::Destroy));
        assert!(
            !RoutePolicy::default().visible_to(&anyone),
            "no visibility: nobody"
        );
    }
}
