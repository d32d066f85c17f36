//! Host prerequisites of the lab: checked on every `up`, missing packages installed with
//! apt-get (saying so).

use std::path::Path;

use super::error::LabError;
use super::sys::run;

/// (program, Debian package providing it).
const NEEDED: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("ssh-keygen", "openssh-client"),
    ("ssh", "openssh-client"),
    ("ip", "iproute2"),
    ("setsid", "util-linux"),
    ("mount", "mount"),
];

fn on_path(program: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|dir| Path::new(dir).join(program).is_file())
}

/// The packages to install for the programs that are missing.
pub fn missing_packages(present: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut pkgs: Vec<&'static str> = NEEDED
        .iter()
        .filter(|(prog, _)| !present(prog))
        .map(|(_, pkg)| *pkg)
        .collect();
    pkgs.dedup();
    pkgs
}

pub async fn ensure(say: &dyn Fn(&str)) -> Result<(), LabError> {
    if !super::sys::is_root() {
        return Err(LabError::NotRoot);
    }
    let missing = missing_packages(on_path);
    if !missing.is_empty() {
        say(&format!(
            "lab: installing missing host packages: {}",
            missing.join(" ")
        ));
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(missing.iter().copied());
        if run("apt-get", &args).await.is_err() {
            // A fresh machine may have no package lists yet.
            run("apt-get", &["update"]).await?;
            run("apt-get", &args).await?;
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.contains("overlay") {
        run("modprobe", &["overlay"]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_programs_to_packages() {
        assert!(missing_packages(|_| true).is_empty());
        assert_eq!(
            missing_packages(|p| p != "systemd-nspawn" && p != "ssh-keygen" && p != "ssh"),
            vec!["systemd-container", "openssh-client"]
        );
    }
}
