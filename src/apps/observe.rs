//! What a role looks like right now: its StatefulSet, its member pods and, for pods that are
//! not Ready, the diagnosis. Fetching is separate from the pure summary so the summary is
//! tested on fixtures.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::diagnose::{self, MemberProblem};
use super::error::AppsError;

/// Pod annotation set once the role's `configure` hook succeeded in that pod.
pub const ANNOTATION_CONFIGURED: &str = "director-boot.io/configured";

/// The role to look at: its id, StatefulSet name and the member count it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTarget {
    pub id: String,
    pub statefulset: String,
    pub members: u32,
}

/// One member (pod) now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub pod: String,
    pub ordinal: Option<u32>,
    /// Pod phase, or `Terminating`.
    pub phase: String,
    pub ready: bool,
    pub node: Option<String>,
    pub restarts: i32,
    pub terminating: bool,
    pub configured: bool,
    pub problem: Option<MemberProblem>,
}

/// One role now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleSnapshot {
    pub id: String,
    pub statefulset: String,
    /// Members the role should have.
    pub members: u32,
    pub exists: bool,
    pub spec_replicas: Option<i32>,
    pub status_replicas: i32,
    pub ready_replicas: i32,
    /// The controller has seen the latest spec.
    pub observed: bool,
    /// A rolling update has not finished (currentRevision != updateRevision).
    pub updating: bool,
    pub headless_service: Option<String>,
    pub members_now: Vec<MemberView>,
}

impl RoleSnapshot {
    /// Every wanted member is Ready and nothing beyond them is left.
    pub fn is_ready(&self) -> bool {
        self.exists
            && self.observed
            && self.spec_replicas == Some(self.members as i32)
            && self.ready_replicas >= self.members as i32
            && !self
                .members_now
                .iter()
                .any(|m| m.ordinal.is_none_or(|o| o >= self.members))
    }

    /// Why the role is not settled (for refusing to scale), None when it is.
    pub fn mid_change(&self) -> Option<String> {
        if !self.exists {
            return Some(format!("StatefulSet {} does not exist", self.statefulset));
        }
        let want = self.spec_replicas.unwrap_or(1);
        let mut why = Vec::new();
        if !self.observed {
            why.push("the StatefulSet controller has not seen its latest spec".to_string());
        }
        if self.status_replicas != want {
            why.push(format!("{} of {want} members exist", self.status_replicas));
        }
        if self.ready_replicas < want {
            why.push(format!("{} of {want} members ready", self.ready_replicas));
        }
        if self.updating {
            why.push("a rolling update is in progress".to_string());
        }
        let terminating = self.members_now.iter().filter(|m| m.terminating).count();
        if terminating > 0 {
            why.push(format!("{terminating} member(s) terminating"));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// Ready members as the StatefulSet controller counts them, up to the wanted count.
    pub fn ready_count(&self) -> u32 {
        (self.ready_replicas.max(0) as u32).min(self.members)
    }

    /// Members with ordinal below the wanted count, in ordinal order.
    pub fn current_members(&self) -> impl Iterator<Item = &MemberView> {
        self.members_now
            .iter()
            .filter(|m| m.ordinal.is_some_and(|o| o < self.members))
    }
}

/// The ordinal of a StatefulSet pod (`<sts>-<n>`).
pub fn ordinal(statefulset: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(statefulset)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn member(statefulset: &str, pod: &Pod, events: &[&Event]) -> MemberView {
    let name = pod.name_any();
    let status = pod.status.as_ref();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    let phase = if terminating {
        "Terminating".to_string()
    } else {
        status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".to_string())
    };
    MemberView {
        ordinal: ordinal(statefulset, &name),
        pod: name,
        phase,
        ready,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        restarts,
        terminating,
        configured: pod.annotations().contains_key(ANNOTATION_CONFIGURED),
        problem: if ready {
            None
        } else {
            diagnose::diagnose(pod, events)
        },
    }
}

/// Summarize a role from its StatefulSet, its pods and the events about them.
pub fn summarize(
    target: &RoleTarget,
    sts: Option<&StatefulSet>,
    pods: &[Pod],
    events: &[Event],
) -> RoleSnapshot {
    let mut by_pod: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        if e.involved_object.kind.as_deref() == Some("Pod")
            && let Some(n) = e.involved_object.name.as_deref()
        {
            by_pod.entry(n).or_default().push(e);
        }
    }
    let mut members_now: Vec<MemberView> = pods
        .iter()
        .map(|p| {
            let evs = by_pod
                .get(p.name_any().as_str())
                .cloned()
                .unwrap_or_default();
            member(&target.statefulset, p, &evs)
        })
        .collect();
    members_now.sort_by_key(|m| (m.ordinal.unwrap_or(u32::MAX), m.pod.clone()));
    let spec = sts.and_then(|s| s.spec.as_ref());
    let status = sts.and_then(|s| s.status.as_ref());
    let generation = sts.and_then(|s| s.metadata.generation);
    let observed = match (generation, status.and_then(|s| s.observed_generation)) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let updating = status.is_some_and(
        |s| matches!((&s.current_revision, &s.update_revision), (Some(c), Some(u)) if c != u),
    );
    RoleSnapshot {
        id: target.id.clone(),
        statefulset: target.statefulset.clone(),
        members: target.members,
        exists: sts.is_some(),
        spec_replicas: spec.map(|s| s.replicas.unwrap_or(1)),
        status_replicas: status.map_or(0, |s| s.replicas),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        observed,
        updating,
        headless_service: spec.and_then(|s| s.service_name.clone()),
        members_now,
    }
}

/// Label selector string of a StatefulSet's pods.
fn pod_selector(sts: &StatefulSet) -> Option<String> {
    let labels = sts.spec.as_ref()?.selector.match_labels.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Fetch and summarize roles; events are read only when some pod is not Ready.
pub async fn snapshot(
    client: &Client,
    namespace: &str,
    targets: &[RoleTarget],
) -> Result<Vec<RoleSnapshot>, AppsError> {
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut raw = Vec::new();
    for t in targets {
        let sts = sts_api.get_opt(&t.statefulset).await.map_err(|e| {
            AppsError::api(
                "read",
                format!("StatefulSet {namespace}/{}", t.statefulset),
                &e,
            )
        })?;
        let pods = match sts.as_ref().and_then(pod_selector) {
            Some(sel) => {
                pod_api
                    .list(&ListParams::default().labels(&sel))
                    .await
                    .map_err(|e| {
                        AppsError::api(
                            "list pods of",
                            format!("StatefulSet {namespace}/{}", t.statefulset),
                            &e,
                        )
                    })?
                    .items
            }
            None => Vec::new(),
        };
        // Only this StatefulSet's own pods (selectors of two roles could overlap).
        let pods: Vec<Pod> = pods
            .into_iter()
            .filter(|p| ordinal(&t.statefulset, &p.name_any()).is_some())
            .collect();
        raw.push((t, sts, pods));
    }
    let need_events = raw.iter().any(|(_, _, pods)| {
        pods.iter().any(|p| {
            !p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    });
    let events = if need_events {
        let ev_api: Api<Event> = Api::namespaced(client.clone(), namespace);
        ev_api
            .list(&ListParams::default().fields("involvedObject.kind=Pod"))
            .await
            .map_err(|e| AppsError::api("list events in", format!("namespace {namespace}"), &e))?
            .items
    } else {
        Vec::new()
    };
    Ok(raw
        .iter()
        .map(|(t, sts, pods)| summarize(t, sts.as_ref(), pods, &events))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(members: u32) -> RoleTarget {
        RoleTarget {
            id: "worker".into(),
            statefulset: "spark-worker".into(),
            members,
        }
    }

    fn sts(replicas: i32, ready: i32, generation: i64, observed: i64) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "spark-worker", "generation": generation},
            "spec": {"replicas": replicas, "serviceName": "spark-hs",
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"spec": {"containers": [{"name": "app"}]}}},
            "status": {"replicas": replicas, "readyReplicas": ready, "observedGeneration": observed}
        }))
        .unwrap()
    }

