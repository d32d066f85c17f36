//! The terminal report: N×N matrices (rows send, columns receive) for TCP and UDP with the
//! underlay baseline and the overlay/underlay efficiency, then latency and path MTU, then every
//! failed pair with its diagnosis. Big clusters get a worst-first list instead of matrices.

use std::fmt::Write;

use super::model::{Measurement, PairResult, Report, ServiceResult};

/// Above this many nodes a matrix no longer fits a terminal.
const MATRIX_MAX_NODES: usize = 6;

pub fn gbit(bps: Option<f64>) -> String {
    match bps {
        Some(b) => format!("{:.2}", b / 1e9),
        None => "—".into(),
    }
}

fn pct(f: Option<f64>) -> String {
    match f {
        Some(f) => format!("{:.0}%", f * 100.0),
        None => "—".into(),
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "—".into(),
    }
}

/// `sender/receiver` CPU seconds per Gbit of a single-stream transfer.
pub fn cpu(m: &Measurement) -> String {
    format!(
        "{}/{}",
        num(m.tcp_sender_cpu_s_per_gbit, 2),
        num(m.tcp_receiver_cpu_s_per_gbit, 2)
    )
}

fn loss(f: Option<f64>) -> String {
    match f {
        Some(f) if f > 0.0 && f < 0.0001 => "<0.01%".into(),
        Some(f) => format!("{:.2}%", f * 100.0),
        None => "—".into(),
    }
}

fn cell(p: Option<&PairResult>, f: impl Fn(&PairResult) -> String) -> String {
    match p {
        None => "·".into(),
        Some(p) if p.overlay.failed.is_some() && p.overlay.tcp_bps.is_none() => "FAIL".into(),
        Some(p) => f(p),
    }
}

