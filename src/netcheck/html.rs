//! `--html FILE`: a self-contained report (no scripts, no external assets) with each metric as
//! an N×N heatmap. The page is the tera template `templates/netcheck/report.html`; this module
//! only turns the report into cells with a value, a label and a colour.

use serde::Serialize;

use super::model::{PairResult, Report};
use super::report::{cpu, gbit};
use crate::engine::render::{RenderError, Renderer};

#[derive(Serialize)]
struct Cell {
    label: String,
    title: String,
    color: String,
}

#[derive(Serialize)]
struct Heatmap {
    title: String,
    legend: String,
    rows: Vec<(String, Vec<Cell>)>,
}

/// A plain table of figures (every pair, same-node pairs, Services).
#[derive(Serialize)]
struct Table {
    title: String,
    note: String,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.0}%", v * 100.0))
}

fn verdict(passed: bool) -> String {
    if passed { "pass" } else { "FAIL" }.into()
}

fn tables(r: &Report) -> Vec<Table> {
    let mut out = vec![Table {
        title: "Every cross-node pair".into(),
        note: "overlay (underlay); efficiency = overlay / underlay. Both directions: one stream \
               each way, started together. Connections/s: connect, 1-byte request, 1-byte \
               response, close. CPU: the probe processes' own CPU seconds per Gbit of the \
               single-stream test, sender/receiver."
            .into(),
        headers: vec![
            "from → to",
            "backend",
            "encrypted",
            "TCP 1 stream Gbit/s",
            "eff.",
            "TCP N streams Gbit/s",
            "eff. N",
            "both directions Gbit/s",
            "eff. both",
            "conn/s",
            "RR p50 µs",
            "CPU s/Gbit",
            "verdict",
        ],
        rows: r
            .pairs
            .iter()
            .map(|p| {
                let (o, u) = (&p.overlay, &p.underlay);
                vec![
                    format!("{} → {}", p.from, p.to),
                    p.backend.clone(),
                    if p.encrypted { "yes" } else { "no" }.into(),
                    format!("{} ({})", gbit(o.tcp_bps), gbit(u.tcp_bps)),
                    pct(p.efficiency),
                    format!("{} ({})", gbit(o.tcp_multi_bps), gbit(u.tcp_multi_bps)),
                    pct(p.multi_efficiency),
                    format!(
                        "{}+{} ({}+{})",
                        gbit(o.bidir_out_bps),
                        gbit(o.bidir_in_bps),
                        gbit(u.bidir_out_bps),
                        gbit(u.bidir_in_bps)
                    ),
                    pct(p.bidir_efficiency),
                    format!("{} ({})", opt(o.crr_per_sec, 0), opt(u.crr_per_sec, 0)),
                    format!("{} ({})", opt(o.rr_p50_us, 0), opt(u.rr_p50_us, 0)),
                    format!("{} ({})", cpu(o), cpu(u)),
                    verdict(p.passed),
                ]
            })
            .collect(),
    }];
    if !r.same_node.is_empty() {
        out.push(Table {
            title: "Same node".into(),
            note: "two probe endpoints on one node's pod bridge: no overlay and no underlay to \
                   compare with, so absolute figures, failed only when they do not connect"
                .into(),
            headers: vec![
                "node",
                "TCP 1 stream Gbit/s",
                "RR p50/p99 µs",
                "conn/s",
                "CPU s/Gbit",
                "verdict",
            ],
            rows: r
                .same_node
                .iter()
                .map(|p| {
                    let m = &p.overlay;
                    vec![
                        p.from.clone(),
                        gbit(m.tcp_bps),
                        format!("{}/{}", opt(m.rr_p50_us, 0), opt(m.rr_p99_us, 0)),
                        opt(m.crr_per_sec, 0),
                        cpu(m),
                        if p.passed {
                            verdict(true)
                        } else {
                            format!("FAIL: {}", p.failures.join("; "))
                        },
                    ]
                })
                .collect(),
        });
    }
    if !r.services.is_empty() {
        out.push(Table {
            title: "Services, through kube-proxy".into(),
            note: "pod → Service → the probe pod on another node; in brackets the same two pods \
                   directly"
                .into(),
            headers: vec![
                "from",
                "kind",
                "dialled",
                "endpoint on",
                "TCP Gbit/s",
                "RR p50 µs",
                "conn/s",
                "verdict",
            ],
            rows: r
                .services
                .iter()
                .map(|s| {
                    let m = &s.measurement;
                    vec![
                        s.from.clone(),
                        s.kind.clone(),
                        match &s.via {
                            Some(v) => format!("{} ({v})", s.address),
                            None => s.address.clone(),
                        },
                        s.to.clone(),
                        format!("{} ({})", gbit(m.tcp_bps), gbit(s.direct_tcp_bps)),
                        format!("{} ({})", opt(m.rr_p50_us, 0), opt(s.direct_rr_p50_us, 0)),
                        format!(
                            "{} ({})",
                            opt(m.crr_per_sec, 0),
                            opt(s.direct_crr_per_sec, 0)
                        ),
                        if s.passed {
                            verdict(true)
                        } else {
                            let d = s.diagnoses.first().map_or(String::new(), |d| {
                                format!(" [{}] {} — fix: {}", d.code, d.summary, d.fix)
                            });
                            format!("FAIL: {}{d}", s.failures.join("; "))
                        },
                    ]
                })
                .collect(),
        });
    }
    out
}

