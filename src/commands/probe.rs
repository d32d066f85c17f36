use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{ProbeClientArgs, ProbeCommand};
use crate::probe::{self, ClientOptions, ProbeReport, ServerOptions};

pub async fn run(command: ProbeCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        ProbeCommand::Server {
            bind,
            port,
            idle_exit,
            once,
        } => {
            let opts = ServerOptions {
                bind,
                port,
                idle_exit: (idle_exit > 0).then(|| Duration::from_secs(idle_exit)),
                once,
            };
            let server = probe::Server::bind(&opts).await?;
            let addr = server.local_addr();
            // Announce the bound address (the port may have been 0) before serving.
            if json {
                println!("{}", serde_json::json!({ "listening": addr.to_string() }));
            } else {
                eprintln!("probe server listening on {addr} (tcp+udp)");
            }
            server.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        ProbeCommand::Client(args) => client(args, json).await,
    }
}

async fn client(args: ProbeClientArgs, json: bool) -> anyhow::Result<ExitCode> {
    let server = resolve(&args.server, args.port).await?;
    let mut opts = ClientOptions::new(server);
    opts.port = args.port;
    opts.tests = args.tests;
    opts.streams = args.streams;
    opts.data_threads = args.data_threads;
    opts.duration = Duration::from_secs_f64(args.duration);
    opts.omit = Duration::from_secs_f64(args.omit);
    opts.udp_bitrate = args.udp_bitrate;
    opts.udp_size = args.udp_size.0;
    opts.rr_count = args.rr_count;
    opts.crr_duration = Duration::from_secs_f64(args.crr_duration);
    opts.max_mtu = args.max_mtu;
    opts.timeout = match args.timeout {
        Some(t) => Duration::from_secs_f64(t),
        None => opts.suggested_timeout(),
    };
    let report = probe::run_client(&opts).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn resolve(host: &str, port: u16) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let mut addrs: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .with_context(|| format!("resolving {host}: timed out"))?
    .with_context(|| format!("resolving {host}"))?
    .collect();
    // Prefer IPv4: the MTU figures and the overlay are IPv4.
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs
        .first()
        .map(|a| a.ip())
        .with_context(|| format!("{host} has no address"))
}

fn bits(bps: f64) -> String {
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gbit/s")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mbit/s")
    } else {
        (bps / 1e3, "kbit/s")
    };
    format!("{v:.2} {unit}")
}

fn human(r: &ProbeReport) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (name, t) in [("tcp", &r.tcp), ("tcp-multi", &r.tcp_multi)] {
        if let Some(t) = t {
            let retrans = t
                .retransmits
                .map(|n| format!(", {n} retransmits"))
                .unwrap_or_default();
            let gbits = t.bytes as f64 * 8.0 / 1e9;
            let cpu = match (t.sender_cpu_seconds, t.receiver_cpu_seconds) {
                (Some(s), Some(r)) if gbits > 0.0 => format!(
                    ", CPU s/Gbit sender {:.3} receiver {:.3}",
                    s / gbits,
                    r / gbits
                ),
                _ => String::new(),
            };
            rows.push(vec![
                name.into(),
                format!(
                    "{} at the receiver ({} stream{}, {:.2} s, {:.1} MiB{retrans}{cpu})",
                    bits(t.bits_per_second),
                    t.streams,
                    if t.streams == 1 { "" } else { "s" },
                    t.seconds,
                    t.bytes as f64 / (1024.0 * 1024.0),
                ),
            ]);
        }
    }
    if let Some(u) = &r.udp {
        rows.push(vec![
            "udp".into(),
            format!(
                "{} received of {} sent, loss {:.2}% ({}/{}), jitter {:.3} ms, \
                 {} out of order, {}-byte datagrams",
                bits(u.bits_per_second),
                bits(u.sent_bits_per_second),
                u.loss_fraction * 100.0,
                u.lost,
                u.sent,
                u.jitter_ms,
                u.out_of_order,
                u.datagram_size,
            ),
        ]);
    }
    if let Some(x) = &r.rr {
        rows.push(vec![
            "rr".into(),
            format!(
                "p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs, {:.0} transactions/s ({})",
                x.p50_us, x.p99_us, x.mean_us, x.transactions_per_second, x.count
            ),
        ]);
    }
    if let Some(x) = &r.crr {
        rows.push(vec![
            "crr".into(),
            format!(
                "{:.0} connections/s (connect, request, response, close), p50 {:.1} µs, p99 {:.1} µs ({})",
                x.transactions_per_second, x.p50_us, x.p99_us, x.count
            ),
        ]);
    }
    if let Some(m) = &r.mtu {
        let local = m
            .local_mtu
            .map(|l| format!("local route {l}, "))
            .unwrap_or_default();
        rows.push(vec![
            "mtu".into(),
            format!("path {} ({local}{} probes)", m.path_mtu, m.probes),
        ]);
    }
    for e in &r.errors {
        rows.push(vec![
            e.test.to_string(),
            format!("FAILED ({:?}): {}", e.kind, e.message),
        ]);
    }
    format!(
        "probe server {}\n{}",
        r.server,
        crate::output::table(&["TEST", "RESULT"], &rows)
    )
}
