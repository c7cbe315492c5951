//! How the transport logs in: [`SshCredentials`] (held in zeroizing buffers, redacted in
//! `Debug`), decoded once before any network I/O, and handed only to the SSH authentication
//! request — never to a command line, a log or an error.
//!
//! Owns: credentials, key decoding, the authentication request. Imports only the transport's
//! [`SshError`].

use std::fmt;
use std::sync::Arc;

use russh::client::{AuthResult, Handle, Handler};
use russh::keys::PrivateKeyWithHashAlg;
use zeroize::Zeroizing;

use crate::esc::ssh::error::SshError;

/// How to authenticate. Holds secrets: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub enum SshCredentials {
    /// A private key (OpenSSH, PKCS#1/PKCS#8 PEM, PuTTY; ed25519, ECDSA or RSA), optionally
    /// passphrase-protected.
    PrivateKey {
        /// The key file's bytes, as loaded from a Secret.
        key: Zeroizing<Vec<u8>>,
        /// The passphrase, if the key is encrypted.
        passphrase: Option<Zeroizing<String>>,
    },
    /// A password.
    Password(Zeroizing<String>),
}

impl SshCredentials {
    /// Private key credentials from the key file's bytes.
    pub fn private_key(key: impl Into<Vec<u8>>, passphrase: Option<String>) -> Self {
        SshCredentials::PrivateKey {
            key: Zeroizing::new(key.into()),
            passphrase: passphrase.map(Zeroizing::new),
        }
    }

    /// Password credentials.
    pub fn password(password: impl Into<String>) -> Self {
        SshCredentials::Password(Zeroizing::new(password.into()))
    }

    /// The SSH authentication method these credentials use (`publickey`, `password`).
    pub(super) fn method(&self) -> &'static str {
        match self {
            SshCredentials::PrivateKey { .. } => "publickey",
            SshCredentials::Password(_) => "password",
        }
    }

    /// Decodes the credentials for the authentication request. A bad key fails here, before
    /// any network I/O.
    pub(super) fn material(&self) -> Result<AuthMaterial<'_>, SshError> {
        Ok(match self {
            SshCredentials::PrivateKey { key, passphrase } => AuthMaterial::Key(Arc::new(
                decode_key(key, passphrase.as_ref().map(|p| p.as_str()))?,
            )),
            SshCredentials::Password(pw) => AuthMaterial::Password(pw.as_str()),
        })
    }
}

impl fmt::Debug for SshCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshCredentials::PrivateKey { key, passphrase } => f
                .debug_struct("PrivateKey")
                .field("key", &format_args!("<redacted {} bytes>", key.len()))
                .field(
                    "passphrase",
                    &format_args!(
                        "{}",
                        if passphrase.is_some() {
                            "<redacted>"
                        } else {
                            "None"
                        }
                    ),
                )
                .finish(),
            SshCredentials::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// Decoded credentials, ready for the authentication request.
pub(super) enum AuthMaterial<'a> {
    Key(Arc<russh::keys::PrivateKey>),
    Password(&'a str),
}

/// Sends the authentication request for `user`. RSA keys sign with the best SHA-2 hash the
/// server supports.
pub(super) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    material: AuthMaterial<'_>,
) -> Result<AuthResult, russh::Error> {
    match material {
        AuthMaterial::Password(pw) => handle.authenticate_password(user, pw).await,
        AuthMaterial::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await?.flatten()
            } else {
                None
            };
            handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                .await
        }
    }
}

fn decode_key(key: &[u8], passphrase: Option<&str>) -> Result<russh::keys::PrivateKey, SshError> {
    let text = std::str::from_utf8(key).map_err(|_| SshError::InvalidPrivateKey {
        detail: "the key is not text (expected an OpenSSH or PEM private key file)".into(),
    })?;
    russh::keys::decode_secret_key(text, passphrase).map_err(|e| {
        let detail = match (&e, passphrase) {
            (russh::keys::Error::KeyIsEncrypted, None) => {
                "the key is encrypted and no passphrase was given".to_owned()
            }
            (_, Some(_)) if text.contains("ENCRYPTED") || text.contains("BEGIN OPENSSH") => {
                format!(
                    "wrong passphrase, or not a valid key ({})",
                    key_error_kind(&e)
                )
            }
            _ => format!("not a valid private key ({})", key_error_kind(&e)),
        };
        SshError::InvalidPrivateKey { detail }
    })
}

/// A description of a key decoding error that cannot contain key material.
fn key_error_kind(e: &russh::keys::Error) -> &'static str {
    use russh::keys::Error as E;
    match e {
        E::CouldNotReadKey => "could not read key",
        E::UnsupportedKeyType { .. } => "unsupported key type",
        E::KeyIsEncrypted => "key is encrypted",
        E::KeyIsCorrupt => "key is corrupt",
        E::SshKey(_) => "invalid OpenSSH key or passphrase",
        _ => "decoding failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_is_redacted() {
        let pw = SshCredentials::password("hunter2-secret");
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
        let key = SshCredentials::private_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA-secret\n".to_vec(),
            Some("pass-secret".into()),
        );
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn bad_keys_give_clear_errors_without_key_material() {
        let err = decode_key(b"\xff\xfe", None).unwrap_err();
        assert!(err.to_string().contains("not text"), "{err}");
        let err = decode_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n",
            None,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a valid private key"), "{msg}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        assert_eq!(err.reason(), "InvalidPrivateKey");
    }
}
