//! Host key verification inside the SSH handshake: the russh [`Handler`] that checks the key the
//! server offers against known_hosts content, and the order in which key types are asked for.
//! There is no accept-any mode.
//!
//! Owns: the handshake-time check. Imports [`crate::esc::known_hosts`] (the rules) and the leaf
//! [`crate::esc::vocab`].

use std::sync::Arc;

use russh::client::Handler;
use russh::keys::{Algorithm, HashAlg, PublicKeyOrCertificate};

use crate::esc::known_hosts::{HostKeyError, KnownHosts, fingerprint};
use crate::esc::vocab::NodeAddr;

/// Errors inside russh's handler; a refused host key keeps its full description.
#[derive(Debug)]
pub(super) enum HandlerError {
    Russh(russh::Error),
    HostKey(HostKeyError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

/// The connection's handler: accepts the server's key only when known_hosts vouches for it.
pub(super) struct Verifier {
    node: NodeAddr,
    known_hosts: Arc<KnownHosts>,
}

impl Verifier {
    pub(super) fn new(node: NodeAddr, known_hosts: &KnownHosts) -> Self {
        Verifier {
            node,
            known_hosts: Arc::new(known_hosts.clone()),
        }
    }
}

impl Handler for Verifier {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.known_hosts
                    .verify(&self.node.host, self.node.port, key)
                    .map_err(HandlerError::HostKey)?;
                tracing::debug!(node = %self.node, fingerprint = %fingerprint(key), "host key verified");
                Ok(true)
            }
            PublicKeyOrCertificate::Certificate(cert) => Err(HandlerError::HostKey(
                HostKeyError::CertificateUnsupported {
                    node: self.node.clone(),
                    fingerprint: cert.public_key().fingerprint(HashAlg::Sha256).to_string(),
                },
            )),
        }
    }
}

/// The host key types to ask for: first those known_hosts can vouch for (as OpenSSH does),
/// then the rest of `defaults`, so that a server without any of them still shows its key and the
/// refusal names it.
pub(super) fn preferred_key_algorithms(
    known_hosts: &KnownHosts,
    node: &NodeAddr,
    defaults: &[Algorithm],
) -> Vec<Algorithm> {
    let mut key = known_hosts.algorithms_for(&node.host, node.port);
    for alg in defaults {
        if !key.contains(alg) {
            key.push(alg.clone());
        }
    }
    key
}
