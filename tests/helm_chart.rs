//! The Helm chart `charts/esc-operator` without a cluster: its versions are the crate's, Helm 3
//! and Helm 4 lint it clean and refuse bad values by name, its RBAC is exactly
//! `manifests/rbac/operator.yaml` (which every operator test runs under), its mover template is
//! what the operator accepts, its alerts name series the operator exports, and
//! `manifests/install.yaml` is the chart rendered with its defaults.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use esc_operator::controller::backup::job::MoverTemplate;
use esc_operator::controller::metrics::{BackupOutcome, ClusterInfoLabels, ClusterLabels, Metrics};
use esc_testbed::helm::{Helm, HelmMajor, documents, of_kind, one};
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn helms() -> Result<Vec<Helm>> {
    HelmMajor::ALL.into_iter().map(Helm::new).collect()
}

#[test]
fn chart_version_and_app_version_are_the_crate_version() -> Result<()> {
    let chart: Value = serde_norway::from_str(&std::fs::read_to_string(repo(
        "charts/esc-operator/Chart.yaml",
    ))?)?;
    assert_eq!(chart["version"], VERSION, "Chart.yaml version");
    assert_eq!(chart["appVersion"], VERSION, "Chart.yaml appVersion");
    // The default image is the one tools/image/build.sh tags with the crate version.
    let docs = Helm::new(HelmMajor::V3)?.template("r", "ns", &[])?;
    let container = &one(&docs, "Deployment")?["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!("localhost/esc-operator:{VERSION}")
    );
    Ok(())
}

#[test]
fn install_yaml_is_the_chart_rendered_with_its_defaults() -> Result<()> {
    let out = Helm::run(
        Command::new("bash")
            .arg(repo("tools/helm/install-yaml.sh"))
            .arg("-"),
    )?;
    let generated = String::from_utf8(out.stdout)?;
    let committed = std::fs::read_to_string(repo("manifests/install.yaml"))?;
    assert!(
        generated == committed,
        "manifests/install.yaml is stale: run tools/helm/install-yaml.sh and commit the result"
    );
    let docs = documents(&committed)?;
    assert_eq!(
        of_kind(&docs, "CustomResourceDefinition").len(),
        esc_operator::api::crds().len()
    );
    assert_eq!(one(&docs, "Namespace")?["metadata"]["name"], "esc-operator");
    assert_eq!(
        one(&docs, "Deployment")?["metadata"]["namespace"],
        "esc-operator"
    );
    Ok(())
}

/// Lint output without findings above INFO (`--strict` turns warnings into failures too).
fn lint(helm: &Helm, args: &[&str]) -> Result<()> {
    let out = Helm::run(
        helm.command()
            .args(["lint", "--strict"])
            .arg(Helm::chart_dir())
            .args(args),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("[WARNING]") || text.contains("[ERROR]") {
        bail!("helm {:?} lint {args:?}:\n{text}", helm.major);
    }
    Ok(())
}

#[test]
fn helm_3_and_4_lint_and_render_every_variant_clean() -> Result<()> {
    let all_parts = [
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true",
        "--set",
        "watchNamespaces={esc-a,esc-b}",
        "--set",
        "hostNetwork=true,http.bindAddress=127.0.0.1,leaderElection.enabled=false,replicaCount=1",
    ];
    let mut rendered = Vec::new();
    for helm in helms()? {
        lint(&helm, &[])?;
        lint(&helm, &all_parts)?;
        rendered.push(helm.template("r", "ns", &all_parts)?);
    }
    // Both lines render the same objects.
    assert_eq!(rendered[0], rendered[1]);
    let docs = &rendered[0];
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        one(docs, kind)?;
    }
    let pod = &one(docs, "Deployment")?["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    // Bound to loopback: the kubelet's probes go there too.
    assert_eq!(
        pod["containers"][0]["readinessProbe"]["httpGet"]["host"],
        "127.0.0.1"
    );
    let args = pod["containers"][0]["args"].as_array().unwrap();
    assert!(args.contains(&json!("--no-leader-election")), "{args:?}");
    assert!(
        args.contains(&json!("--namespaces=esc-a,esc-b")),
        "{args:?}"
    );
    assert!(of_kind(docs, "Lease").is_empty() && of_kind(docs, "RoleBinding").len() == 2);
    Ok(())
}

#[test]
fn a_bad_value_fails_with_a_message_naming_it() -> Result<()> {
    let cases: [(&str, &str); 5] = [
        ("logFormat=xml", "/logFormat"),
        ("mover.s3Concurrency=64", "/mover/s3Concurrency"),
        ("replicas=3", "'replicas' not allowed"),
        ("watchNamespaces={Bad_NS}", "/watchNamespaces/0"),
        ("operator.releaseTimeout=soon", "/operator/releaseTimeout"),
    ];
    for helm in helms()? {
        for (set, message) in cases {
            let out = helm
                .command()
                .args(["template", "r"])
                .arg(Helm::chart_dir())
                .args(["--set", set])
                .output()?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains(message),
                "helm {:?} with {set}: {} {stderr}",
                helm.major,
                out.status
            );
        }
    }
    Ok(())
}

