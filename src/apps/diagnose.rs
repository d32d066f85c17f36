//! Why a member does not become Ready, from its Pod and the Events about it: pure functions
//! over k8s-openapi types, so each case is tested with fixture JSON. The watcher adds what
//! needs more API calls (the crashed container's last log lines) and decides, with
//! [`Grace`], when a problem is definitive enough to stop waiting.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use serde::Serialize;

/// What keeps one member from becoming Ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemberProblem {
    /// The image is not on the node and cannot (or may not) be pulled.
    ImageMissing {
        container: String,
        image: String,
        node: Option<String>,
        /// ErrImageNeverPull, ErrImagePull, ImagePullBackOff or InvalidImageName.
        reason: String,
        message: String,
    },
    /// The scheduler finds no node: insufficient cpu/memory, taints, unbound PVCs, ...
    Unschedulable { message: String },
    /// The container keeps exiting.
    CrashLoop {
        container: String,
        restarts: i32,
        exit_code: Option<i32>,
        /// e.g. `Error`, `OOMKilled`.
        reason: Option<String>,
        /// Last lines the previous container wrote (filled in by the watcher).
        last_logs: Vec<String>,
    },
    /// The container cannot be created: a missing ConfigMap/Secret key, a bad command, ...
    CreateFailed {
        container: String,
        reason: String,
        message: String,
    },
    /// The pod stays in ContainerCreating: volumes that do not mount, CNI errors.
    StuckCreating { reason: String, message: String },
}

/// How long each kind of problem may last before the wait gives up on the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    pub image_missing: Duration,
    pub unschedulable: Duration,
    pub create_failed: Duration,
    pub stuck_creating: Duration,
    /// A crash loop is definitive from this many restarts on.
    pub crash_restarts: i32,
}

impl Default for Grace {
    fn default() -> Self {
        Grace {
            image_missing: Duration::from_secs(20),
            unschedulable: Duration::from_secs(60),
            create_failed: Duration::from_secs(30),
            stuck_creating: Duration::from_secs(120),
            crash_restarts: 3,
        }
    }
}

impl MemberProblem {
    /// A short tag for progress lines and tables.
    pub fn tag(&self) -> &'static str {
        match self {
            MemberProblem::ImageMissing { .. } => "image missing",
            MemberProblem::Unschedulable { .. } => "unschedulable",
            MemberProblem::CrashLoop { .. } => "crash loop",
            MemberProblem::CreateFailed { .. } => "create failed",
            MemberProblem::StuckCreating { .. } => "stuck creating",
        }
    }

    /// Whether waiting longer is pointless, given how long the problem has been seen.
    pub fn is_definitive(&self, seen_for: Duration, grace: &Grace) -> bool {
        match self {
            MemberProblem::ImageMissing { .. } => seen_for >= grace.image_missing,
            MemberProblem::Unschedulable { .. } => seen_for >= grace.unschedulable,
            MemberProblem::CrashLoop { restarts, .. } => *restarts >= grace.crash_restarts,
            MemberProblem::CreateFailed { .. } => seen_for >= grace.create_failed,
            MemberProblem::StuckCreating { .. } => seen_for >= grace.stuck_creating,
        }
    }

    /// The container whose previous logs explain a crash loop.
    pub fn crashed_container(&self) -> Option<&str> {
        match self {
            MemberProblem::CrashLoop { container, .. } => Some(container),
            _ => None,
        }
    }
}

