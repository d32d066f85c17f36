//! kubectl on a control-plane node, run as root with the admin kubeconfig the control-plane
//! role put there: the one place that spells the invocation (addons, netcheck's DaemonSet).

use crate::node::{Node, NodeError, shell_quote};
use crate::ssh::Output;

const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// Server-side apply under director-boot's field manager, taking over conflicting fields.
const APPLY: &str = "apply --server-side --force-conflicts --field-manager=director-boot";

pub struct Kubectl<'n> {
    node: &'n Node,
}

impl<'n> Kubectl<'n> {
    pub fn on(node: &'n Node) -> Self {
        Kubectl { node }
    }

    /// `kubectl ARGS` (already shell words); a non-zero exit is an error.
    pub async fn run(&self, args: &str) -> Result<Output, NodeError> {
        self.node.sudo_ok(&command(args)).await
    }

    /// Apply the manifest file at `path` on the node, then move it to `done` (so a failed apply
    /// leaves the last applied copy in place and is retried next run).
    pub async fn apply_file_then_move(&self, path: &str, done: &str) -> Result<Output, NodeError> {
        self.node
            .sudo_ok(&format!(
                "{} && mv -f {} {}",
                command(&format!("{APPLY} -f {}", shell_quote(path))),
                shell_quote(path),
                shell_quote(done)
            ))
            .await
    }

    /// Apply a manifest given as text.
    pub async fn apply(&self, manifest: &str) -> Result<Output, NodeError> {
        self.node
            .sudo_ok(&format!(
                "{} -f - <<'DIRECTOR_BOOT_EOF'\n{manifest}DIRECTOR_BOOT_EOF\n",
                command(APPLY)
            ))
            .await
    }

    /// Read every Secret and replace it unchanged (upstream's way to re-encrypt them under the
    /// writer key); the number replaced. Their bodies stay on the host: only names come back.
    pub async fn rewrite_secrets(&self) -> Result<usize, NodeError> {
        let script = format!(
            "out=$({get}) || exit 1; case \"$out\" in *'\"items\": []'*) exit 0;; esac; \
             printf '%s\\n' \"$out\" | {replace}",
            get = command("get secrets -A -o json"),
            replace = command("replace -f - -o name"),
        );
        let out = self.node.sudo_ok(&script).await?;
        Ok(out.stdout.lines().filter(|l| !l.trim().is_empty()).count())
    }
}

fn command(args: &str) -> String {
    format!("{KUBECTL} {args}")
}
