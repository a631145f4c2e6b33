//! Limiting: which buckets a call draws from (pure: the caller's, the route's, the tool's, from
//! the snapshot; a fan-out's own), one token from each (in the shared store when one is
//! configured and answers, else locally), then the upstream's concurrency cap. The guard returned holds the call's place
//! under the cap until it is dropped.

use super::Shared;
use crate::config::{Route, Snapshot};
use crate::error::Cause;
use crate::limits::{Limiter, Refusal, Scope};

/// The buckets a call to `tool` on `route` draws from, narrowest first.
pub fn buckets<'s>(
    snap: &'s Snapshot,
    route: &'s Route,
    tool: Option<&str>,
) -> impl Iterator<Item = (Scope, &'s Limiter)> {
    let tool_limit = tool.and_then(|t| route.tool_limits.get(t));
    tool_limit
        .map(|l| (Scope::Tool, l))
        .into_iter()
        .chain(route.limit.as_ref().map(|l| (Scope::Route, l)))
        .chain(snap.caller_limit.as_ref().map(|l| (Scope::Caller, l)))
}

/// The shared store's key of a bucket: scope, route, tool and caller, so instances agree on it.
pub fn shared_key(scope: Scope, route: &str, tool: Option<&str>, caller: u64) -> String {
    match scope {
        Scope::Caller => format!("mcp-edge:bucket:caller:{caller:016x}"),
        Scope::FanOut => format!("mcp-edge:bucket:fan-out:{caller:016x}"),
        Scope::Route => format!("mcp-edge:bucket:route:{route}:{caller:016x}"),
        Scope::Tool => format!(
            "mcp-edge:bucket:tool:{route}:{}:{caller:016x}",
            tool.unwrap_or_default()
        ),
    }
}

/// Takes one token from each bucket, locally.
fn take_local<'l>(
    buckets: impl Iterator<Item = (Scope, &'l Limiter)>,
    caller: u64,
) -> Result<(), Refusal> {
    for (scope, limiter) in buckets {
        limiter.check(caller).map_err(|retry_after| Refusal {
            scope,
            rate: limiter.rate,
            retry_after,
        })?;
    }
    Ok(())
}

/// Admits a request that fans out to every upstream (`initialize`, merged lists, broadcasts),
/// or says that the caller's fan-out bucket refused it.
pub async fn admit_fan_out(sh: &Shared, snap: &Snapshot, caller: u64) -> Result<(), Cause> {
    let Some(limiter) = &snap.fan_out_limit else {
        return Ok(());
    };
    let key = shared_key(Scope::FanOut, "", None, caller);
    take(sh, &[(Scope::FanOut, limiter, key)], caller).await
}

/// Admits a call or says which limit refused it.
pub async fn admit(
    sh: &Shared,
    snap: &Snapshot,
    route: &Route,
    tool: Option<&str>,
    caller: u64,
) -> Result<Option<pingora_limits::inflight::Guard>, Cause> {
    let keyed: Vec<_> = buckets(snap, route, tool)
        .map(|(scope, l)| (scope, l, shared_key(scope, &route.name, tool, caller)))
        .collect();
    take(sh, &keyed, caller).await?;
    let Some(max) = route.max_concurrency else {
        return Ok(None);
    };
    let (guard, count) = sh.inflight.incr(route.name.as_str(), 1);
    if count > max as isize {
        sh.metrics
            .rate_limited
            .with_label_values(&["concurrency"])
            .inc();
        return Err(Cause::UpstreamBusy {
            route: route.name.clone(),
            max,
        });
    }
    Ok(Some(guard))
}

/// Takes one token from each bucket: in the shared store when there is one and it answers,
/// else locally; a refusal is counted by the bucket's scope.
async fn take(sh: &Shared, keyed: &[(Scope, &Limiter, String)], caller: u64) -> Result<(), Cause> {
    let mut verdict = None;
    if let Some(shared) = &sh.shared_buckets {
        match shared.check(keyed).await {
            Ok(v) => verdict = Some(v),
            Err(e) => {
                sh.metrics.limit_store_fallbacks.inc();
                if shared.redis.should_log() {
                    log::warn!("shared rate-limit store failed ({e}); limiting locally");
                }
            }
        }
    }
    let verdict =
        verdict.unwrap_or_else(|| take_local(keyed.iter().map(|(s, l, _)| (*s, *l)), caller));
    verdict.map_err(|refusal| {
        sh.metrics
            .rate_limited
            .with_label_values(&[refusal.scope.as_str()])
            .inc();
        Cause::RateLimited(refusal)
    })
}

#[cfg(test)]
mod tests {
    use super::super::route::tests::snapshot;
    use super::*;

    #[test]
    fn a_tool_draws_from_its_own_bucket_then_the_route_s() {
        let snap = snapshot();
        let route = snap.route("alpha").unwrap();
        let scopes: Vec<_> = buckets(&snap, route, Some("ship"))
            .map(|(s, _)| s)
            .collect();
        assert_eq!(scopes, [Scope::Tool, Scope::Route]);
        let scopes: Vec<_> = buckets(&snap, route, Some("look"))
            .map(|(s, _)| s)
            .collect();
        assert_eq!(scopes, [Scope::Route]);
        assert_eq!(buckets(&snap, snap.route("beta").unwrap(), None).count(), 0);
    }

    #[test]
    fn the_route_bucket_refuses_past_its_burst_per_caller() {
        let snap = snapshot();
        let route = snap.route("alpha").unwrap();
        assert!(take_local(buckets(&snap, route, Some("look")), 1).is_ok());
        assert!(take_local(buckets(&snap, route, Some("look")), 1).is_ok());
        let refusal = take_local(buckets(&snap, route, Some("look")), 1).unwrap_err();
        assert_eq!(refusal.scope, Scope::Route);
        assert!(
            take_local(buckets(&snap, route, Some("look")), 2).is_ok(),
            "another caller"
        );
        assert_eq!(
            shared_key(Scope::Tool, &route.name, Some("ship"), 255),
            "mcp-edge:bucket:tool:alpha:ship:00000000000000ff"
        );
    }
}
