//! What netcheck measures and reports, serialisable as the `--json` output.

use serde::Serialize;

/// One direction of one path (overlay or underlay) between two nodes.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Measurement {
    /// Single-stream TCP, bits per second at the receiver.
    pub tcp_bps: Option<f64>,
    /// N-stream TCP, bits per second at the receiver.
    pub tcp_multi_bps: Option<f64>,
    pub udp_bps: Option<f64>,
    /// Fraction of UDP datagrams lost (0.0..=1.0).
    pub udp_loss: Option<f64>,
    pub udp_jitter_ms: Option<f64>,
    pub rr_p50_us: Option<f64>,
    pub rr_p99_us: Option<f64>,
    /// Largest IPv4 packet that crossed with Don't Fragment set.
    pub path_mtu: Option<u32>,
    /// Connection rate: connect, 1-byte request, 1-byte response, close, per second (netperf
    /// TCP_CRR), and the median time of one such transaction.
    pub crr_per_sec: Option<f64>,
    pub crr_p50_us: Option<f64>,
    /// CPU seconds per Gbit moved in the single-stream TCP test: the sending probe process's
    /// own CPU time (user + system) over the Gbit it sent, and the receiving one's over the
    /// Gbit it received.
    pub tcp_sender_cpu_s_per_gbit: Option<f64>,
    pub tcp_receiver_cpu_s_per_gbit: Option<f64>,
    /// Both directions at once: one TCP stream `from` → `to` and one `to` → `from`, started
    /// together and measured concurrently (bits per second at each receiver).
    pub bidir_out_bps: Option<f64>,
    pub bidir_in_bps: Option<f64>,
    /// Tests that failed, as `test: message`.
    pub errors: Vec<String>,
    /// Set when the probe could not run at all (node down, server unreachable).
    pub failed: Option<String>,
}

impl Measurement {
    pub fn failed(why: impl Into<String>) -> Measurement {
        Measurement {
            failed: Some(why.into()),
            ..Measurement::default()
        }
    }

    /// Whether anything got through.
    pub fn ok(&self) -> bool {
        self.failed.is_none() && (self.tcp_bps.is_some() || self.udp_bps.is_some())
    }

    /// Both directions of the bidirectional test added up.
    pub fn bidir_total_bps(&self) -> Option<f64> {
        Some(self.bidir_out_bps? + self.bidir_in_bps?)
    }
}

/// `a / b` when both exist and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Whether a pair is two nodes or two endpoints on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Pod to pod across the overlay between two hosts, with the host-to-host underlay as the
    /// baseline.
    CrossNode,
    /// Two probe endpoints on one node's pod bridge: no overlay, no underlay to compare with;
    /// absolute figures only.
    SameNode,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnosis {
    /// Stable identifier, e.g. `blocked-overlay-port`, `mtu`, `rp-filter`.
    pub code: &'static str,
    /// The host the problem is on, when known.
    pub host: Option<String>,
    pub summary: String,
    /// What to do about it.
    pub fix: String,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairResult {
    pub scope: Scope,
    pub from: String,
    pub to: String,
    /// How `from` reaches `to`'s pods: `direct`, `vxlan`, or `unknown` (an older overlay).
    pub backend: String,
    /// The pair's pod traffic is encrypted between the hosts.
    pub encrypted: bool,
    pub overlay: Measurement,
    pub underlay: Measurement,
    /// Overlay single-stream TCP / underlay single-stream TCP.
    pub efficiency: Option<f64>,
    /// Overlay N-stream TCP / underlay N-stream TCP.
    pub multi_efficiency: Option<f64>,
    /// Overlay / underlay of both directions at once (the two directions added up).
    pub bidir_efficiency: Option<f64>,
    /// The first single-stream sample missed the efficiency bar, so overlay and underlay TCP
    /// were measured once more back to back; the TCP figures are the better sample's.
    pub remeasured: bool,
    pub passed: bool,
    /// Why the pair failed its thresholds (empty when it passed).
    pub failures: Vec<String>,
    pub diagnoses: Vec<Diagnosis>,
    pub seconds: f64,
}

/// Pod to a Service in front of a probe pod, through kube-proxy.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    /// `clusterip` (pod → the Service's ClusterIP) or `nodeport` (pod → a node's address and
    /// the Service's NodePort).
    pub kind: String,
    /// The node of the client pod.
    pub from: String,
    /// The node of the probe pod behind the Service (its only endpoint).
    pub to: String,
    /// The node whose NodePort was dialled (nodeport only).
    pub via: Option<String>,
    /// What the client dialled, `ip:port`.
    pub address: String,
    pub measurement: Measurement,
    /// The same two pods pod to pod (without the Service), for comparison.
    pub direct_tcp_bps: Option<f64>,
    pub direct_rr_p50_us: Option<f64>,
    pub direct_crr_per_sec: Option<f64>,
    pub passed: bool,
    pub failures: Vec<String>,
    pub diagnoses: Vec<Diagnosis>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub min_efficiency: f64,
    pub max_udp_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    /// `pods` (probe DaemonSet) or `netns` (namespaces on each node's pod bridge).
    pub mode: String,
    pub nodes: Vec<String>,
    pub overlay_mtu: u32,
    pub duration_secs: u64,
    /// Length of the connection-rate test (0: not run).
    pub crr_duration_secs: u64,
    pub thresholds: Thresholds,
    /// Cross-node pairs (`scope` cross-node).
    pub pairs: Vec<PairResult>,
    /// Two endpoints on one node (`scope` same-node): absolute figures, no underlay.
    pub same_node: Vec<PairResult>,
    /// Pod to ClusterIP and pod to NodePort (pods mode).
    pub services: Vec<ServiceResult>,
    /// Why a family of checks was not run (e.g. Services in netns mode), as `check: reason`.
    pub skipped: Vec<String>,
    /// Problems not tied to one pair (a node that could not be prepared).
    pub node_errors: Vec<(String, String)>,
    /// Problems of a node that no pair shows (e.g. br_netfilter missing breaks Services).
    pub node_warnings: Vec<(String, String)>,
    pub passed: bool,
    pub started: String,
    pub seconds: f64,
}

impl Report {
    pub fn pair(&self, from: &str, to: &str) -> Option<&PairResult> {
        self.pairs.iter().find(|p| p.from == from && p.to == to)
    }
}
