//! Benchmark: stream a 1 GiB file from a simulated ESC node (real OpenSSH sshd on loopback) with
//! this crate's SSH client vs OpenSSH's `ssh host cat file > /dev/null`, interleaved, and print
//! MB/s per run, the medians and the ratio.
//!
//! ```text
//! cargo run --release --example ssh_stream_bench [-- --rounds N --size-mib M --window-mib W]
//! ```
//!
//! Rows:
//! - `esc-operator download_to`: [`SshSession::download_to`] into a sink (the API the mover uses
//!   to write a file), including its `stat` round trip and the truncation checks;
//! - `esc-operator read_file`: [`SshSession::read_file`] (AsyncRead) copied into a sink;
//! - `esc-operator +sha256`: [`SshSession::download_hashed`], hashing the bytes as they pass;
//! - `russh-sftp read`: the alternative design, SFTP (`russh-sftp`, 16 pipelined reads) over a
//!   russh connection with the same cipher, for the record of why this client uses `cat`;
//! - `openssh default`: `ssh ... cat FILE > /dev/null` with OpenSSH's default cipher choice
//!   (what a user gets);
//! - `openssh aes256-gcm`: the same with `-c aes256-gcm@openssh.com`, the cipher this client
//!   prefers, for a like-for-like comparison.
//!
//! Host keys are pinned for both clients (a temporary known_hosts; `StrictHostKeyChecking=yes`),
//! both log in with the same ed25519 key. Needs `tools/sshd/setup.sh` (run once, as root).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use esc_operator::esc::{
    KnownHosts, RemotePath, SessionOptions, SshCredentials, SshSession, SshTarget,
};
use esc_testbed::sshd::{Fill, SimEsc, SimNode, SimSpec};

struct Args {
    rounds: usize,
    size_mib: u64,
    window_mib: Option<u32>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        rounds: 3,
        size_mib: 1024,
        window_mib: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => a.rounds = it.next().context("--rounds N")?.parse()?,
            "--size-mib" => a.size_mib = it.next().context("--size-mib M")?.parse()?,
            "--window-mib" => a.window_mib = Some(it.next().context("--window-mib W")?.parse()?),
            other => {
                bail!("unknown argument {other} (use --rounds N, --size-mib M, --window-mib W)")
            }
        }
    }
    Ok(a)
}

fn openssh_cat(node: &SimNode, path: &str, cipher: Option<&str>) -> Result<f64> {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg("/dev/null")
        .arg("-p")
        .arg(node.port().to_string())
        .arg("-i")
        .arg(node.private_key_path())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            node.known_hosts_file().display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ]);
    if let Some(cipher) = cipher {
        c.arg("-c").arg(cipher);
    }
    c.arg(format!("{}@{}", node.key_user(), node.address()))
        .arg("--")
        .arg(format!("cat {path}"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create("/dev/null")?));
    let t = Instant::now();
    let st = c.status().context("run ssh")?;
    let el = t.elapsed().as_secs_f64();
    if !st.success() {
        bail!("ssh cat failed: {st}");
    }
    Ok(el)
}

/// A bench-only russh handler: accepts exactly the node's host key.
struct PinnedHostKey(russh::keys::PublicKey);

impl russh::client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, russh::keys::PublicKeyOrCertificate::PublicKey { key, .. }
            if key.key_data() == self.0.key_data()),
        )
    }
}

