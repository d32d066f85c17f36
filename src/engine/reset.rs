//! Reset: undo init on a host, from the same role files init applied (every unit, file,
//! binary, PKI file, kubeconfig and `reset_paths` entry), plus the links and iptables chains.

use std::collections::BTreeSet;

use super::context::{ClusterContext, NodeContext, POD_BRIDGE, VXLAN_DEVICE};
use super::plan::tera_context;
use super::render::{RenderError, Renderer};
use super::role::ComponentRole;

/// What reset removes from one host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResetPlan {
    pub units: Vec<String>,
    pub files: BTreeSet<String>,
    pub paths: BTreeSet<String>,
    pub links: Vec<String>,
    /// Roles' `reset_commands`, rendered: undo what is not a file.
    pub commands: Vec<String>,
}

/// Collect everything the roles that apply to this host put there. Roles run in reverse so
/// later components (kubelet) stop before earlier ones (containerd, etcd).
pub fn plan(
    r: &Renderer,
    roles: &[ComponentRole],
    cluster: &ClusterContext,
    node: &NodeContext,
    host_roles: &BTreeSet<crate::inventory::HostRole>,
) -> Result<ResetPlan, RenderError> {
    let ctx = tera_context(cluster, node);
    let mut p = ResetPlan {
        links: vec![
            VXLAN_DEVICE.into(),
            POD_BRIDGE.into(),
            "cni0".into(),
            "kube-ipvs0".into(),
        ],
        ..ResetPlan::default()
    };
    for role in roles.iter().rev().filter(|x| x.applies_to(host_roles)) {
        p.units.extend(role.units.iter().cloned());
        for b in &role.binaries {
            p.files.insert(b.path());
        }
        for f in &role.pki {
            p.files.insert(r.render_str(&f.dest, &ctx)?);
        }
        for k in &role.kubeconfigs {
            p.files.insert(r.render_str(&k.dest, &ctx)?);
        }
        for f in &role.files {
            p.files.insert(r.render_str(&f.dest, &ctx)?);
        }
        for c in &role.reset_commands {
            p.commands.push(r.render_str(c, &ctx)?);
        }
        for path in &role.reset_paths {
            p.paths.insert(r.render_str(path, &ctx)?);
        }
    }
    p.paths.insert("/var/lib/director-boot".into());
    p.paths.insert("/etc/kubernetes/addons".into());
    Ok(p)
}

pub fn script(r: &Renderer, p: &ResetPlan) -> Result<String, RenderError> {
    let mut ctx = tera::Context::new();
    ctx.insert("units", &p.units);
    ctx.insert("files", &p.files);
    ctx.insert("paths", &p.paths);
    ctx.insert("links", &p.links);
    ctx.insert("commands", &p.commands);
    r.render("scripts/reset.sh", &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_quotes_and_parses() {
        let r = Renderer::new().unwrap();
        let p = ResetPlan {
            units: vec!["etcd.service".into()],
            files: ["/usr/local/bin/etcd".to_string(), "/etc/it's".to_string()].into(),
            paths: ["/var/lib/etcd".to_string()].into(),
            links: vec!["dbvx0".into()],
            commands: vec!["ip link del x || true".into()],
        };
        let s = script(&r, &p).unwrap();
        assert!(s.contains("systemctl disable --now 'etcd.service'"), "{s}");
        assert!(s.contains(r"rm -f '/etc/it'\''s'"), "{s}");
        let check = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .status()
            .unwrap();
        assert!(check.success());
    }
}
