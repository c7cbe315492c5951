//! Dereferencing an EscCluster's Secrets into what the SSH transport needs.
//!
//! Errors name the Secret and the key, never a value. The credentials are read at each
//! reconcile (a GET, no cache of Secret contents in the operator beyond the open connection), and
//! a fingerprint of the two Secrets' versions tells the SSH pool when to reconnect.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::api::SshSpec;
use crate::esc::{KnownHosts, SshCredentials};
use crate::plan::cluster::Problem;

/// Key of the private key in the credentials Secret (the `kubernetes.io/ssh-auth` convention).
pub const PRIVATE_KEY: &str = "ssh-privatekey";
/// Optional key of the private key's passphrase.
pub const PASSPHRASE: &str = "passphrase";
/// Key of the password, when no private key is given.
pub const PASSWORD: &str = "password";
/// Key of the known_hosts content in the known-hosts Secret.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// What a cluster's Secrets give: how to log in, which host keys to trust.
pub struct SshAccess {
    pub credentials: SshCredentials,
    pub known_hosts: KnownHosts,
    /// Changes whenever either Secret changes (uid + resourceVersion).
    pub fingerprint: u64,
}

/// Reads and checks the two Secrets of `ssh` in `namespace`.
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    ssh: &SshSpec,
) -> Result<SshAccess, Problem> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let creds = get(
        &api,
        namespace,
        &ssh.credentials_secret_ref.name,
        "spec.ssh.credentialsSecretRef",
    )
    .await?;
    let hosts = get(
        &api,
        namespace,
        &ssh.known_hosts_secret_ref.name,
        "spec.ssh.knownHostsSecretRef",
    )
    .await?;

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for s in [&creds, &hosts] {
        s.metadata.uid.hash(&mut hasher);
        s.metadata.resource_version.hash(&mut hasher);
    }
    let fingerprint = hasher.finish();

    let credentials = credentials_of(namespace, &ssh.credentials_secret_ref.name, &creds.data)?;
    let known_hosts = known_hosts_of(namespace, &ssh.known_hosts_secret_ref.name, &hosts.data)?;
    Ok(SshAccess {
        credentials,
        known_hosts,
        fingerprint,
    })
}

/// Reads Secret `namespace/name`, named in the object's field `field` (for the error).
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<Secret, Problem> {
    get(
        &Api::namespaced(client.clone(), namespace),
        namespace,
        name,
        field,
    )
    .await
}

/// The UTF-8 text at `key` of a Secret's data, if present and non-empty.
pub fn text_of(
    namespace: &str,
    name: &str,
    data: &Option<BTreeMap<String, ByteString>>,
    key: &str,
) -> Result<Option<String>, Problem> {
    let Some(raw) = data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    let text = String::from_utf8(raw.0.clone()).map_err(|_| {
        Problem::new(
            "SecretInvalid",
            format!("Secret {namespace}/{name}: key {key} is not UTF-8 text"),
        )
    })?;
    Ok((!text.trim().is_empty()).then_some(text))
}

async fn get(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<Secret, Problem> {
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Problem::new(
            "SecretNotFound",
            format!("Secret {namespace}/{name} (named in {field}) does not exist: create it"),
        )),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(Problem::new(
            "SecretForbidden",
            format!(
                "the operator may not read Secret {namespace}/{name} (named in {field}): is \
                 {namespace} one of the namespaces it watches? ({})",
                status.message
            ),
        )),
        Err(e) => Err(Problem::new(
            "SecretUnreadable",
            format!("reading Secret {namespace}/{name} failed: {e}"),
        )),
    }
}

