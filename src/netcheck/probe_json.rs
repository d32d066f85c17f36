//! The probe client's `--json` output as netcheck reads it back from a node: only the fields it
//! uses, every one optional, so a node running a slightly different build still parses.

use serde::Deserialize;

use super::model::Measurement;

#[derive(Debug, Default, Deserialize)]
pub struct ProbeOutput {
    #[serde(default)]
    pub tcp: Option<Tcp>,
    #[serde(default)]
    pub tcp_multi: Option<Tcp>,
    #[serde(default)]
    pub udp: Option<Udp>,
    #[serde(default)]
    pub rr: Option<Rr>,
    #[serde(default)]
    pub mtu: Option<Mtu>,
    #[serde(default)]
    pub crr: Option<Crr>,
    #[serde(default)]
    pub errors: Vec<TestError>,
}

#[derive(Debug, Deserialize)]
pub struct Tcp {
    pub bits_per_second: f64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub sent_bytes: u64,
    #[serde(default)]
    pub sender_cpu_seconds: Option<f64>,
    #[serde(default)]
    pub receiver_cpu_seconds: Option<f64>,
}

impl Tcp {
    /// CPU seconds per Gbit: (sender's over the Gbit it sent, receiver's over the Gbit it got).
    fn cpu_per_gbit(&self) -> (Option<f64>, Option<f64>) {
        let per = |cpu: Option<f64>, bytes: u64| {
            let gbit = bytes as f64 * 8.0 / 1e9;
            cpu.filter(|_| gbit > 0.0).map(|c| c / gbit)
        };
        (
            per(self.sender_cpu_seconds, self.sent_bytes),
            per(self.receiver_cpu_seconds, self.bytes),
        )
    }
}

#[derive(Debug, Deserialize)]
pub struct Crr {
    pub transactions_per_second: f64,
    #[serde(default)]
    pub p50_us: f64,
}

#[derive(Debug, Deserialize)]
pub struct Udp {
    pub bits_per_second: f64,
    #[serde(default)]
    pub loss_fraction: f64,
    #[serde(default)]
    pub jitter_ms: f64,
}

#[derive(Debug, Deserialize)]
pub struct Rr {
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Deserialize)]
pub struct Mtu {
    pub path_mtu: u32,
}

#[derive(Debug, Deserialize)]
pub struct TestError {
    #[serde(default)]
    pub test: serde_json::Value,
    #[serde(default)]
    pub kind: serde_json::Value,
    #[serde(default)]
    pub message: String,
}

fn word(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    }
}

impl ProbeOutput {
    pub fn into_measurement(self) -> Measurement {
        let (send_cpu, recv_cpu) = self.tcp.as_ref().map_or((None, None), |t| t.cpu_per_gbit());
        Measurement {
            tcp_bps: self.tcp.map(|t| t.bits_per_second),
            tcp_multi_bps: self.tcp_multi.map(|t| t.bits_per_second),
            udp_bps: self.udp.as_ref().map(|u| u.bits_per_second),
            udp_loss: self.udp.as_ref().map(|u| u.loss_fraction),
            udp_jitter_ms: self.udp.as_ref().map(|u| u.jitter_ms),
            rr_p50_us: self.rr.as_ref().map(|r| r.p50_us),
            rr_p99_us: self.rr.as_ref().map(|r| r.p99_us),
            path_mtu: self.mtu.map(|m| m.path_mtu),
            crr_per_sec: self.crr.as_ref().map(|c| c.transactions_per_second),
            crr_p50_us: self.crr.as_ref().map(|c| c.p50_us),
            tcp_sender_cpu_s_per_gbit: send_cpu,
            tcp_receiver_cpu_s_per_gbit: recv_cpu,
            bidir_out_bps: None,
            bidir_in_bps: None,
            errors: self
                .errors
                .iter()
                .map(|e| format!("{} ({}): {}", word(&e.test), word(&e.kind), e.message))
                .collect(),
            failed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_report_with_a_failed_test() {
        let json = r#"{"server":"10.244.1.254","tcp":{"streams":1,"seconds":3.0,"bytes":1,"bits_per_second":8.5e9},
            "udp":{"seconds":3,"datagram_size":1422,"sent":10,"received":9,"lost":1,"loss_fraction":0.1,
            "out_of_order":0,"jitter_ms":0.02,"bits_per_second":1.2e9},"rr":null,"mtu":{"path_mtu":1450,"probes":9},
            "errors":[{"test":"Rr","kind":"Timeout","message":"no answer in 2 s"}]}"#;
        let m: ProbeOutput = serde_json::from_str(json).unwrap();
        let m = m.into_measurement();
        assert_eq!(m.tcp_bps, Some(8.5e9));
        assert_eq!(m.udp_loss, Some(0.1));
        assert_eq!(m.path_mtu, Some(1450));
        assert_eq!(m.errors, vec!["rr (timeout): no answer in 2 s".to_string()]);
        assert!(m.ok());
        assert_eq!(m.crr_per_sec, None);
        assert_eq!(m.tcp_sender_cpu_s_per_gbit, None);
    }

    #[test]
    fn reads_connection_rate_and_cpu_per_gbit() {
        // 1.25e9 bytes = 10 Gbit; 2.5 s of sender CPU = 0.25 s/Gbit, 1.0 s receiver = 0.1.
        let json = r#"{"tcp":{"bits_per_second":8e9,"bytes":1250000000,"sent_bytes":1250000000,
            "sender_cpu_seconds":2.5,"receiver_cpu_seconds":1.0},
            "crr":{"count":900,"p50_us":310.0,"p99_us":800.0,"mean_us":330.0,"min_us":200.0,
            "max_us":900.0,"transactions_per_second":3000.0},"errors":[]}"#;
        let m = serde_json::from_str::<ProbeOutput>(json)
            .unwrap()
            .into_measurement();
        assert_eq!(m.crr_per_sec, Some(3000.0));
        assert_eq!(m.crr_p50_us, Some(310.0));
        assert!((m.tcp_sender_cpu_s_per_gbit.unwrap() - 0.25).abs() < 1e-9);
        assert!((m.tcp_receiver_cpu_s_per_gbit.unwrap() - 0.1).abs() < 1e-9);
        // No bytes moved: no per-Gbit figure rather than infinity.
        let json = r#"{"tcp":{"bits_per_second":0,"bytes":0,"sender_cpu_seconds":0.1}}"#;
        let m = serde_json::from_str::<ProbeOutput>(json)
            .unwrap()
            .into_measurement();
        assert_eq!(m.tcp_sender_cpu_s_per_gbit, None);
    }
}
