//! Generating keys and certificates with rcgen.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::error::{PkiError, Result, gen_err};
use super::spec::{CaId, LeafPlan};

/// CA validity: 10 years.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Leaf validity: 1 year (as kubeadm); re-run `ensure` to renew, which happens
/// automatically within [`RENEW_BEFORE_DAYS`] of expiry.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// A leaf expiring within this many days is re-issued by `ensure`.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// `notBefore` is back-dated this much to tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::minutes(5);

pub(crate) type CaIssuer = Issuer<'static, KeyPair>;

/// Fresh ECDSA P-256 key (PKCS#8).
pub(crate) fn new_key(what: &str) -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err(format!("key for {what}")))
}

pub(crate) fn load_key(path: &Path, pem: &str) -> Result<KeyPair> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::ParseKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Raw public key bits, comparable with [`super::inspect::ParsedCert::public_key`].
pub(crate) fn public_key_bits(key: &KeyPair) -> &[u8] {
    key.der_bytes()
}

/// A unique positive 16-byte serial. rcgen's default serial is a hash of the
/// public key, which would repeat when a certificate is re-issued for the same
/// key; mix in the time, the process and a counter.
fn serial(public_key: &[u8], now: OffsetDateTime) -> SerialNumber {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(public_key);
    h.update(now.unix_timestamp_nanos().to_be_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_be_bytes(),
    );
    h.update(std::process::id().to_be_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let digest = h.finalize();
    let mut bytes = digest[..16].to_vec();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // keep it positive and exactly 16 bytes long
    SerialNumber::from(bytes)
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.unix_timestamp()).unwrap_or(t)
}

/// Expiry a leaf issued at `now` gets: one year, never beyond its CA.
pub(crate) fn leaf_not_after(now: OffsetDateTime, ca_not_after: OffsetDateTime) -> OffsetDateTime {
    whole_seconds((now + Duration::days(LEAF_VALIDITY_DAYS)).min(ca_not_after))
}

fn ca_params(ca: CaId, cluster_name: &str, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, cluster_name);
    dn.push(DnType::CommonName, ca.common_name());
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.not_before = whole_seconds(now - BACKDATE);
    p.not_after = whole_seconds(now + Duration::days(CA_VALIDITY_DAYS));
    p
}

/// Self-signed CA certificate for `key`; returns its PEM and an issuer.
pub(crate) fn self_signed_ca(
    ca: CaId,
    cluster_name: &str,
    key: KeyPair,
    now: OffsetDateTime,
) -> Result<(String, CaIssuer)> {
    let mut params = ca_params(ca, cluster_name, now);
    params.serial_number = Some(serial(key.der_bytes(), now));
    let cert = params
        .self_signed(&key)
        .map_err(gen_err(format!("CA certificate {}", ca.stem())))?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// Issuer for an existing CA certificate (DER) and its key.
pub(crate) fn existing_ca(path: &Path, der: &[u8], key: KeyPair) -> Result<CaIssuer> {
    Issuer::from_ca_cert_der(&der.into(), key).map_err(|e| PkiError::CaInvalid {
        cert: path.to_path_buf(),
        reason: format!("rcgen cannot use it as issuer: {e}"),
    })
}

fn ia5(s: &str) -> Result<Ia5String> {
    Ia5String::try_from(s).map_err(|e| PkiError::InvalidSpec(format!("bad DNS name {s:?}: {e}")))
}

/// Issue `plan` for `key`, signed by `issuer`; returns the certificate PEM.
pub(crate) fn issue_leaf(
    plan: &LeafPlan,
    key: &KeyPair,
    issuer: &CaIssuer,
    ca_not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<String> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for o in &plan.orgs {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, plan.cn.as_str());
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    let mut sans = Vec::new();
    for d in &plan.dns {
        sans.push(SanType::DnsName(ia5(d)?));
    }
    sans.extend(plan.ips.iter().copied().map(SanType::IpAddress));
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        // RSA keys (e.g. brought over from kubeadm) also need keyEncipherment.
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    if plan.server_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if plan.client_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    p.use_authority_key_identifier_extension = true;
    p.not_before = whole_seconds(now - BACKDATE);
    p.not_after = leaf_not_after(now, ca_not_after);
    p.serial_number = Some(serial(key.der_bytes(), now));
    let cert = p
        .signed_by(key, issuer)
        .map_err(gen_err(format!("certificate {}", plan.stem)))?;
    Ok(cert.pem())
}