impl fmt::Display for MemberProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberProblem::ImageMissing {
                image,
                node,
                reason,
                message,
                ..
            } => {
                let on = node
                    .as_deref()
                    .map(|n| format!(" on node {n}"))
                    .unwrap_or_default();
                match reason.as_str() {
                    "InvalidImageName" => write!(f, "image name {image} is invalid: {message}"),
                    "ErrImageNeverPull" => write!(
                        f,
                        "image {image} is not available{on} — build it and load it with `director-boot images load`"
                    ),
                    // No registry serves `localhost/...`: such an image exists only when
                    // side-loaded, so the pull error is noise.
                    _ if image.starts_with("localhost/") => write!(
                        f,
                        "image {image} is not available{on} (it is side-loaded, never pulled) — build it and load it with `director-boot images load`"
                    ),
                    _ => write!(
                        f,
                        "image {image} cannot be pulled{on} ({reason}: {message}) — build it and load it with `director-boot images load`, or make its registry reachable"
                    ),
                }
            }
            MemberProblem::Unschedulable { message } => {
                write!(f, "cannot be scheduled: {message}")?;
                if message.contains("unbound immediate PersistentVolumeClaims") {
                    write!(
                        f,
                        " — nothing provisions a volume for its claim: give the cluster a default StorageClass with a provisioner (`kubectl get storageclass`), or deploy with `--set <role>.storage.emptyDir=true` (its data then lives and dies with the pod)"
                    )?;
                }
                Ok(())
            }
            MemberProblem::CrashLoop {
                container,
                restarts,
                exit_code,
                reason,
                last_logs,
            } => {
                write!(
                    f,
                    "container {container} keeps crashing ({restarts} restarts"
                )?;
                if let Some(code) = exit_code {
                    write!(f, ", last exit code {code}")?;
                }
                if let Some(r) = reason {
                    write!(f, ", {r}")?;
                }
                write!(f, ")")?;
                if !last_logs.is_empty() {
                    write!(f, "; last log lines:")?;
                    for l in last_logs {
                        write!(f, "\n    | {l}")?;
                    }
                }
                Ok(())
            }
            MemberProblem::CreateFailed {
                container,
                reason,
                message,
            } => write!(
                f,
                "container {container} cannot be created: {reason}: {message}"
            ),
            MemberProblem::StuckCreating { reason, message } => {
                write!(f, "containers are not created: {reason}: {message}")
            }
        }
    }
}

const IMAGE_REASONS: [&str; 4] = [
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
];
const CREATE_REASONS: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];
/// Event reasons that explain a pod stuck before its containers exist.
const CREATING_EVENT_REASONS: [&str; 4] = [
    "FailedMount",
    "FailedAttachVolume",
    "FailedCreatePodSandBox",
    "FailedCreatePodContainer",
];

/// The problem keeping `pod` from Ready, if one is visible now. `events` are the Events whose
/// involvedObject is this pod (any order).
pub fn diagnose(pod: &Pod, events: &[&Event]) -> Option<MemberProblem> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());

    if let Some(p) = unschedulable(pod, events) {
        return Some(p);
    }
    let statuses = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect::<Vec<_>>();
    for cs in &statuses {
        if let Some(p) = container_problem(pod, cs, node.as_deref()) {
            return Some(p);
        }
    }
    // Containers not created yet: the kubelet reports why only in events.
    let waiting_to_create = !statuses.is_empty()
        && statuses.iter().any(|cs| {
            waiting_reason(cs).is_some_and(|r| r == "ContainerCreating" || r == "PodInitializing")
        });
    let scheduled_without_statuses = node.is_some() && statuses.is_empty();
    if !(waiting_to_create || scheduled_without_statuses) {
        return None;
    }
    latest(events, |e| {
        e.reason
            .as_deref()
            .is_some_and(|r| CREATING_EVENT_REASONS.contains(&r))
    })
    .map(|ev| MemberProblem::StuckCreating {
        reason: ev.reason.clone().unwrap_or_default(),
        message: one_line(ev.message.as_deref().unwrap_or("")),
    })
}

fn unschedulable(pod: &Pod, events: &[&Event]) -> Option<MemberProblem> {
    let status = pod.status.as_ref()?;
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
    {
        return None;
    }
    let cond = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    let from_event = || {
        latest(events, |e| e.reason.as_deref() == Some("FailedScheduling"))
            .and_then(|e| e.message.clone())
    };
    match cond {
        Some(c) if c.reason.as_deref() == Some("Unschedulable") => {
            let message = c
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(from_event)
                .unwrap_or_else(|| "no reason given".to_string());
            Some(MemberProblem::Unschedulable {
                message: one_line(&message),
            })
        }
        Some(_) | None => from_event().map(|m| MemberProblem::Unschedulable {
            message: one_line(&m),
        }),
    }
}

fn waiting_reason(cs: &ContainerStatus) -> Option<&str> {
    cs.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref())
}

