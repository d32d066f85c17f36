//! etcd membership through `etcdctl` on a member: list the members and their health, add a
//! member before it first starts, remove one; and the quorum rule a removal must keep.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::node::{Node, NodeError, shell_quote};

/// etcdctl as root on an etcd host, against its own member, with the health-check client
/// certificate the etcd role puts there (any client the etcd CA signed may manage members).
const ETCDCTL: &str = "/usr/local/bin/etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/etc/kubernetes/pki/etcd/ca.crt \
    --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt \
    --key=/etc/kubernetes/pki/etcd/healthcheck-client.key --command-timeout=10s";

/// A member as `etcdctl member list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty for a member added but not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl Member {
    /// A member that has started (an added member has no name nor client URL until then).
    pub fn started(&self) -> bool {
        !self.name.is_empty() && !self.client_urls.is_empty()
    }
}

#[derive(Deserialize)]
struct ListJson {
    #[serde(default)]
    members: Vec<MemberJson>,
}

#[derive(Deserialize)]
struct MemberJson {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

#[derive(Deserialize)]
struct HealthJson {
    endpoint: String,
    #[serde(default)]
    health: bool,
}

pub fn parse_member_list(json: &str) -> Result<Vec<Member>, serde_json::Error> {
    let list: ListJson = serde_json::from_str(json)?;
    Ok(list
        .members
        .into_iter()
        .map(|m| Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
        })
        .collect())
}

/// `etcdctl endpoint health --cluster -w json`: the endpoints that answered healthy.
pub fn parse_health(json: &str) -> Result<Vec<String>, serde_json::Error> {
    let list: Vec<HealthJson> = serde_json::from_str(json)?;
    Ok(list
        .into_iter()
        .filter(|h| h.health)
        .map(|h| h.endpoint)
        .collect())
}

/// `https://addr:PORT`, IPv6 in brackets.
pub fn url(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("https://{a}:{port}"),
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
    }
}

pub fn peer_url(addr: IpAddr) -> String {
    url(addr, 2380)
}

/// The `--initial-cluster` of a member joining now: every current member (started or added),
/// the joiner under its own name, in etcd's order (what `etcdctl member add` prints).
pub fn join_initial_cluster(members: &[Member], name: &str, peer: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut has_self = false;
    for m in members {
        for u in &m.peer_urls {
            if u == peer {
                has_self = true;
                parts.push(format!("{name}={u}"));
            } else if !m.name.is_empty() {
                parts.push(format!("{}={u}", m.name));
            }
        }
    }
    if !has_self {
        parts.push(format!("{name}={peer}"));
    }
    parts.join(",")
}

/// Members and their health, as one member sees them.
#[derive(Debug, Clone)]
pub struct View {
    /// The etcd host that answered.
    pub via: String,
    pub members: Vec<Member>,
    /// Names of the members whose endpoint answered healthy.
    pub healthy: Vec<String>,
}