fn matrix(out: &mut String, title: &str, r: &Report, f: impl Fn(&PairResult) -> String + Copy) {
    let w = r.nodes.iter().map(String::len).max().unwrap_or(4).max(4);
    let cells: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|from| {
            r.nodes
                .iter()
                .map(|to| {
                    if from == to {
                        "-".into()
                    } else {
                        cell(r.pair(from, to), f)
                    }
                })
                .collect()
        })
        .collect();
    let cw = cells
        .iter()
        .flatten()
        .map(|c| c.chars().count())
        .chain(r.nodes.iter().map(String::len))
        .max()
        .unwrap_or(4);
    let _ = writeln!(out, "{title}");
    let _ = write!(out, "  {:<w$}", "from \\ to");
    for n in &r.nodes {
        let _ = write!(out, "  {n:>cw$}");
    }
    let _ = writeln!(out);
    for (from, row) in r.nodes.iter().zip(&cells) {
        let _ = write!(out, "  {from:<w$}");
        for c in row {
            let pad = cw.saturating_sub(c.chars().count());
            let _ = write!(out, "  {}{c}", " ".repeat(pad));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
}

fn measured(m: &Measurement) -> String {
    format!(
        "TCP {} Gbit/s, UDP {} Gbit/s loss {}, RR p50 {} µs, path MTU {}",
        gbit(m.tcp_bps),
        gbit(m.udp_bps),
        loss(m.udp_loss),
        m.rr_p50_us.map_or("—".into(), |v| format!("{v:.0}")),
        m.path_mtu.map_or("—".into(), |v| v.to_string()),
    )
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "netcheck {}: {} nodes, {} pairs, mode {}, overlay MTU {}, {} s per test",
        r.cluster,
        r.nodes.len(),
        r.pairs.len(),
        r.mode,
        r.overlay_mtu,
        r.duration_secs
    );
    let _ = writeln!(out);
    if r.nodes.len() <= MATRIX_MAX_NODES {
        matrix(&mut out, "Path (backend, +wg when encrypted)", r, |p| {
            format!("{}{}", p.backend, if p.encrypted { "+wg" } else { "" })
        });
        matrix(
            &mut out,
            "TCP, 1 stream, Gbit/s: overlay (underlay) efficiency",
            r,
            |p| {
                format!(
                    "{} ({}) {}",
                    gbit(p.overlay.tcp_bps),
                    gbit(p.underlay.tcp_bps),
                    pct(p.efficiency)
                )
            },
        );
        if r.pairs.iter().any(|p| p.overlay.tcp_multi_bps.is_some()) {
            matrix(
                &mut out,
                "TCP, N streams, Gbit/s: overlay (underlay) efficiency [1-stream efficiency]",
                r,
                |p| {
                    format!(
                        "{} ({}) {} [{}]",
                        gbit(p.overlay.tcp_multi_bps),
                        gbit(p.underlay.tcp_multi_bps),
                        pct(p.multi_efficiency),
                        pct(p.efficiency)
                    )
                },
            );
        }
        if r.pairs.iter().any(|p| p.overlay.bidir_out_bps.is_some()) {
            matrix(
                &mut out,
                "Both directions at once, Gbit/s: overlay out+in (underlay out+in) efficiency",
                r,
                |p| {
                    format!(
                        "{}+{} ({}+{}) {}",
                        gbit(p.overlay.bidir_out_bps),
                        gbit(p.overlay.bidir_in_bps),
                        gbit(p.underlay.bidir_out_bps),
                        gbit(p.underlay.bidir_in_bps),
                        pct(p.bidir_efficiency)
                    )
                },
            );
        }
        if r.pairs.iter().any(|p| p.overlay.crr_per_sec.is_some()) {
            matrix(
                &mut out,
                "Connections/s (connect, request, response, close): overlay (underlay)",
                r,
                |p| {
                    format!(
                        "{} ({})",
                        num(p.overlay.crr_per_sec, 0),
                        num(p.underlay.crr_per_sec, 0)
                    )
                },
            );
        }
        if r.pairs
            .iter()
            .any(|p| p.overlay.tcp_sender_cpu_s_per_gbit.is_some())
        {
            matrix(
                &mut out,
                "CPU s per Gbit, 1 stream, sender/receiver: overlay (underlay)",
                r,
                |p| format!("{} ({})", cpu(&p.overlay), cpu(&p.underlay)),
            );
        }
        matrix(
            &mut out,
            "UDP, Gbit/s received: overlay (underlay), overlay loss",
            r,
            |p| {
                format!(
                    "{} ({}) {}",
                    gbit(p.overlay.udp_bps),
                    gbit(p.underlay.udp_bps),
                    loss(p.overlay.udp_loss)
                )
            },
        );
        matrix(
            &mut out,
            "Request/response latency p50/p99 µs (overlay), path MTU",
            r,
            |p| {
                format!(
                    "{}/{} {}",
                    p.overlay
                        .rr_p50_us
                        .map_or("—".into(), |v| format!("{v:.0}")),
                    p.overlay
                        .rr_p99_us
                        .map_or("—".into(), |v| format!("{v:.0}")),
                    p.overlay.path_mtu.map_or("—".into(), |v| v.to_string())
                )
            },
        );
    } else {
        let mut worst: Vec<&PairResult> = r.pairs.iter().collect();
        worst.sort_by(|a, b| {
            a.efficiency
                .unwrap_or(-1.0)
                .total_cmp(&b.efficiency.unwrap_or(-1.0))
        });
        let _ = writeln!(out, "pairs, worst efficiency first:");
        for p in worst {
            let _ = writeln!(
                out,
                "  {:>12} → {:<12} {:<7}{} {} ({}) Gbit/s {} (N streams {})  UDP loss {}  {} conn/s  CPU s/Gbit {}",
                p.from,
                p.to,
                p.backend,
                if p.encrypted { "+wg" } else { "" },
                gbit(p.overlay.tcp_bps),
                gbit(p.underlay.tcp_bps),
                pct(p.efficiency),
                pct(p.multi_efficiency),
                loss(p.overlay.udp_loss),
                num(p.overlay.crr_per_sec, 0),
                cpu(&p.overlay),
            );
        }
        let _ = writeln!(out);
    }
    if !r.same_node.is_empty() {
        let _ = writeln!(
            out,
            "Same node (two endpoints on one node's pod bridge: no overlay, no underlay baseline, absolute figures)"
        );
        for p in &r.same_node {
            let m = &p.overlay;
            let _ = writeln!(
                out,
                "  {:<14} TCP {} Gbit/s, RR p50/p99 {}/{} µs, {} conn/s, CPU s/Gbit {}{}",
                p.from,
                gbit(m.tcp_bps),
                num(m.rr_p50_us, 0),
                num(m.rr_p99_us, 0),
                num(m.crr_per_sec, 0),
                cpu(m),
                if p.passed { "" } else { "  FAIL" }
            );
        }
        let _ = writeln!(out);
    }
    if !r.services.is_empty() {
        let _ = writeln!(
            out,
            "Services (pod → Service → probe pod, through kube-proxy; direct pod → pod in brackets)"
        );
        for s in &r.services {
            let _ = writeln!(out, "  {}", service_line(s));
        }
        let _ = writeln!(out);
    }
    for why in &r.skipped {
        let _ = writeln!(out, "not measured: {why}");
    }
    for (node, e) in &r.node_errors {
        let _ = writeln!(out, "{node}: {e}");
    }
    for (node, w) in &r.node_warnings {
        let _ = writeln!(out, "warning: {node}: {w}");
    }
    let failed: Vec<&PairResult> = r.pairs.iter().filter(|p| !p.passed).collect();
    for p in &failed {
        let _ = writeln!(out, "FAIL {} → {}: {}", p.from, p.to, p.failures.join("; "));
        let _ = writeln!(out, "  overlay:  {}", measured(&p.overlay));
        let _ = writeln!(out, "  underlay: {}", measured(&p.underlay));
        for d in &p.diagnoses {
            let _ = writeln!(out, "  diagnosis [{}]: {}", d.code, d.summary);
            for e in &d.evidence {
                let _ = writeln!(out, "    evidence: {e}");
            }
            let _ = writeln!(out, "    fix: {}", d.fix);
        }
    }
    for p in r.same_node.iter().filter(|p| !p.passed) {
        let _ = writeln!(out, "FAIL same node {}: {}", p.from, p.failures.join("; "));
    }
    for s in r.services.iter().filter(|s| !s.passed) {
        let _ = writeln!(out, "FAIL {}", s.failures.join("; "));
        for d in &s.diagnoses {
            let _ = writeln!(out, "  diagnosis [{}]: {}", d.code, d.summary);
            for e in &d.evidence {
                let _ = writeln!(out, "    evidence: {e}");
            }
            let _ = writeln!(out, "    fix: {}", d.fix);
        }
    }
    let extra_failed = r.same_node.iter().filter(|p| !p.passed).count()
        + r.services.iter().filter(|s| !s.passed).count();
    let extras = if r.same_node.is_empty() && r.services.is_empty() {
        String::new()
    } else {
        format!(
            ", {} of {} same-node and Service checks passed",
            r.same_node.len() + r.services.len() - extra_failed,
            r.same_node.len() + r.services.len()
        )
    };
    let _ = writeln!(
        out,
        "{}: {} of {} pairs passed (efficiency ≥ {:.0}%, UDP loss ≤ {:.2}%){extras} in {:.0} s",
        if r.passed { "PASS" } else { "FAIL" },
        r.pairs.len() - failed.len(),
        r.pairs.len(),
        r.thresholds.min_efficiency * 100.0,
        r.thresholds.max_udp_loss * 100.0,
        r.seconds
    );
    out
}

/// One Service check on one line.
pub fn service_line(s: &ServiceResult) -> String {
    let m = &s.measurement;
    let via = s.via.as_ref().map_or(String::new(), |v| format!(" on {v}"));
    format!(
        "{:<12} → {:<9} {}{via} → pod on {}: TCP {} Gbit/s [{}], RR p50 {} µs [{}], {} conn/s [{}]{}",
        s.from,
        s.kind,
        s.address,
        s.to,
        gbit(m.tcp_bps),
        gbit(s.direct_tcp_bps),
        num(m.rr_p50_us, 0),
        num(s.direct_rr_p50_us, 0),
        num(m.crr_per_sec, 0),
        num(s.direct_crr_per_sec, 0),
        if s.passed { "" } else { "  FAIL" }
    )
}
