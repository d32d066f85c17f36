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
    pub passed: bool,
    /// Why the pair failed its thresholds (empty when it passed).
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
    pub thresholds: Thresholds,
    pub pairs: Vec<PairResult>,
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