fn container_problem(pod: &Pod, cs: &ContainerStatus, node: Option<&str>) -> Option<MemberProblem> {
    let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
    let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or("");
    let message = one_line(waiting.and_then(|w| w.message.as_deref()).unwrap_or(""));
    if IMAGE_REASONS.contains(&reason) {
        return Some(MemberProblem::ImageMissing {
            container: cs.name.clone(),
            image: spec_image(pod, &cs.name).unwrap_or_else(|| cs.image.clone()),
            node: node.map(str::to_string),
            reason: reason.to_string(),
            message,
        });
    }
    if CREATE_REASONS.contains(&reason) {
        return Some(MemberProblem::CreateFailed {
            container: cs.name.clone(),
            reason: reason.to_string(),
            message,
        });
    }
    let terminated = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let looping = reason == "CrashLoopBackOff" || (cs.restart_count > 0 && !cs.ready);
    if looping && (cs.restart_count > 0 || terminated.is_some()) {
        return Some(MemberProblem::CrashLoop {
            container: cs.name.clone(),
            restarts: cs.restart_count,
            exit_code: terminated.map(|t| t.exit_code),
            reason: terminated.and_then(|t| t.reason.clone()),
            last_logs: Vec::new(),
        });
    }
    None
}

/// The image as written in the pod spec: the status may show a resolved or empty name.
fn spec_image(pod: &Pod, container: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == container)
        .and_then(|c| c.image.clone())
}

/// The most recent event matching `want` (by last timestamp, then event time, then order).
fn latest<'a>(events: &[&'a Event], want: impl Fn(&Event) -> bool) -> Option<&'a Event> {
    events.iter().copied().filter(|e| want(e)).max_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The last `n` non-empty lines of a log.