/// An SFTP session on its own russh connection, configured like [`SshSession`]'s.
async fn sftp_session(
    node: &SimNode,
) -> Result<(
    russh::client::Handle<PinnedHostKey>,
    russh_sftp::client::SftpSession,
)> {
    let host_key = russh::keys::PublicKey::from_openssh(node.host_public_key())?;
    let preferred = russh::Preferred {
        cipher: std::borrow::Cow::Owned(vec![russh::cipher::AES_256_GCM]),
        ..Default::default()
    };
    let config = russh::client::Config {
        preferred,
        window_size: SessionOptions::default().window_size,
        nodelay: true,
        ..Default::default()
    };
    let mut handle = russh::client::connect(
        Arc::new(config),
        node.socket_addr(),
        PinnedHostKey(host_key),
    )
    .await?;
    let key = russh::keys::decode_secret_key(&node.private_key_pem()?, None)?;
    let auth = handle
        .authenticate_publickey(
            node.key_user(),
            russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await?;
    anyhow::ensure!(auth.success(), "sftp bench login refused");
    let channel = handle.channel_open_session().await?;
    channel.request_subsystem(true, "sftp").await?;
    let sftp = russh_sftp::client::SftpSession::new(channel.into_stream()).await?;
    Ok((handle, sftp))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn main() -> Result<()> {
    let args = args()?;
    let size = args.size_mib << 20;
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    eprintln!(
        "creating a {} MiB incompressible file on node {} ({}:{})...",
        args.size_mib,
        node.name(),
        node.address(),
        node.port()
    );
    let file = node.create_file("bench.bin", size, Fill::Random(0x5eed))?;
    let file_str = file.to_str().context("utf-8 path")?.to_owned();
    let remote = RemotePath::new(file_str.clone())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let session = rt.block_on(SshSession::connect(
        SshTarget::new(node.address().to_string(), node.port(), node.key_user()),
        &SshCredentials::private_key(node.private_key_pem()?.into_bytes(), None),
        &KnownHosts::parse(&node.known_hosts_line()),
        SessionOptions {
            window_size: args
                .window_mib
                .map_or(SessionOptions::default().window_size, |w| w << 20),
            ..SessionOptions::default()
        },
    ))?;

    let (_sftp_conn, sftp) = rt.block_on(sftp_session(node))?;
    let labels = [
        "esc-operator download_to",
        "esc-operator read_file",
        "esc-operator +sha256",
        "russh-sftp read",
        "openssh default",
        "openssh aes256-gcm",
    ];
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    println!(
        "{:<6} {:<26} {:>9} {:>9}",
        "round", "client", "seconds", "MB/s"
    );
    for round in 1..=args.rounds {
        for (i, label) in labels.iter().enumerate() {
            let el = match i {
                0 => {
                    let t = Instant::now();
                    let n = rt.block_on(session.download_to(&remote, &mut tokio::io::sink()))?;
                    anyhow::ensure!(n == size, "got {n} bytes of {size}");
                    t.elapsed().as_secs_f64()
                }
                1 => {
                    let t = Instant::now();
                    let n = rt.block_on(async {
                        let mut r = session.read_file(&remote).await?;
                        Ok::<_, anyhow::Error>(
                            tokio::io::copy(&mut r, &mut tokio::io::sink()).await?,
                        )
                    })?;
                    anyhow::ensure!(n == size, "got {n} bytes of {size}");
                    t.elapsed().as_secs_f64()
                }
                2 => {
                    let t = Instant::now();
                    let d =
                        rt.block_on(session.download_hashed(&remote, &mut tokio::io::sink()))?;
                    anyhow::ensure!(d.bytes == size, "got {} bytes of {size}", d.bytes);
                    t.elapsed().as_secs_f64()
                }
                3 => {
                    let t = Instant::now();
                    let n = rt.block_on(async {
                        let mut f = sftp.open(file_str.as_str()).await?;
                        Ok::<_, anyhow::Error>(
                            tokio::io::copy(&mut f, &mut tokio::io::sink()).await?,
                        )
                    })?;
                    anyhow::ensure!(n == size, "sftp got {n} bytes of {size}");
                    t.elapsed().as_secs_f64()
                }
                4 => openssh_cat(node, &file_str, None)?,
                _ => openssh_cat(node, &file_str, Some("aes256-gcm@openssh.com"))?,
            };
            secs[i].push(el);
            println!(
                "{round:<6} {label:<26} {el:>9.2} {:>9.0}",
                size as f64 / el / 1e6
            );
        }
    }
    println!();
    println!("median over {} rounds, {} MiB:", args.rounds, args.size_mib);
    let mbps: Vec<f64> = secs.iter().map(|s| size as f64 / median(s) / 1e6).collect();
    for (label, m) in labels.iter().zip(&mbps) {
        println!("  {label:<26} {m:>9.0} MB/s");
    }
    println!(
        "ratio esc-operator (download_to) / openssh default:    {:.2}x  (goal >= 1.0x)",
        mbps[0] / mbps[4]
    );
    println!(
        "ratio esc-operator (download_to) / openssh aes256-gcm: {:.2}x",
        mbps[0] / mbps[5]
    );
    rt.block_on(session.close());
    Ok(())
}
