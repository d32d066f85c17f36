//! Reading existing certificates with x509-parser.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::X509Name;

use super::error::{PkiError, Result};

/// The facts about one certificate that the PKI logic needs, owned.
#[derive(Debug, Clone)]
pub(crate) struct ParsedCert {
    pub der: Vec<u8>,
    pub subject: String,
    pub subject_cn: Vec<String>,
    pub subject_o: Vec<String>,
    pub issuer: String,
    pub issuer_cn: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Raw public key bits (for matching against a private key).
    pub public_key: Vec<u8>,
    pub serial: String,
}

fn cert_err(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::ParseCert {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn name_values<'a>(
    it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Vec<String> {
    it.filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect()
}

fn cn_of(name: &X509Name<'_>) -> Vec<String> {
    name_values(name.iter_common_name())
}

/// PEM text (first CERTIFICATE block) to DER.
pub(crate) fn pem_to_der(path: &Path, pem: &str) -> Result<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| cert_err(path, format!("not PEM: {e}")))?;
    if p.label != "CERTIFICATE" {
        return Err(cert_err(
            path,
            format!("PEM block is {:?}, expected CERTIFICATE", p.label),
        ));
    }
    Ok(p.contents)
}

fn parse_der<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| cert_err(path, format!("invalid X.509: {e}")))?;
    Ok(c)
}

pub(crate) fn parse_cert_pem(path: &Path, pem: &str) -> Result<ParsedCert> {
    let der = pem_to_der(path, pem)?;
    let c = parse_der(path, &der)?;

    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let san = c
        .subject_alternative_name()
        .map_err(|e| cert_err(path, format!("bad subjectAltName: {e}")))?;
    if let Some(san) = san {
        for gn in &san.value.general_names {
            match gn {
                GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let eku = c
        .extended_key_usage()
        .map_err(|e| cert_err(path, format!("bad extendedKeyUsage: {e}")))?;
    let (server_auth, client_auth) = eku
        .map(|e| (e.value.server_auth, e.value.client_auth))
        .unwrap_or((false, false));

    let parsed = ParsedCert {
        subject: c.subject().to_string(),
        subject_cn: cn_of(c.subject()),
        subject_o: name_values(c.subject().iter_organization()),
        issuer: c.issuer().to_string(),
        issuer_cn: cn_of(c.issuer()),
        dns,
        ips,
        not_before: c.validity().not_before.to_datetime(),
        not_after: c.validity().not_after.to_datetime(),
        is_ca: c.is_ca(),
        server_auth,
        client_auth,
        public_key: c.public_key().subject_public_key.data.to_vec(),
        serial: c.raw_serial_as_string(),
        der: Vec::new(),
    };
    Ok(ParsedCert { der, ..parsed })
}

/// Whether `leaf` carries a valid signature by `ca`'s key and names `ca` as issuer.
pub(crate) fn signed_by(leaf: &ParsedCert, ca: &ParsedCert) -> bool {
    let Ok((_, l)) = x509_parser::parse_x509_certificate(&leaf.der) else {
        return false;
    };
    let Ok((_, c)) = x509_parser::parse_x509_certificate(&ca.der) else {
        return false;
    };
    l.issuer().as_raw() == c.subject().as_raw() && l.verify_signature(Some(c.public_key())).is_ok()
}

/// One certificate found by [`super::list`].
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Stem relative to the PKI directory, e.g. `etcd/server-node1`.
    pub name: String,
    pub path: PathBuf,
    pub subject: String,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub issuer: String,
    pub issuer_common_name: String,
    /// DNS names followed by IP addresses.
    pub sans: Vec<String>,
    pub is_ca: bool,
    pub serial: String,
    #[serde(serialize_with = "ser_rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(serialize_with = "ser_rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whole days until expiry (negative once expired).
    pub days_left: i64,
    /// Whether the matching `.key` file exists next to the certificate.
    pub key_present: bool,
}

impl CertInfo {
    pub(crate) fn new(
        name: String,
        path: PathBuf,
        p: ParsedCert,
        now: OffsetDateTime,
        key_present: bool,
    ) -> Self {
        let mut sans = p.dns;
        sans.extend(p.ips.iter().map(IpAddr::to_string));
        CertInfo {
            name,
            path,
            common_name: p.subject_cn.join(","),
            subject: p.subject,
            organizations: p.subject_o,
            issuer_common_name: p.issuer_cn.join(","),
            issuer: p.issuer,
            sans,
            is_ca: p.is_ca,
            serial: p.serial,
            not_before: p.not_before,
            not_after: p.not_after,
            days_left: (p.not_after - now).whole_days(),
            key_present,
        }
    }
}

fn ser_rfc3339<S: serde::Serializer>(
    t: &OffsetDateTime,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}
