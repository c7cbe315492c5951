//! The control plane's processes: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler, their flags, certificates and kubeconfigs, each on free loopback ports and in
//! a process group of its own (recorded for the teardown), and waiting until they serve.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use host_procs::free_port;

use super::TestCluster;
use super::kubeconfig::{load_kubeconfig, write_kubeconfig};
use super::teardown::record_pgid;
use crate::certs::Pki;
use crate::process::{ProcessGroup, log_tail};

impl TestCluster {
    pub(super) async fn start_control_plane(&mut self, pki: &Pki) -> Result<()> {
        let dir = self.dir.clone();
        let logs = dir.join("logs");
        let bin = &self.bin_dir.clone();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);

        let serving = pki.issue_server(
            "apiserver",
            "kube-apiserver",
            &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )?;
        let admin = pki.issue_client("admin", "esc-testbed-admin", &["system:masters"])?;
        let kcm = pki.issue_client("controller-manager", "system:kube-controller-manager", &[])?;
        let scheduler = pki.issue_client("scheduler", "system:kube-scheduler", &[])?;
        let kubelet_client = pki.issue_client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
        )?;
        let (sa_key, sa_pub) = pki.service_account_key("service-account")?;
        let ca = pki.ca_cert_path().to_owned();

        // etcd
        let etcd_port = free_port(lo)?;
        let peer_port = free_port(lo)?;
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.args([
            "--name=default",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            &format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]);
        self.spawn("etcd", etcd, &logs)?;
        self.wait_tcp("etcd", etcd_port, Duration::from_secs(20))
            .await?;

        // kube-apiserver
        self.api_port = free_port(lo)?;
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, super::audit::POLICY)?;
        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.api_port),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={}", ca.display()),
            "--authorization-mode=Node,RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--endpoint-reconciler-type=none".into(),
            format!(
                "--kubelet-client-certificate={}",
                kubelet_client.cert.display()
            ),
            format!("--kubelet-client-key={}", kubelet_client.key.display()),
            format!("--kubelet-certificate-authority={}", ca.display()),
            // The node is named `localhost`: the API server reaches the kubelet on loopback,
            // never through the node's InternalIP.
            "--kubelet-preferred-address-types=Hostname".into(),
            "--profiling=false".into(),
            "--audit-log-format=json".into(),
        ]);
        if self.options.audit_log {
            // Every request, reads too (see `request_log`): benchmarks count what a client sends.
            apiserver.args(super::request_log::apiserver_flags(
                &dir,
                &self.audit_log_path(),
            )?);
        } else {
            // Every write, who made it and when (see `audit`): tests read it back.
            apiserver.args([
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", self.audit_log_path().display()),
            ]);
        }
        self.spawn("kube-apiserver", apiserver, &logs)?;

        let server = self.api_server_url();
        write_kubeconfig(
            &self.admin_kubeconfig,
            &server,
            &ca,
            &admin.cert,
            &admin.key,
        )?;
        self.config = load_kubeconfig(&self.admin_kubeconfig).await?;
        self.wait_readyz(Duration::from_secs(90)).await?;

        if self.options.with_controller_manager {
            let kubeconfig = dir.join("controller-manager.kubeconfig");
            write_kubeconfig(&kubeconfig, &server, &ca, &kcm.cert, &kcm.key)?;
            let mut cmd = Command::new(bin.join("kube-controller-manager"));
            cmd.args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--controllers=*".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                format!("--root-ca-file={}", ca.display()),
                format!("--service-account-private-key-file={}", sa_key.display()),
                "--use-service-account-credentials=true".into(),
                "--kube-api-qps=1000".into(),
                "--kube-api-burst=2000".into(),
            ]);
            self.spawn("kube-controller-manager", cmd, &logs)?;
        }
        if self.options.with_scheduler {
            let kubeconfig = dir.join("scheduler.kubeconfig");
            write_kubeconfig(&kubeconfig, &server, &ca, &scheduler.cert, &scheduler.key)?;
            let mut cmd = Command::new(bin.join("kube-scheduler"));
            cmd.args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ]);
            self.spawn("kube-scheduler", cmd, &logs)?;
        }
        Ok(())
    }

    fn spawn(&mut self, name: &str, cmd: Command, logs: &Path) -> Result<()> {
        let group = ProcessGroup::spawn(name, cmd, &logs.join(format!("{name}.log")))?;
        record_pgid(&self.dir, group.pid())?;
        self.control_plane.push(group);
        Ok(())
    }

    /// Fails with the process's log tail if one of the processes has exited.
    fn check_alive(&mut self) -> Result<()> {
        let logs = self.dir.join("logs");
        for p in &mut self.control_plane {
            if let Some(status) = p.try_exit_status() {
                let log = logs.join(format!("{}.log", p.name()));
                bail!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    p.name(),
                    log.display(),
                    log_tail(&log, 25)
                );
            }
        }
        Ok(())
    }

    async fn wait_tcp(&mut self, name: &str, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} did not listen on 127.0.0.1:{port} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_readyz(&mut self, timeout: Duration) -> Result<()> {
        let client = kube::Client::try_from(self.config.clone())?;
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz").body(Vec::new())?;
            let last = match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("kube-apiserver /readyz not ok within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
