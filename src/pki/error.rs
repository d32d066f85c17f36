//! Typed errors for the PKI module. Every variant names the file involved and,
//! where there is one, the action that fixes it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("invalid PKI spec: {0}")]
    InvalidSpec(String),

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot parse certificate {path}: {reason}; move the file away and re-run to issue a new one"
    )]
    ParseCert { path: PathBuf, reason: String },

    #[error(
        "cannot load private key {path}: {reason}; keys must be PEM PKCS#8 (\"PRIVATE KEY\"); move the file away and re-run to generate a new one"
    )]
    ParseKey { path: PathBuf, reason: String },

    #[error(
        "{cert} is not a usable CA: {reason}; restore the original CA from backup (a CA is never regenerated, everything in the cluster trusts it)"
    )]
    CaInvalid { cert: PathBuf, reason: String },

    #[error(
        "CA private key {key} is missing but {needed} must be (re)issued from {cert}; restore {key} from backup, \
         or place a valid externally issued {needed} (and its key) there yourself. Do NOT delete {cert}: \
         every component and kubeconfig trusts it"
    )]
    CaKeyMissing {
        cert: PathBuf,
        key: PathBuf,
        needed: PathBuf,
    },

    #[error(
        "CA certificate {cert} is missing but certificates issued by it exist (e.g. {leaf}); restore {cert} \
         (and its key) from backup. To really start a new cluster PKI, move the whole directory away and re-run"
    )]
    CaMissing { cert: PathBuf, leaf: PathBuf },

    #[error(
        "service-account signing key {key} is missing but {public} exists; restore {key} from backup. \
         To generate a new pair (this invalidates every issued service-account token), delete {public} and re-run"
    )]
    SaKeyMissing { key: PathBuf, public: PathBuf },

    #[error("cannot generate {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    #[error(
        "{name}: no such leaf certificate in this cluster's PKI; leaves are: {known} (CAs are never re-issued)"
    )]
    UnknownLeaf { name: String, known: String },

    #[error("cannot render kubeconfig: {0}")]
    Kubeconfig(String),
}

pub type Result<T> = std::result::Result<T, PkiError>;

pub(crate) fn gen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Generate { what, source }
}