/// The rules of the ClusterRole `name` in `manifests/rbac/operator.yaml`.
fn manifest_rules(name: &str) -> Result<Value> {
    let docs = documents(&std::fs::read_to_string(repo(
        "manifests/rbac/operator.yaml",
    ))?)?;
    docs.iter()
        .find(|d| d["metadata"]["name"] == name)
        .map(|d| d["rules"].clone())
        .with_context(|| format!("no ClusterRole {name}"))
}

fn named<'a>(
    docs: &'a [Value],
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<&'a Value> {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && namespace.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        })
        .with_context(|| format!("no {kind} {name} in {namespace:?}"))
}

#[test]
fn rbac_is_that_of_manifests_rbac_cluster_wide_or_per_namespace() -> Result<()> {
    let helm = Helm::new(HelmMajor::V4)?;
    let controller = manifest_rules("esc-operator")?;
    let leader = manifest_rules("esc-operator-leader-election")?;
    let subject = json!([{ "kind": "ServiceAccount", "name": "esc-operator", "namespace": "ops" }]);

    // All namespaces: a ClusterRole with the controllers' rules, bound cluster-wide.
    let docs = helm.template("esc-operator", "ops", &[])?;
    assert_eq!(
        named(&docs, "ClusterRole", "esc-operator", None)?["rules"],
        controller
    );
    let binding = named(&docs, "ClusterRoleBinding", "esc-operator", None)?;
    assert_eq!(binding["subjects"], subject);
    assert_eq!(binding["roleRef"]["name"], "esc-operator");
    // The Lease: a Role in the release namespace only.
    let role = named(&docs, "Role", "esc-operator-leader-election", Some("ops"))?;
    assert_eq!(role["rules"], leader);
    let binding = named(
        &docs,
        "RoleBinding",
        "esc-operator-leader-election",
        Some("ops"),
    )?;
    assert_eq!(binding["subjects"], subject);
    assert_eq!(binding["roleRef"]["kind"], "Role");

    // Watched namespaces: a Role and RoleBinding in each, no cluster-scoped RBAC at all.
    let docs = helm.template(
        "esc-operator",
        "ops",
        &["--set", "watchNamespaces={esc-a,esc-b}"],
    )?;
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    for ns in ["esc-a", "esc-b"] {
        assert_eq!(
            named(&docs, "Role", "esc-operator", Some(ns))?["rules"],
            controller
        );
        let binding = named(&docs, "RoleBinding", "esc-operator", Some(ns))?;
        assert_eq!(binding["subjects"], subject);
        assert_eq!(
            binding["roleRef"],
            json!({
                "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "esc-operator"
            })
        );
    }
    assert_eq!(
        of_kind(&docs, "Role").len(),
        3,
        "two watched namespaces and the Lease"
    );
    Ok(())
}

fn mover_template(docs: &[Value]) -> Result<MoverTemplate> {
    let text = one(docs, "ConfigMap")?["data"]["mover.yaml"]
        .as_str()
        .context("no mover.yaml in the ConfigMap")?
        .to_owned();
    let template: MoverTemplate = serde_norway::from_str(&text)
        .with_context(|| format!("the operator refuses the chart's mover template:\n{text}"))?;
    template.validate().map_err(anyhow::Error::msg)?;
    Ok(template)
}