    fn pod(name: &str, ready: bool, terminating: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "busybox"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        });
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("spark-worker", "spark-worker-12"), Some(12));
        assert_eq!(ordinal("spark-worker", "spark-worker-x"), None);
        assert_eq!(ordinal("spark", "spark-worker-1"), None);
    }

    #[test]
    fn ready_when_all_members_ready_and_observed() {
        let pods = [
            pod("spark-worker-0", true, false),
            pod("spark-worker-1", true, false),
        ];
        let s = summarize(&target(2), Some(&sts(2, 2, 3, 3)), &pods, &[]);
        assert!(s.is_ready());
        assert_eq!(s.mid_change(), None);
        assert_eq!(s.headless_service.as_deref(), Some("spark-hs"));
        // Controller not caught up with the latest spec.
        let s = summarize(&target(2), Some(&sts(2, 2, 4, 3)), &pods, &[]);
        assert!(!s.is_ready());
        assert!(
            s.mid_change()
                .unwrap()
                .contains("has not seen its latest spec")
        );
    }

    #[test]
    fn scale_down_is_ready_only_when_the_highest_pod_is_gone() {
        let pods = [
            pod("spark-worker-0", true, false),
            pod("spark-worker-1", true, false),
            pod("spark-worker-2", true, true),
        ];
        let s = summarize(&target(2), Some(&sts(2, 2, 1, 1)), &pods, &[]);
        assert!(!s.is_ready());
        assert_eq!(s.mid_change().unwrap(), "1 member(s) terminating");
        assert_eq!(s.current_members().count(), 2);
        assert_eq!(s.members_now[2].phase, "Terminating");
    }

    #[test]
    fn mid_change_lists_every_reason() {
        let s = summarize(&target(3), Some(&sts(3, 1, 1, 1)), &[], &[]);
        assert_eq!(s.mid_change().unwrap(), "1 of 3 members ready");
        let s = summarize(&target(3), None, &[], &[]);
        assert!(!s.is_ready());
        assert!(s.mid_change().unwrap().contains("does not exist"));
    }

    #[test]
    fn events_reach_the_right_member() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "spark-worker-0"},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Pending"}
        }))
        .unwrap();
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "spark-worker-0"},
            "reason": "FailedScheduling", "message": "0/1 nodes are available: 1 Insufficient cpu."
        }))
        .unwrap();
        let other: Event = serde_json::from_value(json!({
            "metadata": {"name": "f"},
            "involvedObject": {"kind": "Pod", "name": "spark-worker-9"},
            "reason": "FailedScheduling", "message": "unrelated"
        }))
        .unwrap();
        let s = summarize(&target(1), Some(&sts(1, 0, 1, 1)), &[p], &[ev, other]);
        let problem = s.members_now[0].problem.as_ref().unwrap();
        assert_eq!(
            problem.to_string(),
            "cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu."
        );
    }
}