impl View {
    pub fn find(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// (name, healthy) per member, for the quorum rule.
    pub fn health(&self) -> Vec<(String, bool)> {
        self.members
            .iter()
            .map(|m| {
                let label = if m.name.is_empty() {
                    format!("(unstarted {:x})", m.id)
                } else {
                    m.name.clone()
                };
                (label, self.healthy.contains(&m.name))
            })
            .collect()
    }
}

pub async fn member_list(n: &Node) -> Result<Vec<Member>, anyhow::Error> {
    let out = n.sudo_ok(&format!("{ETCDCTL} member list -w json")).await?;
    parse_member_list(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{}: etcdctl member list: unexpected output: {e}", n.name()))
}

/// The member list and each member's health, through this host's member.
pub async fn view(n: &Node) -> Result<View, anyhow::Error> {
    let members = member_list(n).await?;
    // Exits non-zero when any endpoint is unhealthy; its JSON still lists every endpoint.
    let out = n
        .sudo_ok(&format!(
            "{ETCDCTL} endpoint health --cluster -w json 2>/dev/null || true"
        ))
        .await?;
    let endpoints = parse_health(out.stdout.trim()).unwrap_or_default();
    let healthy = members
        .iter()
        .filter(|m| m.client_urls.iter().any(|u| endpoints.contains(u)))
        .map(|m| m.name.clone())
        .collect();
    Ok(View {
        via: n.name().to_string(),
        members,
        healthy,
    })
}

/// The first of `nodes` whose member answers, with its view; the errors of the others.
pub async fn first_view<'n>(
    nodes: impl IntoIterator<Item = &'n Node>,
) -> (Option<View>, Vec<String>) {
    let mut errors = Vec::new();
    for n in nodes {
        match view(n).await {
            Ok(v) => return (Some(v), errors),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (None, errors)
}

/// A membership change, retried while etcd calls the cluster unhealthy: it refuses changes
/// until every member it counts on has been connected for a few seconds (strict reconfig
/// check), e.g. just after a member restarted.
async fn reconfigure(n: &Node, command: &str) -> Result<(), NodeError> {
    let deadline = Instant::now() + RECONFIG_WAIT;
    loop {
        match n.sudo_ok(command).await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("unhealthy cluster") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long a membership change waits for etcd to call the cluster healthy.
const RECONFIG_WAIT: Duration = Duration::from_secs(60);

pub async fn member_add(n: &Node, name: &str, peer: &str) -> Result<(), NodeError> {
    reconfigure(
        n,
        &format!(
            "{ETCDCTL} member add {} --peer-urls={}",
            shell_quote(name),
            shell_quote(peer)
        ),
    )
    .await
}

pub async fn member_remove(n: &Node, id: u64) -> Result<(), NodeError> {
    reconfigure(n, &format!("{ETCDCTL} member remove {id:x}")).await
}

/// Does this host hold etcd data (a member that has started at least once)?
pub async fn has_data(n: &Node) -> bool {
    n.sudo_ok("test -d /var/lib/etcd/member").await.is_ok()
}

/// Votes needed among `members`.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemovalRefused {
    #[error("{name} is the last etcd member: removing it would delete the cluster's data store")]
    LastMember { name: String },
    #[error(
        "etcd has no quorum now ({healthy} of {total} members healthy, {quorum} needed): a removal cannot be committed; bring members back first"
    )]
    NoQuorumNow {
        healthy: usize,
        total: usize,
        quorum: usize,
    },
    #[error(
        "removing {name} would lose etcd quorum: {healthy_after} of the {remaining} remaining members are healthy ({unhealthy}), {quorum_after} needed; bring them back first"
    )]
    WouldLoseQuorum {
        name: String,
        healthy_after: usize,
        remaining: usize,
        quorum_after: usize,
        unhealthy: String,
    },
    #[error("{name} is the last control plane: the cluster would have no API server")]
    LastControlPlane { name: String },
}

