//! Dereferencing an EscCluster's Secrets into what the SSH transport needs, and the cache that
//! spares a GET of both Secrets at every probe.
//!
//! Errors name the Secret and the key, never a value. A metadata-only watch of the Secrets
//! (name, namespace, uid, resourceVersion; no data) keeps a store of their versions; what was
//! parsed from a Secret is kept per (namespace, name, use) with the version it was read at, and
//! reused while the watched version is the same. A Secret the watch does not know (not listed
//! yet, or missing) is read with a GET each time, so a missing Secret is reported as soon as it
//! is missing, and a change seen by the watch is read at the reconcile it triggers. A
//! fingerprint of the two Secrets' versions tells the SSH pool when to reconnect.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};

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
    pub credentials: Arc<SshCredentials>,
    pub known_hosts: Arc<KnownHosts>,
    /// Changes whenever either Secret changes (uid + resourceVersion).
    pub fingerprint: u64,
}

/// The watched metadata of a Secret, as the cache keeps it.
pub type SecretMeta = PartialObjectMeta<Secret>;

/// Which version of a Secret something was read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Version {
    uid: Option<String>,
    resource_version: Option<String>,
}

impl Version {
    fn of(meta: &ObjectMeta) -> Self {
        Version {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }
    }
}

type SecretData = Option<BTreeMap<String, ByteString>>;

/// What was parsed from one version of a Secret. A malformed Secret stays malformed until its
/// version changes: the problem is kept too.
struct Cached<T> {
    version: Version,
    parsed: Result<Arc<T>, Problem>,
}

type Parsed<T> = Mutex<HashMap<(String, String), Cached<T>>>;

/// The Secrets' watched versions and what was parsed from them. Shared by all reconciles.
#[derive(Default)]
pub struct SecretCache {
    /// One store per watched scope (all namespaces, or one per namespace).
    stores: RwLock<Vec<Store<SecretMeta>>>,
    /// Per (namespace, name); a Secret may serve as both.
    credentials: Parsed<SshCredentials>,
    known_hosts: Parsed<KnownHosts>,
}

impl SecretCache {
    /// Adds the store of a metadata watch of Secrets; the cache trusts a parsed Secret only while
    /// some store holds the version it was read at.
    pub fn watch(&self, store: Store<SecretMeta>) {
        self.stores.write().expect("stores lock").push(store);
    }

    /// Drops what was parsed from `namespace/name` (deleted: its content must not linger).
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        self.credentials.lock().expect("cache lock").remove(&key);
        self.known_hosts.lock().expect("cache lock").remove(&key);
    }

    /// Reads (or reuses) and checks the two Secrets of `ssh` in `namespace`.
    pub async fn load(
        &self,
        client: &kube::Client,
        namespace: &str,
        ssh: &SshSpec,
    ) -> Result<SshAccess, Problem> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let (credentials, creds_version) = self
            .part(
                &self.credentials,
                &api,
                namespace,
                &ssh.credentials_secret_ref.name,
                "spec.ssh.credentialsSecretRef",
                credentials_of,
            )
            .await?;
        let (known_hosts, hosts_version) = self
            .part(
                &self.known_hosts,
                &api,
                namespace,
                &ssh.known_hosts_secret_ref.name,
                "spec.ssh.knownHostsSecretRef",
                known_hosts_of,
            )
            .await?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        creds_version.hash(&mut hasher);
        hosts_version.hash(&mut hasher);
        Ok(SshAccess {
            credentials,
            known_hosts,
            fingerprint: hasher.finish(),
        })
    }

    /// The version of `namespace/name` the watch holds, if it holds one.
    fn watched(&self, namespace: &str, name: &str) -> Option<Version> {
        let key = ObjectRef::<SecretMeta>::new(name).within(namespace);
        self.stores
            .read()
            .expect("stores lock")
            .iter()
            .find_map(|s| s.get(&key))
            .map(|m| Version::of(&m.metadata))
    }

    /// What `parse` makes of `namespace/name`: from the cache while the watch holds the version
    /// it was read at, else from a GET (and then cached).
    async fn part<T>(
        &self,
        cache: &Parsed<T>,
        api: &Api<Secret>,
        namespace: &str,
        name: &str,
        field: &str,
        parse: fn(&str, &str, &SecretData) -> Result<T, Problem>,
    ) -> Result<(Arc<T>, Version), Problem> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(watched) = self.watched(namespace, name) {
            let cache = cache.lock().expect("cache lock");
            if let Some(cached) = cache.get(&key).filter(|c| c.version == watched) {
                return cached.parsed.clone().map(|p| (p, watched));
            }
        }
        let secret = match get(api, namespace, name, field).await {
            Ok(secret) => secret,
            Err(problem) => {
                cache.lock().expect("cache lock").remove(&key);
                return Err(problem);
            }
        };
        let version = Version::of(&secret.metadata);
        let parsed = parse(namespace, name, &secret.data).map(Arc::new);
        cache.lock().expect("cache lock").insert(
            key,
            Cached {
                version: version.clone(),
                parsed: parsed.clone(),
            },
        );
        parsed.map(|p| (p, version))
    }
}

