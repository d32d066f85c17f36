//! Facts about a host, gathered in one round trip by `templates/scripts/facts.sh`.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::osfamily::{OsFamily, OsRelease};

/// The remote probe; `$1` is a peer address.
pub const FACTS_SCRIPT: &str = include_str!("../templates/scripts/facts.sh");

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    pub hostname: String,
    pub machine_id: String,
    pub os: OsRelease,
    pub family: Option<OsFamily>,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Name of PID 1 (`systemd` on every supported host).
    pub init_system: String,
    /// Interface and source address used to reach the other hosts.
    pub interface: String,
    pub address: String,
    pub mtu: Option<u32>,
    /// Host clock minus control-machine clock, in milliseconds (round trip halved).
    pub time_offset_ms: i64,
    /// Decompressors on PATH, for compressed uploads.
    pub has_zstd: bool,
    pub has_gzip: bool,
    /// firewalld is running (then each role's ports are opened, on any OS family).
    pub firewalld_active: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("facts probe output lacks {0}")]
pub struct MissingFact(pub &'static str);

impl Facts {
    /// Parse the probe's KEY=value output. `sent` and `received` are the control machine's
    /// clock (seconds since the epoch) around the probe, to estimate the offset.
    pub fn parse(output: &str, sent: f64, received: f64) -> Result<Facts, MissingFact> {
        let mut kv: HashMap<&str, &str> = HashMap::new();
        let mut os_text = String::new();
        for line in output.lines() {
            if let Some(rest) = line.strip_prefix("os_") {
                os_text.push_str(rest);
                os_text.push('\n');
            } else if let Some((k, v)) = line.split_once('=') {
                kv.insert(k, v.trim());
            }
        }
        let get = |k: &'static str| kv.get(k).copied().ok_or(MissingFact(k));
        let now: f64 = get("now")?.parse().map_err(|_| MissingFact("now"))?;
        let midpoint = (sent + received) / 2.0;
        let os = OsRelease::parse(&os_text);
        Ok(Facts {
            hostname: get("hostname")?.to_string(),
            machine_id: kv.get("machine_id").copied().unwrap_or("").to_string(),
            family: OsFamily::detect(&os),
            os,
            kernel: get("kernel")?.to_string(),
            arch: get("arch")?.to_string(),
            cpus: get("cpus")?.parse().map_err(|_| MissingFact("cpus"))?,
            memory_mib: get("mem_kib")?
                .parse::<u64>()
                .map_err(|_| MissingFact("mem_kib"))?
                / 1024,
            init_system: kv.get("init").copied().unwrap_or("").to_string(),
            interface: kv.get("iface").copied().unwrap_or("").to_string(),
            address: kv.get("address").copied().unwrap_or("").to_string(),
            mtu: kv.get("mtu").and_then(|m| m.parse().ok()),
            time_offset_ms: ((now - midpoint) * 1000.0).round() as i64,
            has_zstd: kv.get("zstd") == Some(&"1"),
            has_gzip: kv.get("gzip") == Some(&"1"),
            firewalld_active: kv.get("firewalld") == Some(&"active"),
        })
    }
}

/// Seconds since the epoch on this machine.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "now=1000.500\nkernel=6.1.0\narch=x86_64\ncpus=2\nmem_kib=2048000\ninit=systemd\nhostname=node1\nmachine_id=abc\niface=eth0\naddress=10.0.0.2\nmtu=1500\nos_ID=rocky\nos_VERSION_ID=\"9.4\"\nos_PRETTY_NAME=\"Rocky Linux 9.4\"\n";

    #[test]
    fn parses_probe_output() {
        let f = Facts::parse(SAMPLE, 1000.0, 1000.2).unwrap();
        assert_eq!(f.family, Some(OsFamily::Rhel));
        assert_eq!(f.os.version_id, "9.4");
        assert_eq!(f.memory_mib, 2000);
        assert_eq!(f.mtu, Some(1500));
        assert_eq!(f.address, "10.0.0.2");
        assert_eq!(f.time_offset_ms, 400);
    }

    #[test]
    fn names_a_missing_fact() {
        let err = Facts::parse("kernel=1\n", 0.0, 0.0).unwrap_err();
        assert_eq!(err, MissingFact("now"));
    }
}