/// The credentials in a Secret's data: `ssh-privatekey` (+ optional `passphrase`), or `password`.
pub fn credentials_of(
    namespace: &str,
    name: &str,
    data: &Option<BTreeMap<String, ByteString>>,
) -> Result<SshCredentials, Problem> {
    let value = |key: &str| {
        data.as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
    };
    let text = |key: &str| -> Result<Option<String>, Problem> {
        value(key)
            .map(|b| {
                String::from_utf8(b.to_vec()).map_err(|_| {
                    Problem::new(
                        "SecretInvalid",
                        format!("Secret {namespace}/{name}: key {key} is not UTF-8 text"),
                    )
                })
            })
            .transpose()
    };
    match (value(PRIVATE_KEY), text(PASSWORD)?) {
        (Some(key), _) if !key.is_empty() => {
            let passphrase = text(PASSPHRASE)?.filter(|p| !p.is_empty());
            Ok(SshCredentials::private_key(key.to_vec(), passphrase))
        }
        (_, Some(password)) if !password.is_empty() => Ok(SshCredentials::password(password)),
        _ => Err(Problem::new(
            "SecretKeyMissing",
            format!(
                "Secret {namespace}/{name} has neither a non-empty key {PRIVATE_KEY} nor a \
                 non-empty key {PASSWORD}: add one"
            ),
        )),
    }
}

/// The known_hosts content of a Secret's data: it must vouch for at least one host.
pub fn known_hosts_of(
    namespace: &str,
    name: &str,
    data: &Option<BTreeMap<String, ByteString>>,
) -> Result<KnownHosts, Problem> {
    let Some(raw) = data.as_ref().and_then(|d| d.get(KNOWN_HOSTS)) else {
        return Err(Problem::new(
            "SecretKeyMissing",
            format!(
                "Secret {namespace}/{name} has no key {KNOWN_HOSTS}: add the nodes' host keys \
                 (ssh-keyscan -p PORT HOST prints them)"
            ),
        ));
    };
    let text = std::str::from_utf8(&raw.0).map_err(|_| {
        Problem::new(
            "SecretInvalid",
            format!("Secret {namespace}/{name}: key {KNOWN_HOSTS} is not UTF-8 text"),
        )
    })?;
    let known = KnownHosts::parse(text);
    if known.is_empty() {
        return Err(Problem::new(
            "KnownHostsInvalid",
            format!(
                "Secret {namespace}/{name}: key {KNOWN_HOSTS} holds no usable host key line \
                 (expected OpenSSH known_hosts lines such as \"[10.0.0.5]:22 ssh-ed25519 AAAA…\")"
            ),
        ));
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> Option<BTreeMap<String, ByteString>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                .collect(),
        )
    }

    #[test]
    fn a_secret_without_key_or_password_names_both_keys_and_no_value() {
        let err = credentials_of("ns", "esc-ssh", &data(&[("other", b"s3cr3t")]))
            .err()
            .unwrap();
        assert_eq!(err.reason, "SecretKeyMissing");
        assert!(err.message.contains("ns/esc-ssh") && err.message.contains(PRIVATE_KEY));
        assert!(!err.message.contains("s3cr3t"));
    }

    #[test]
    fn a_password_secret_gives_password_credentials() {
        assert!(credentials_of("ns", "c", &data(&[(PASSWORD, b"pw")])).is_ok());
        let err = credentials_of("ns", "c", &data(&[(PASSWORD, b"")]))
            .err()
            .unwrap();
        assert_eq!(err.reason, "SecretKeyMissing");
    }

    #[test]
    fn known_hosts_must_vouch_for_something() {
        let err = known_hosts_of("ns", "kh", &data(&[(KNOWN_HOSTS, b"# nothing\n")]))
            .err()
            .unwrap();
        assert_eq!(err.reason, "KnownHostsInvalid");
        let err = known_hosts_of("ns", "kh", &data(&[])).err().unwrap();
        assert_eq!(err.reason, "SecretKeyMissing");
        let line = b"[127.0.0.2]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
        assert!(known_hosts_of("ns", "kh", &data(&[(KNOWN_HOSTS, line)])).is_ok());
    }
}