/// Only what the cache compares: a Secret's metadata without labels, annotations (which may
/// hold a `last-applied-configuration` copy of the data) or managedFields.
pub fn strip_meta(secret: &mut SecretMeta) {
    let meta = &mut secret.metadata;
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        ..ObjectMeta::default()
    };
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
    data: &SecretData,
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
    data: &SecretData,
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

    const HOST_LINE: &[u8] = b"[127.0.0.2]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";

    fn meta(name: &str, resource_version: &str) -> SecretMeta {
        use kube::core::PartialObjectMetaExt;
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("ns".to_owned()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(resource_version.to_owned()),
            ..ObjectMeta::default()
        }
        .into_request_partial::<Secret>()
    }

    fn ssh_spec() -> SshSpec {
        serde_json::from_value(serde_json::json!({
            "user": "admin",
            "credentialsSecretRef": {"name": "creds"},
            "knownHostsSecretRef": {"name": "hosts"},
        }))
        .expect("an SshSpec")
    }

    /// A client whose every request fails (nothing listens on port 1): a load that succeeds
    /// made no request.
    fn unreachable_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("a URL"));
        kube::Client::try_from(config).expect("a client")
    }

    /// Puts what a GET of `name` at `resource_version` would have left in the cache.
    fn seed(cache: &SecretCache, name: &str, resource_version: &str) {
        let version = Version::of(&meta(name, resource_version).metadata);
        let key = ("ns".to_owned(), name.to_owned());
        let credentials = credentials_of("ns", name, &data(&[(PASSWORD, b"pw")]));
        cache.credentials.lock().unwrap().insert(
            key.clone(),
            Cached {
                version: version.clone(),
                parsed: credentials.map(Arc::new),
            },
        );
        let hosts = known_hosts_of("ns", name, &data(&[(KNOWN_HOSTS, HOST_LINE)]));
        cache.known_hosts.lock().unwrap().insert(
            key,
            Cached {
                version,
                parsed: hosts.map(Arc::new),
            },
        );
    }

    #[tokio::test]
    async fn parsed_secrets_are_reused_only_while_the_watch_holds_their_version() {
        use kube::runtime::{reflector, watcher};
        let client = unreachable_client();
        let cache = SecretCache::default();
        let (store, mut writer) = reflector::store::<SecretMeta>();
        cache.watch(store);
        seed(&cache, "creds", "1");
        seed(&cache, "hosts", "7");

        // The watch does not know the Secrets yet: they are read (and the read fails here).
        let err = cache.load(&client, "ns", &ssh_spec()).await.err().unwrap();
        assert_eq!(err.reason, "SecretUnreadable", "{err:?}");
        // A failed read forgets what was cached.
        let creds = ("ns".to_owned(), "creds".to_owned());
        assert!(!cache.credentials.lock().unwrap().contains_key(&creds));
        seed(&cache, "creds", "1");

        writer.apply_watcher_event(&watcher::Event::Apply(meta("creds", "1")));
        writer.apply_watcher_event(&watcher::Event::Apply(meta("hosts", "7")));
        let first = cache
            .load(&client, "ns", &ssh_spec())
            .await
            .expect("from the cache");
        let again = cache
            .load(&client, "ns", &ssh_spec())
            .await
            .expect("from the cache");
        assert_eq!(first.fingerprint, again.fingerprint);

        // The known_hosts Secret changed: it is read again, not taken from the cache.
        writer.apply_watcher_event(&watcher::Event::Apply(meta("hosts", "8")));
        let err = cache.load(&client, "ns", &ssh_spec()).await.err().unwrap();
        assert_eq!(err.reason, "SecretUnreadable", "{err:?}");
        assert!(err.message.contains("ns/hosts"), "{err:?}");

        // Read at the new version (as a GET would have), the fingerprint moves: the SSH pool
        // reconnects with the new Secret.
        seed(&cache, "hosts", "8");
        let changed = cache
            .load(&client, "ns", &ssh_spec())
            .await
            .expect("from the cache");
        assert_ne!(changed.fingerprint, first.fingerprint);

        // A deleted Secret's content is dropped.
        cache.forget("ns", "hosts");
        assert_eq!(cache.known_hosts.lock().unwrap().len(), 1);
        assert!(cache.load(&client, "ns", &ssh_spec()).await.is_err());
    }

    #[tokio::test]
    async fn a_malformed_secret_is_remembered_as_malformed_at_its_version() {
        use kube::runtime::{reflector, watcher};
        let client = unreachable_client();
        let cache = SecretCache::default();
        let (store, mut writer) = reflector::store::<SecretMeta>();
        cache.watch(store);
        seed(&cache, "hosts", "7");
        let version = Version::of(&meta("creds", "3").metadata);
        cache.credentials.lock().unwrap().insert(
            ("ns".to_owned(), "creds".to_owned()),
            Cached {
                version,
                parsed: credentials_of("ns", "creds", &data(&[])).map(Arc::new),
            },
        );
        writer.apply_watcher_event(&watcher::Event::Apply(meta("creds", "3")));
        writer.apply_watcher_event(&watcher::Event::Apply(meta("hosts", "7")));
        let err = cache.load(&client, "ns", &ssh_spec()).await.err().unwrap();
        assert_eq!(err.reason, "SecretKeyMissing", "{err:?}");
    }

    #[test]
    fn the_watched_metadata_keeps_only_what_the_cache_compares() {
        let mut m = meta("creds", "5");
        m.metadata.annotations = Some(BTreeMap::from([(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            "{\"data\":{\"password\":\"cHc=\"}}".to_owned(),
        )]));
        m.metadata.labels = Some(BTreeMap::from([("a".to_owned(), "b".to_owned())]));
        strip_meta(&mut m);
        assert_eq!(m.metadata.name.as_deref(), Some("creds"));
        assert_eq!(m.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(m.metadata.uid.as_deref(), Some("uid-creds"));
        assert_eq!(m.metadata.resource_version.as_deref(), Some("5"));
        assert!(m.metadata.annotations.is_none() && m.metadata.labels.is_none());
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