/// May `target` leave an etcd cluster whose members are `(name, healthy)`? The removal must be
/// committed by a quorum of today's members, and the remaining members must keep one.
pub fn check_removal(members: &[(String, bool)], target: &str) -> Result<(), RemovalRefused> {
    let total = members.len();
    if !members.iter().any(|(n, _)| n == target) {
        return Ok(());
    }
    if total <= 1 {
        return Err(RemovalRefused::LastMember {
            name: target.to_string(),
        });
    }
    let healthy = members.iter().filter(|(_, h)| *h).count();
    if healthy < quorum(total) {
        return Err(RemovalRefused::NoQuorumNow {
            healthy,
            total,
            quorum: quorum(total),
        });
    }
    let remaining: Vec<&(String, bool)> = members.iter().filter(|(n, _)| n != target).collect();
    let healthy_after = remaining.iter().filter(|(_, h)| *h).count();
    if healthy_after < quorum(remaining.len()) {
        let unhealthy: Vec<&str> = remaining
            .iter()
            .filter(|(_, h)| !*h)
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(RemovalRefused::WouldLoseQuorum {
            name: target.to_string(),
            healthy_after,
            remaining: remaining.len(),
            quorum_after: quorum(remaining.len()),
            unhealthy: format!("unhealthy: {}", unhealthy.join(", ")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(names: &[(&str, bool)]) -> Vec<(String, bool)> {
        names.iter().map(|(n, h)| (n.to_string(), *h)).collect()
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn removing_from_a_healthy_cluster_is_allowed() {
        let all = m(&[("a", true), ("b", true), ("c", true), ("d", true)]);
        assert_eq!(check_removal(&all, "d"), Ok(()));
        let three = m(&[("a", true), ("b", true), ("c", true)]);
        assert_eq!(check_removal(&three, "a"), Ok(()));
        // Down to one member: the one left holds its own quorum.
        assert_eq!(check_removal(&m(&[("a", true), ("b", true)]), "b"), Ok(()));
        // A member that is down may go when the others keep quorum.
        let one_down = m(&[("a", true), ("b", true), ("c", false)]);
        assert_eq!(check_removal(&one_down, "c"), Ok(()));
    }

    #[test]
    fn removal_that_would_lose_quorum_is_refused() {
        // 3 members, c down: removing healthy a leaves b (healthy) and c (down): 1 of 2.
        let one_down = m(&[("a", true), ("b", true), ("c", false)]);
        let e = check_removal(&one_down, "a").unwrap_err();
        assert_eq!(
            e,
            RemovalRefused::WouldLoseQuorum {
                name: "a".into(),
                healthy_after: 1,
                remaining: 2,
                quorum_after: 2,
                unhealthy: "unhealthy: c".into(),
            }
        );
        assert!(e.to_string().contains("would lose etcd quorum"), "{e}");
        // 5 members, 2 down: removing a healthy one leaves 2 of 4 healthy, 3 needed.
        let five = m(&[
            ("a", true),
            ("b", true),
            ("c", true),
            ("d", false),
            ("e", false),
        ]);
        assert!(matches!(
            check_removal(&five, "a"),
            Err(RemovalRefused::WouldLoseQuorum { .. })
        ));
        // ...but removing a down one leaves 3 of 4, quorum 3.
        assert_eq!(check_removal(&five, "e"), Ok(()));
    }

    #[test]
    fn no_quorum_now_and_last_member_are_refused() {
        let two_down = m(&[("a", true), ("b", false), ("c", false)]);
        assert!(matches!(
            check_removal(&two_down, "b"),
            Err(RemovalRefused::NoQuorumNow {
                healthy: 1,
                total: 3,
                quorum: 2
            })
        ));
        assert!(matches!(
            check_removal(&m(&[("a", true)]), "a"),
            Err(RemovalRefused::LastMember { .. })
        ));
        // Not a member: nothing to refuse.
        assert_eq!(check_removal(&m(&[("a", true)]), "z"), Ok(()));
    }

    #[test]
    fn member_list_and_health_parse() {
        let json = r#"{"header":{"cluster_id":1,"member_id":2,"raft_term":3},"members":[
            {"ID":17183425185735829434,"name":"node1","peerURLs":["https://10.213.0.11:2380"],"clientURLs":["https://10.213.0.11:2379"]},
            {"ID":42,"peerURLs":["https://10.213.0.13:2380"]}]}"#;
        let ms = parse_member_list(json).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].id, 17183425185735829434);
        assert!(ms[0].started());
        assert!(!ms[1].started());
        let h = parse_health(
            r#"[{"endpoint":"https://10.213.0.11:2379","health":true,"took":"1ms"},
                {"endpoint":"https://10.213.0.12:2379","health":false,"error":"context deadline exceeded"}]"#,
        )
        .unwrap();
        assert_eq!(h, ["https://10.213.0.11:2379"]);
    }

    #[test]
    fn a_joiner_lists_every_member_and_itself() {
        let ms = vec![
            Member {
                id: 1,
                name: "node1".into(),
                peer_urls: vec!["https://10.0.0.1:2380".into()],
                client_urls: vec!["https://10.0.0.1:2379".into()],
            },
            Member {
                id: 2,
                name: "node2".into(),
                peer_urls: vec!["https://10.0.0.2:2380".into()],
                client_urls: vec!["https://10.0.0.2:2379".into()],
            },
        ];
        assert_eq!(
            join_initial_cluster(&ms, "node3", "https://10.0.0.3:2380"),
            "node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380,node3=https://10.0.0.3:2380"
        );
        // Already added (a re-run after the add): listed once, under its own name.
        let mut added = ms.clone();
        added.push(Member {
            id: 3,
            name: String::new(),
            peer_urls: vec!["https://10.0.0.3:2380".into()],
            client_urls: vec![],
        });
        assert_eq!(
            join_initial_cluster(&added, "node3", "https://10.0.0.3:2380"),
            "node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380,node3=https://10.0.0.3:2380"
        );
    }
}