#[test]
fn the_mover_template_is_what_the_operator_reads() -> Result<()> {
    let helm = Helm::new(HelmMajor::V3)?;
    let docs = helm.template("r", "ns", &[])?;
    // The chart's defaults are the operator's own.
    assert_eq!(mover_template(&docs)?, MoverTemplate::default());
    let deployment = one(&docs, "Deployment")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].as_array().unwrap();
    let path = args
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--mover-template="))
        .context("no --mover-template")?;
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(Path::new(path), Path::new(mount).join("mover.yaml"));
    // The mover runs the operator's image unless the template names another.
    let env = container["env"].as_array().unwrap();
    assert!(env.contains(&json!({
        "name": "ESC_OPERATOR_IMAGE", "value": format!("localhost/esc-operator:{VERSION}")
    })));
    let checksum = |d: &[Value]| -> Result<Value> {
        Ok(one(d, "Deployment")?["spec"]["template"]["metadata"]["annotations"]
            ["checksum/mover-template"]
            .clone())
    };

    let values = helm.home().join("mover-values.yaml");
    std::fs::write(
        &values,
        r#"
mover:
  image: registry.example.com/esc-operator:0.1.0
  imagePullPolicy: Always
  resources: { requests: { cpu: 200m, memory: 128Mi }, limits: { memory: 512Mi } }
  nodeSelector: { esc-network: "true" }
  tolerations: [{ key: dedicated, operator: Equal, value: esc, effect: NoSchedule }]
  priorityClassName: backups
  hostNetwork: true
  s3PartSizeMiB: 16
  s3Concurrency: 8
"#,
    )?;
    let changed = helm.template("r", "ns", &["-f", values.to_str().unwrap()])?;
    let t = mover_template(&changed)?;
    assert_eq!(
        t.image.as_deref(),
        Some("registry.example.com/esc-operator:0.1.0")
    );
    assert_eq!(t.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        t.node_selector.get("esc-network").map(String::as_str),
        Some("true")
    );
    assert_eq!(t.tolerations[0].key.as_deref(), Some("dedicated"));
    assert_eq!(t.priority_class_name.as_deref(), Some("backups"));
    assert!(t.host_network);
    assert_eq!((t.s3_part_size_mib, t.s3_concurrency), (16, 8));
    let limits = t.resources.limits.unwrap();
    assert_eq!(limits["memory"].0, "512Mi");
    // A changed template rolls the pods (the operator reads it at start-up only).
    assert_ne!(checksum(&docs)?, checksum(&changed)?);
    Ok(())
}

#[test]
fn the_deployment_is_restricted_probed_and_elects_a_leader() -> Result<()> {
    let docs = Helm::new(HelmMajor::V4)?.template("esc-operator", "ops", &[])?;
    let spec = &one(&docs, "Deployment")?["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "esc-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod.get("hostNetwork").is_none());
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] }
        })
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({ "path": "/readyz", "port": "http" })
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({ "path": "/healthz", "port": "http" })
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let args = c["args"].as_array().unwrap();
    for arg in [
        "--lease-name=esc-operator",
        "--http-addr=0.0.0.0:8080",
        "--log-format=json",
    ] {
        assert!(args.contains(&json!(arg)), "{arg} not in {args:?}");
    }
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_NAME")
    );
    // The Lease the replicas elect through belongs to the release (uninstall deletes it).
    assert_eq!(one(&docs, "Lease")?["metadata"]["name"], "esc-operator");
    let pdb = one(&docs, "PodDisruptionBudget")?;
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);
    let service = one(&docs, "Service")?;
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    Ok(())
}

/// Every series an alert reads is one the operator exports, with the labels the alert
/// aggregates by: the registry is filled through the same calls the controllers make.
#[test]
fn the_alerts_read_series_the_operator_exports() -> Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let cluster = ClusterLabels {
        namespace: "ns".into(),
        name: "esc".into(),
    };
    let info = ClusterInfoLabels {
        namespace: "ns".into(),
        name: "esc".into(),
        topology: "HA".into(),
        version: "5.10".into(),
        master: "a".into(),
    };
    metrics.cluster_observed(&cluster, info, false, Some(SystemTime::now()));
    metrics.backup_finished(
        &cluster,
        &BackupOutcome {
            succeeded: true,
            reason: "Succeeded",
            seconds: 1.0,
            bytes: Some(1),
            maintenance_seconds: Some(1.0),
            finished_at: SystemTime::now(),
        },
    );
    metrics.restore_finished(&cluster, false, "ChecksumMismatch", 1.0);
    let mut exported = String::new();
    prometheus_client::encoding::text::encode(&mut exported, &registry)?;

    let docs =
        Helm::new(HelmMajor::V4)?.template("r", "ns", &["--set", "prometheusRule.enabled=true"])?;
    let rules = one(&docs, "PrometheusRule")?["spec"]["groups"][0]["rules"]
        .as_array()
        .context("no rules")?
        .clone();
    let alerts: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        alerts,
        [
            "EscBackupTooOld",
            "EscClusterInMaintenanceTooLong",
            "EscClusterUnreachable",
            "EscRestoreFailed"
        ]
    );
    for rule in &rules {
        let expr = rule["expr"].as_str().context("expr")?;
        let by: Vec<&str> = expr
            .split_once("by (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(labels, _)| labels.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let series: Vec<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("esc_"))
            .collect();
        assert!(!series.is_empty(), "{expr}");
        for name in series {
            let line = exported
                .lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .with_context(|| format!("{expr}: the operator exports no {name}:\n{exported}"))?;
            for label in &by {
                assert!(
                    line.contains(&format!("{label}=\"")),
                    "{expr}: {line} has no {label}"
                );
            }
        }
    }
    Ok(())
}