/// Red (0.0) through amber to green (1.0).
fn color(score: Option<f64>) -> String {
    match score {
        None => "#d0d0d0".into(),
        Some(s) => {
            let hue = (s.clamp(0.0, 1.0) * 120.0).round();
            format!("hsl({hue}, 70%, 72%)")
        }
    }
}

fn heatmap(
    r: &Report,
    title: &str,
    legend: &str,
    f: impl Fn(&PairResult) -> (String, Option<f64>),
) -> Heatmap {
    let rows = r
        .nodes
        .iter()
        .map(|from| {
            let cells = r
                .nodes
                .iter()
                .map(|to| {
                    if from == to {
                        return Cell {
                            label: "–".into(),
                            title: String::new(),
                            color: "#f4f4f4".into(),
                        };
                    }
                    match r.pair(from, to) {
                        None => Cell {
                            label: "·".into(),
                            title: "not sampled".into(),
                            color: "#f4f4f4".into(),
                        },
                        Some(p) if !p.overlay.ok() => Cell {
                            label: "FAIL".into(),
                            title: p
                                .diagnoses
                                .first()
                                .map(|d| d.summary.clone())
                                .or_else(|| p.overlay.failed.clone())
                                .unwrap_or_default(),
                            color: color(Some(0.0)),
                        },
                        Some(p) => {
                            let (label, score) = f(p);
                            Cell {
                                label,
                                title: format!(
                                    "{from} → {to}: {}{}",
                                    p.backend,
                                    if p.encrypted { ", encrypted" } else { "" }
                                ),
                                color: color(score),
                            }
                        }
                    }
                })
                .collect();
            (from.clone(), cells)
        })
        .collect();
    Heatmap {
        title: title.into(),
        legend: legend.into(),
        rows,
    }
}