pub fn tail_lines(log: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }
    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap()
    }

    fn pod_waiting(reason: &str, message: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "cassandra-seed-0", "namespace": "apps"},
            "spec": {"nodeName": "node2", "containers": [
                {"name": "app", "image": "localhost/director-boot/cassandra:4.1"}]},
            "status": {"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{
                    "name": "app", "image": "localhost/director-boot/cassandra:4.1", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}}}]}
        }))
    }

    #[test]
    fn never_pull_is_image_missing_with_the_load_hint() {
        let p = pod_waiting(
            "ErrImageNeverPull",
            "Container image \"localhost/director-boot/cassandra:4.1\" is not present with pull policy of Never",
        );
        let problem = diagnose(&p, &[]).unwrap();
        assert_eq!(problem.tag(), "image missing");
        assert_eq!(
            problem.to_string(),
            "image localhost/director-boot/cassandra:4.1 is not available on node node2 — build it and load it with `director-boot images load`"
        );
        let g = Grace::default();
        assert!(!problem.is_definitive(Duration::from_secs(5), &g));
        assert!(problem.is_definitive(Duration::from_secs(20), &g));
    }

    #[test]
    fn pull_backoff_and_invalid_name_are_image_problems() {
        let p = pod_waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"docker.io/ibmcom/spectrum-symphony:7.3.0.0\"",
        );
        let text = diagnose(&p, &[]).unwrap().to_string();
        // A side-loaded (localhost/) image is simply not there; pulling it is meaningless.
        assert_eq!(
            text,
            "image localhost/director-boot/cassandra:4.1 is not available on node node2 (it is side-loaded, never pulled) — build it and load it with `director-boot images load`"
        );
        let mut v = serde_json::to_value(&p).unwrap();
        v["spec"]["containers"][0]["image"] = "docker.io/ibmcom/spectrum-symphony:7.3.0.0".into();
        v["status"]["containerStatuses"][0]["image"] =
            "docker.io/ibmcom/spectrum-symphony:7.3.0.0".into();
        let p = pod(v);
        let text = diagnose(&p, &[]).unwrap().to_string();
        assert!(
            text.contains(
                "cannot be pulled on node node2 (ImagePullBackOff: Back-off pulling image"
            ),
            "{text}"
        );
        assert!(text.contains("director-boot images load"), "{text}");

        let p = pod_waiting("InvalidImageName", "couldn't parse image name \"Bad:Name\"");
        match diagnose(&p, &[]).unwrap() {
            MemberProblem::ImageMissing { reason, .. } => assert_eq!(reason, "InvalidImageName"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unschedulable_takes_the_scheduler_message() {
        let p = pod(json!({
            "metadata": {"name": "spark-worker-1"},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."}]}
        }));
        let problem = diagnose(&p, &[]).unwrap();
        assert_eq!(
            problem.to_string(),
            "cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
        assert!(!problem.is_definitive(Duration::from_secs(30), &Grace::default()));
        assert!(problem.is_definitive(Duration::from_secs(60), &Grace::default()));
    }

    #[test]
    fn unschedulable_from_a_failed_scheduling_event() {
        // No condition yet (scheduler has not written it), but an event says why.
        let p = pod(json!({
            "metadata": {"name": "hadoop-dn-0"},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Pending"}
        }));
        let older = event(json!({
            "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "hadoop-dn-0"},
            "reason": "FailedScheduling", "lastTimestamp": "2026-01-01T00:00:00Z",
            "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."}));
        let newer = event(json!({
            "metadata": {"name": "e2"}, "involvedObject": {"kind": "Pod", "name": "hadoop-dn-0"},
            "reason": "FailedScheduling", "lastTimestamp": "2026-01-01T00:01:00Z",
            "message": "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector."}));
        let problem = diagnose(&p, &[&newer, &older]).unwrap();
        assert!(
            problem.to_string().contains("untolerated taint"),
            "{problem}"
        );
    }

    #[test]
    fn crash_loop_counts_restarts_and_exit_code() {
        let p = pod(json!({
            "metadata": {"name": "spark-master-0"},
            "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
        }));
        let mut problem = diagnose(&p, &[]).unwrap();
        assert_eq!(problem.crashed_container(), Some("app"));
        assert!(problem.is_definitive(Duration::ZERO, &Grace::default()));
        if let MemberProblem::CrashLoop { last_logs, .. } = &mut problem {
            *last_logs = tail_lines("a\n\nb\nError: no master\n", 2);
        }
        assert_eq!(
            problem.to_string(),
            "container app keeps crashing (3 restarts, last exit code 1, Error); last log lines:\n    | b\n    | Error: no master"
        );
    }

    #[test]
    fn one_restart_is_a_crash_loop_that_is_not_definitive_yet() {
        let p = pod(json!({
            "metadata": {"name": "w-0"},
            "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }));
        let problem = diagnose(&p, &[]).unwrap();
        assert!(!problem.is_definitive(Duration::from_secs(300), &Grace::default()));
        assert!(problem.to_string().contains("137, OOMKilled"));
    }

    #[test]
    fn failed_mount_while_creating() {
        let p = pod_waiting("ContainerCreating", "");
        let ev = event(json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "cassandra-seed-0"},
            "reason": "FailedMount", "type": "Warning",
            "message": "MountVolume.SetUp failed for volume \"meta\" : configmap \"cassandra-meta\" not found"}));
        let problem = diagnose(&p, &[&ev]).unwrap();
        assert_eq!(
            problem.to_string(),
            "containers are not created: FailedMount: MountVolume.SetUp failed for volume \"meta\" : configmap \"cassandra-meta\" not found"
        );
        // Without an explaining event, ContainerCreating is just progress.
        assert_eq!(diagnose(&p, &[]), None);
    }

    #[test]
    fn cni_error_on_a_pod_without_container_statuses() {
        let p = pod(json!({
            "metadata": {"name": "x-0"},
            "spec": {"nodeName": "node3", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Pending"}
        }));
        let ev = event(json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "x-0"},
            "reason": "FailedCreatePodSandBox",
            "message": "Failed to create pod sandbox: plugin type=\"bridge\" failed (add): failed to allocate for range 0"}));
        match diagnose(&p, &[&ev]).unwrap() {
            MemberProblem::StuckCreating { reason, .. } => {
                assert_eq!(reason, "FailedCreatePodSandBox")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_config_error() {
        let p = pod_waiting(
            "CreateContainerConfigError",
            "secret \"symphony-entitlement\" not found",
        );
        assert_eq!(
            diagnose(&p, &[]).unwrap().to_string(),
            "container app cannot be created: CreateContainerConfigError: secret \"symphony-entitlement\" not found"
        );
    }

    #[test]
    fn healthy_and_terminating_pods_have_no_problem() {
        let p = pod(json!({
            "metadata": {"name": "ok-0"},
            "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {}}}]}
        }));
        assert_eq!(diagnose(&p, &[]), None);
        let mut t = pod_waiting("ErrImageNeverPull", "");
        t.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(diagnose(&t, &[]), None);
    }

    #[test]
    fn init_container_image_missing() {
        let p = pod(json!({
            "metadata": {"name": "h-0"},
            "spec": {"nodeName": "node1",
                "initContainers": [{"name": "copy", "image": "localhost/director-boot/hadoop:3.4"}],
                "containers": [{"name": "app", "image": "localhost/director-boot/hadoop:3.4"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [{"name": "copy", "image": "", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "ErrImageNeverPull"}}}],
                "containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}
        }));
        match diagnose(&p, &[]).unwrap() {
            MemberProblem::ImageMissing {
                container, image, ..
            } => {
                assert_eq!(container, "copy");
                assert_eq!(image, "localhost/director-boot/hadoop:3.4");
            }
            other => panic!("{other:?}"),
        }
    }
}
