//! Pure tests of the API types: serde names, defaults and the generated schema's rules. The
//! same rules are exercised on a real API server by `tests/crd_admission.rs`.

use super::*;
use serde_json::json;

fn cluster_spec(value: serde_json::Value) -> EscClusterSpec {
    serde_json::from_value(value).expect("valid EscClusterSpec")
}

#[test]
fn omitted_fields_take_the_documented_defaults() {
    let spec = cluster_spec(json!({
        "topology": "HA",
        "nodes": [{"name": "a", "host": "10.0.0.1"}, {"name": "b", "host": "10.0.0.2"}],
        "ssh": {"user": "admin", "credentialsSecretRef": {"name": "c"}, "knownHostsSecretRef": {"name": "k"}}
    }));
    assert_eq!(spec.topology, Topology::Ha);
    assert_eq!(spec.nodes[0].port, 22);
    assert!(!spec.ssh.sudo);
    assert_eq!(
        std::time::Duration::from(spec.ssh.connect_timeout),
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        std::time::Duration::from(spec.probe_interval),
        std::time::Duration::from_secs(60)
    );
    assert!(
        spec.maintenance.ipt_check,
        "ipt_check is on unless turned off"
    );
    assert_eq!(spec.maintenance.max_duration, None);
}

#[test]
fn durations_use_the_go_format_kubernetes_uses() {
    let spec = cluster_spec(json!({
        "topology": "Standalone",
        "nodes": [{"name": "a", "host": "esc.example"}],
        "ssh": {"user": "admin", "credentialsSecretRef": {"name": "c"}, "knownHostsSecretRef": {"name": "k"}},
        "maintenance": {"maxDuration": "1h30m"},
        "probeInterval": "45s"
    }));
    assert_eq!(
        spec.maintenance.max_duration.map(std::time::Duration::from),
        Some(std::time::Duration::from_secs(5400))
    );
    assert!(
        serde_json::from_value::<EscClusterSpec>(json!({
            "topology": "Standalone", "nodes": [], "probeInterval": "soon",
            "ssh": {"user": "u", "credentialsSecretRef": {"name": "c"}, "knownHostsSecretRef": {"name": "k"}}
        }))
        .is_err(),
        "a malformed duration must not deserialize"
    );
}

#[test]
fn enums_serialize_with_the_names_users_write() {
    assert_eq!(json!(Topology::Ha), json!("HA"));
    assert_eq!(json!(NodeRole::Master), json!("MASTER"));
    assert_eq!(json!(NodeRole::Backup), json!("BACKUP"));
    assert_eq!(json!(SseAlgorithm::AwsKms), json!("aws:kms"));
    assert_eq!(json!(SseAlgorithm::Aes256), json!("AES256"));
    assert_eq!(
        json!(BackupStep::CollectStandbyLogs),
        json!("CollectStandbyLogs")
    );
    assert_eq!(json!(RestoreStep::StopStandby), json!("StopStandby"));
    assert_eq!(json!(ChecksumMode::default()), json!("WhenSupported"));
    assert_eq!(json!(DeletionPolicy::default()), json!("Retain"));
    assert_eq!(json!(OnRestoreFailure::default()), json!("RestartServices"));
}

#[test]
fn flattened_s3_connection_reads_and_writes_flat_fields() {
    let target: S3Target = serde_json::from_value(json!({
        "bucket": "esc-backups", "prefix": "prod/", "forcePathStyle": true,
        "checksumMode": "WhenRequired", "endpoint": "http://127.0.0.1:9000"
    }))
    .unwrap();
    assert_eq!(target.connection.bucket, "esc-backups");
    assert_eq!(target.connection.checksum_mode, ChecksumMode::WhenRequired);
    assert_eq!(target.prefix.as_deref(), Some("prod/"));
    let back = serde_json::to_value(&target).unwrap();
    assert_eq!(back["bucket"], "esc-backups");
    assert!(
        back.get("connection").is_none(),
        "flattened, not nested: {back}"
    );
}

/// Every CEL rule in the generated CRDs carries a message: a rule without one would answer a
/// user with the bare expression.
#[test]
fn every_cel_rule_has_a_message() {
    fn walk(value: &serde_json::Value, path: &str, rules: &mut usize) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(validations)) =
                    map.get("x-kubernetes-validations")
                {
                    for rule in validations {
                        *rules += 1;
                        let message = rule["message"].as_str().unwrap_or_default();
                        assert!(
                            message.len() > 15,
                            "rule at {path} without a helpful message: {rule}"
                        );
                    }
                }
                for (key, child) in map {
                    walk(child, &format!("{path}.{key}"), rules);
                }
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|item| walk(item, path, rules))
            }
            _ => {}
        }
    }
    let mut rules = 0;
    for crd in crds() {
        walk(
            &serde_json::to_value(&crd).unwrap(),
            crd.metadata.name.as_deref().unwrap(),
            &mut rules,
        );
    }
    assert!(rules >= 25, "only {rules} CEL rules found");
}

/// Every string a CEL rule inspects has a maxLength, so the API server's cost estimate for
/// the rule stays bounded (unbounded strings can make it reject the CRD).
#[test]
fn strings_under_cel_rules_are_bounded() {
    fn walk(value: &serde_json::Value, path: &str) {
        if let serde_json::Value::Object(map) = value {
            let is_string = map.get("type").and_then(|t| t.as_str()) == Some("string");
            let has_rules = map.contains_key("x-kubernetes-validations");
            if is_string && has_rules {
                assert!(
                    map.contains_key("maxLength"),
                    "{path}: a string with CEL rules but no maxLength"
                );
            }
            for (key, child) in map {
                walk(child, &format!("{path}.{key}"));
            }
        }
    }
    for crd in crds() {
        walk(&serde_json::to_value(&crd).unwrap(), "");
    }
}
