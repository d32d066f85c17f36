//! `director-boot probe` as separate processes on loopback: the server announces its port,
//! the client's JSON report parses, `--once` ends the server, a dead port fails fast.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_director-boot");

#[test]
fn server_and_client_processes() {
    let mut server = Command::new(BIN)
        .args([
            "--json",
            "probe",
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .args(["--once", "--idle-exit", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr: std::net::SocketAddr = listening["listening"].as_str().unwrap().parse().unwrap();

    let out = Command::new(BIN)
        .args(["--json", "probe", "client", "127.0.0.1", "--port"])
        .arg(addr.port().to_string())
        .args([
            "--tests",
            "tcp,rr,mtu",
            "--duration",
            "0.5",
            "--rr-count",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: director_boot::probe::ProbeReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.tcp.unwrap().bits_per_second > 0.0);
    assert_eq!(report.rr.unwrap().count, 100);
    assert!(report.mtu.unwrap().path_mtu >= 576);

    // --once: the server is gone after that session.
    let t0 = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            server.kill().unwrap();
            panic!("probe server --once did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_against_a_closed_port_fails_fast_with_a_named_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .args(["probe", "client", "127.0.0.1", "--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection refused"), "{err}");
    // Refused at once, not after the client's timeout (generous: the host may be loaded).
    assert!(t0.elapsed() < Duration::from_secs(30));
}