pub fn render(renderer: &Renderer, r: &Report) -> Result<String, RenderError> {
    let min = r.thresholds.min_efficiency;
    let max_loss = r.thresholds.max_udp_loss.max(1e-6);
    let maps = vec![
        heatmap(
            r,
            "TCP, 1 stream: overlay / underlay efficiency",
            "green: the overlay is as fast as the underlay, red: half as fast or worse; Gbit/s as overlay (underlay)",
            |p| {
                (
                    format!(
                        "{:.0}%{} · {} ({}) Gbit/s · {}{}",
                        p.efficiency.unwrap_or(0.0) * 100.0,
                        p.multi_efficiency
                            .map_or(String::new(), |m| format!(" (N streams {:.0}%)", m * 100.0)),
                        gbit(p.overlay.tcp_bps),
                        gbit(p.underlay.tcp_bps),
                        p.backend,
                        if p.encrypted { "+wg" } else { "" }
                    ),
                    p.efficiency.map(|e| (e - 0.5) * 2.0),
                )
            },
        ),
        heatmap(
            r,
            "UDP: received Gbit/s and loss",
            "green: no loss, red: loss at or above the threshold",
            |p| {
                let l = p.overlay.udp_loss;
                (
                    format!(
                        "{} Gbit/s · {:.2}% lost",
                        gbit(p.overlay.udp_bps),
                        l.unwrap_or(0.0) * 100.0
                    ),
                    l.map(|l| 1.0 - (l / max_loss).min(1.0)),
                )
            },
        ),
        heatmap(
            r,
            "Latency p50 / p99 (µs) and path MTU",
            "green: path MTU equals the overlay MTU",
            |p| {
                (
                    format!(
                        "{:.0} / {:.0} µs · MTU {}",
                        p.overlay.rr_p50_us.unwrap_or(0.0),
                        p.overlay.rr_p99_us.unwrap_or(0.0),
                        p.overlay.path_mtu.map_or("—".into(), |m| m.to_string())
                    ),
                    p.overlay
                        .path_mtu
                        .map(|m| if m >= r.overlay_mtu { 1.0 } else { 0.3 }),
                )
            },
        ),
    ];
    let failed: Vec<&PairResult> = r.pairs.iter().filter(|p| !p.passed).collect();
    let mut ctx = tera::Context::new();
    ctx.insert("report", r);
    ctx.insert("maps", &maps);
    ctx.insert("tables", &tables(r));
    ctx.insert("failed", &failed);
    ctx.insert("min_efficiency_pct", &format!("{:.0}", min * 100.0));
    ctx.insert(
        "max_udp_loss_pct",
        &format!("{:.2}", r.thresholds.max_udp_loss * 100.0),
    );
    renderer.render("netcheck/report.html", &ctx)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::netcheck::model::{Diagnosis, Measurement, Thresholds};

    pub fn sample() -> Report {
        let m = |tcp: f64| Measurement {
            tcp_bps: Some(tcp),
            udp_bps: Some(9.5e8),
            udp_loss: Some(0.0),
            rr_p50_us: Some(80.0),
            rr_p99_us: Some(200.0),
            path_mtu: Some(1450),
            ..Measurement::default()
        };
        let nodes: Vec<String> = ["node1", "node2", "node<3>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut pairs = Vec::new();
        for a in &nodes {
            for b in &nodes {
                if a == b {
                    continue;
                }
                let dead = b == "node<3>";
                pairs.push(PairResult {
                    scope: crate::netcheck::model::Scope::CrossNode,
                    from: a.clone(),
                    to: b.clone(),
                    backend: "direct".into(),
                    encrypted: false,
                    overlay: if dead {
                        Measurement::failed("connect timeout")
                    } else {
                        m(8e9)
                    },
                    underlay: m(10e9),
                    efficiency: (!dead).then_some(0.8),
                    multi_efficiency: (!dead).then_some(0.95),
                    bidir_efficiency: None,
                    remeasured: false,
                    passed: !dead,
                    failures: if dead {
                        vec!["overlay: connect timeout".into()]
                    } else {
                        vec![]
                    },
                    diagnoses: if dead {
                        vec![Diagnosis {
                            code: "blocked-overlay-port",
                            host: Some(b.clone()),
                            summary: "node<3> drops UDP 8472".into(),
                            fix: "remove the rule".into(),
                            evidence: vec!["-A INPUT -p udp --dport 8472 -j DROP".into()],
                        }]
                    } else {
                        vec![]
                    },
                    seconds: 9.0,
                });
            }
        }
        Report {
            cluster: "lab".into(),
            mode: "netns".into(),
            nodes,
            overlay_mtu: 1450,
            duration_secs: 3,
            crr_duration_secs: 1,
            thresholds: Thresholds {
                min_efficiency: 0.7,
                max_udp_loss: 0.05,
            },
            pairs,
            same_node: vec![],
            services: vec![],
            skipped: vec![],
            node_errors: vec![],
            node_warnings: vec![],
            passed: false,
            started: "2026-11-23T04:00:00Z".into(),
            seconds: 60.0,
        }
    }

    #[test]
    fn the_page_has_a_heatmap_per_metric_and_escapes_names() {
        let page = render(&Renderer::new().unwrap(), &sample()).unwrap();
        assert_eq!(page.matches("<table class=\"heat\">").count(), 3);
        assert!(page.contains("node&lt;3&gt;"));
        assert!(!page.contains("node<3>"));
        assert!(
            page.contains("hsl(72, 70%, 72%)"),
            "80% efficiency is yellow-green"
        );
        assert!(page.contains("[blocked-overlay-port]"));
        assert!(!page.contains("<script"), "self-contained, no scripts");
    }

    #[test]
    fn the_terminal_report_has_the_matrices_and_the_diagnosis() {
        let text = crate::netcheck::report::render(&sample());
        assert!(text.contains("TCP, 1 stream, Gbit/s: overlay (underlay) efficiency"));
        assert!(text.contains("8.00 (10.00) 80%"), "{text}");
        assert!(text.contains("FAIL node1 → node<3>"), "{text}");
        assert!(text.contains("diagnosis [blocked-overlay-port]"), "{text}");
        assert!(text.contains("FAIL: 4 of 6 pairs passed"), "{text}");
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["pairs"][0]["efficiency"], 0.8);
    }

    #[test]
    fn same_node_pairs_services_and_the_new_figures_show_in_every_output() {
        use crate::netcheck::model::{Scope, ServiceResult};
        let mut r = sample();
        let p = &mut r.pairs[0];
        p.overlay.bidir_out_bps = Some(4e9);
        p.overlay.bidir_in_bps = Some(3e9);
        p.underlay.bidir_out_bps = Some(5e9);
        p.underlay.bidir_in_bps = Some(5e9);
        p.bidir_efficiency = Some(0.7);
        p.overlay.tcp_multi_bps = Some(9e9);
        p.underlay.tcp_multi_bps = Some(10e9);
        p.overlay.crr_per_sec = Some(2500.0);
        p.underlay.crr_per_sec = Some(3100.0);
        p.overlay.tcp_sender_cpu_s_per_gbit = Some(0.031);
        p.overlay.tcp_receiver_cpu_s_per_gbit = Some(0.052);
        let mut same = r.pairs[0].clone();
        same.scope = Scope::SameNode;
        same.to = same.from.clone();
        same.backend = "bridge".into();
        r.same_node.push(same);
        let service = |kind: &str, passed: bool| ServiceResult {
            kind: kind.into(),
            from: "node1".into(),
            to: "node2".into(),
            via: (kind == "nodeport").then(|| "node<3>".into()),
            address: "10.96.0.10:5299".into(),
            measurement: if passed {
                Measurement {
                    tcp_bps: Some(7e9),
                    rr_p50_us: Some(40.0),
                    crr_per_sec: Some(900.0),
                    ..Measurement::default()
                }
            } else {
                Measurement::failed("connection refused")
            },
            direct_tcp_bps: Some(8e9),
            direct_rr_p50_us: Some(30.0),
            direct_crr_per_sec: Some(2500.0),
            passed,
            failures: if passed {
                vec![]
            } else {
                vec!["nodeport 10.96.0.10:5299: connection refused".into()]
            },
            diagnoses: if passed {
                vec![]
            } else {
                vec![Diagnosis {
                    code: "service-path",
                    host: Some("node<3>".into()),
                    summary: "kube-proxy is not running on node<3>".into(),
                    fix: "systemctl status kube-proxy".into(),
                    evidence: vec![],
                }]
            },
            seconds: 3.0,
        };
        r.services = vec![service("clusterip", true), service("nodeport", false)];

        let text = crate::netcheck::report::render(&r);
        assert!(text.contains("Both directions at once"), "{text}");
        assert!(text.contains("4.00+3.00 (5.00+5.00) 70%"), "{text}");
        assert!(text.contains("2500 (3100)"), "{text}");
        assert!(text.contains("0.03/0.05"), "{text}");
        // Multi-stream efficiency beside single-stream's.
        assert!(text.contains("9.00 (10.00) 95% [80%]"), "{text}");
        assert!(text.contains("Same node"), "{text}");
        assert!(
            text.contains("clusterip 10.96.0.10:5299 → pod on node2: TCP 7.00 Gbit/s [8.00]"),
            "{text}"
        );
        assert!(text.contains("FAIL nodeport 10.96.0.10:5299"), "{text}");
        assert!(text.contains("diagnosis [service-path]"), "{text}");
        assert!(
            text.contains("1 of 2 same-node and Service checks passed")
                || text.contains("2 of 3 same-node and Service checks passed"),
            "{text}"
        );

        let page = render(&Renderer::new().unwrap(), &r).unwrap();
        assert_eq!(page.matches("<table class=\"heat\">").count(), 3);
        assert!(page.contains("Every cross-node pair"));
        assert!(page.contains("Same node"));
        assert!(page.contains("Services, through kube-proxy"));
        assert!(page.contains("(N streams 95%)"));
        assert!(page.contains("[service-path] kube-proxy is not running on node&lt;3&gt;"));

        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["pairs"][0]["scope"], "cross-node");
        assert_eq!(json["same_node"][0]["scope"], "same-node");
        assert_eq!(json["pairs"][0]["overlay"]["bidir_in_bps"], 3e9);
        assert_eq!(json["pairs"][0]["multi_efficiency"], 0.95);
        assert_eq!(json["services"][1]["kind"], "nodeport");
        assert_eq!(json["services"][1]["diagnoses"][0]["code"], "service-path");
    }
}
