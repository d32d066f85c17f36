//! netcheck: container-to-container TCP and UDP across the overlay, with the same pair measured
//! host to host on the underlay as the baseline, pass/fail against thresholds, and a diagnosis
//! for each failed pair (blocked VXLAN port, MTU, rp_filter, forwarding). Beside those
//! cross-node pairs: same-node pairs (a second endpoint per node), pod to ClusterIP and to
//! NodePort through kube-proxy, connection rate, both directions at once, multi-stream
//! efficiency and CPU seconds per Gbit on each side.
//!
//! The probe itself is `director-boot probe` (src/probe), uploaded to the nodes; this module
//! orchestrates it (`run`), explains failures (`diagnose`, from `facts`) and reports (`report`
//! for the terminal, `html` for `--html`, the `model` types for `--json`).

pub mod diagnose;
pub mod facts;
pub mod html;
pub mod model;
mod pods;
pub mod probe_image;
mod probe_json;
pub mod report;
pub mod run;

pub use crate::engine::context::VXLAN_OVERHEAD;
