//! A copy of a kubeconfig that Java Kubernetes clients can read. Spark's `spark-submit --master
//! k8s://...` talks to the API server through the fabric8 client, which reads an EC client key
//! only in SEC1 form (`EC PRIVATE KEY`): the PKCS#8 form (`PRIVATE KEY`) that director-boot
//! writes, it takes for RSA and fails on ("Invalid DER: object is not integer"). The copy holds
//! the same credentials, so it gets the same 0600 mode, beside the original.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use p256::pkcs8::DecodePrivateKey;
use serde_yaml::Value;

use super::AppsError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The kubeconfig text with every PKCS#8 P-256 `client-key-data` re-encoded as SEC1, or
/// `None` when nothing needs to change. Keys of other kinds are left as they are.
pub fn sec1_keys(text: &str) -> Result<Option<String>, String> {
    let mut doc: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut changed = false;
    let users = doc
        .get_mut("users")
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten();
    for user in users {
        let name = user
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let Some(data) = user
            .get_mut("user")
            .and_then(|u| u.get_mut("client-key-data"))
        else {
            continue;
        };
        let Some(encoded) = data.as_str() else {
            continue;
        };
        let pem = B64
            .decode(encoded.trim())
            .map_err(|e| format!("user {name}: client-key-data is not base64: {e}"))?;
        let pem = String::from_utf8(pem)
            .map_err(|_| format!("user {name}: client-key-data is not a PEM key"))?;
        if !pem.contains("-----BEGIN PRIVATE KEY-----") {
            continue;
        }
        // Not a P-256 key (RSA, another curve): fabric8 reads PKCS#8 RSA keys as they are.
        let Ok(key) = p256::SecretKey::from_pkcs8_pem(&pem) else {
            continue;
        };
        let sec1 = key
            .to_sec1_pem(p256::pkcs8::LineEnding::LF)
            .map_err(|e| format!("user {name}: cannot encode the key as SEC1: {e}"))?;
        *data = Value::String(B64.encode(sec1.as_bytes()));
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    serde_yaml::to_string(&doc)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `admin.conf` -> `admin-java.conf`, `config` -> `config-java`.
fn copy_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-java.{}", ext.to_string_lossy()),
        None => format!("{stem}-java"),
    };
    path.with_file_name(name)
}

/// The kubeconfig a Java client should use instead of `path`: `path` itself when it needs no
/// change, else a copy with SEC1 keys written beside it (0600, rewritten each time).
pub fn for_java_clients(path: &Path) -> Result<PathBuf, AppsError> {
    let err = |message: String| AppsError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let Some(copy) = sec1_keys(&text).map_err(err)? else {
        return Ok(path.to_path_buf());
    };
    let dest = copy_path(path);
    let tmp = dest.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(copy.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)
    };
    write().map_err(|e| err(format!("cannot write {}: {e}", dest.display())))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(key_pem: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://10.0.0.1:6443\", certificate-authority-data: Q0E=}}\nusers:\n- name: admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: admin}}\ncurrent-context: x\n",
            B64.encode(key_pem)
        )
    }

    #[test]
    fn pkcs8_p256_keys_become_sec1_with_the_same_secret() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = kp.serialize_pem();
        assert!(pkcs8.contains("BEGIN PRIVATE KEY"));
        let out = sec1_keys(&kubeconfig(&pkcs8)).unwrap().expect("changed");
        let v: Value = serde_yaml::from_str(&out).unwrap();
        let data = v["users"][0]["user"]["client-key-data"].as_str().unwrap();
        let pem = String::from_utf8(B64.decode(data).unwrap()).unwrap();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
        let back = p256::SecretKey::from_sec1_pem(&pem).unwrap();
        let orig = p256::SecretKey::from_pkcs8_pem(&pkcs8).unwrap();
        assert_eq!(back.to_bytes(), orig.to_bytes());
        // Everything else is kept.
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:6443"
        );
        assert_eq!(v["current-context"], "x");
        // Converted once: a SEC1 kubeconfig needs nothing more.
        assert_eq!(sec1_keys(&out).unwrap(), None);
    }

    #[test]
    fn other_keys_and_token_users_are_left_alone() {
        let rsa_like = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(sec1_keys(&kubeconfig(rsa_like)).unwrap(), None);
        let token = "apiVersion: v1\nusers:\n- name: u\n  user: {token: abc}\n";
        assert_eq!(sec1_keys(token).unwrap(), None);
        let e = sec1_keys("users:\n- name: u\n  user: {client-key-data: '%%%'}\n").unwrap_err();
        assert!(e.contains("user u: client-key-data is not base64"), "{e}");
    }

    #[test]
    fn the_copy_sits_beside_the_original_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let orig = dir.path().join("admin.conf");
        std::fs::write(&orig, kubeconfig(&kp.serialize_pem())).unwrap();
        let copy = for_java_clients(&orig).unwrap();
        assert_eq!(copy, dir.path().join("admin-java.conf"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Already SEC1: used as it is.
        assert_eq!(for_java_clients(&copy).unwrap(), copy);
        assert_eq!(
            copy_path(Path::new("/h/.kube/config")),
            Path::new("/h/.kube/config-java")
        );
    }
}
