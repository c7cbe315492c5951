//! Certificates for the test cluster, made with `rcgen` (EC P-256) instead of the `openssl` CLI.
//!
//! One CA signs everything: the API server's serving certificate, the client certificates (admin,
//! controller-manager, scheduler, kubelet, the API server's own client certificate towards the
//! kubelet) and the kubelet's serving certificate. The ServiceAccount token signing key is a
//! separate key pair (no certificate).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, as PEM files on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test cluster's certificate authority; writes everything it issues into one directory.
pub struct Pki {
    dir: PathBuf,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    ca_cert_pem: String,
    ca_cert_path: PathBuf,
}

impl Pki {
    /// Creates a fresh CA in `dir` (created if missing); its certificate is `dir/ca.crt`.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("generate CA key")?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "esc-testbed-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("self-sign CA certificate")?;
        let ca_cert_pem = ca_cert.pem();
        let ca_cert_path = dir.join("ca.crt");
        write_private(&ca_cert_path, &ca_cert_pem)?;
        Ok(Self {
            dir: dir.to_owned(),
            ca_key,
            ca_params,
            ca_cert_pem,
            ca_cert_path,
        })
    }

    /// Path of the CA certificate (PEM).
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Issues a serving certificate for `127.0.0.1` and `localhost` (plus `extra_dns`), written
    /// as `<name>.crt` / `<name>.key`.
    pub fn issue_server(
        &self,
        name: &str,
        common_name: &str,
        extra_dns: &[&str],
    ) -> Result<CertFiles> {
        let mut params = self.leaf(common_name, &[]);
        params.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into()?),
        ];
        for dns in extra_dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*dns).try_into()?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.write(name, &params)
    }

    /// Issues a client certificate with subject `CN=<common_name>, O=<organizations>` — the
    /// user name and groups Kubernetes reads from it — written as `<name>.crt` / `<name>.key`.
    pub fn issue_client(
        &self,
        name: &str,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<CertFiles> {
        let mut params = self.leaf(common_name, organizations);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.write(name, &params)
    }

    /// A key pair for signing ServiceAccount tokens: `<name>.key` (PKCS#8) and `<name>.pub`.
    pub fn service_account_key(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate().context("generate service-account key")?;
        let key_path = self.dir.join(format!("{name}.key"));
        let pub_path = self.dir.join(format!("{name}.pub"));
        write_private(&key_path, &key.serialize_pem())?;
        write_private(&pub_path, &key.public_key_pem())?;
        Ok((key_path, pub_path))
    }

    fn leaf(&self, common_name: &str, organizations: &[&str]) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for org in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params
    }

    fn write(&self, name: &str, params: &CertificateParams) -> Result<CertFiles> {
        let key = KeyPair::generate().with_context(|| format!("generate key for {name}"))?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("sign certificate {name}"))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        write_private(&files.cert, &cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
