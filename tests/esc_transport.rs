//! The SSH transport ([`SshSession`]) against real OpenSSH sshd (the simulator's nodes): host
//! key verification, authentication (key types, PEM, passphrase, password), timeouts, output
//! limits, sudo, streaming reads and writes, and truncation detection through a TCP proxy that
//! cuts or stalls the connection mid-transfer.
//!
//! Needs `tools/sshd/setup.sh` (run once, as root).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use esc_operator::esc::known_hosts::fingerprint;
use esc_operator::esc::{
    CommandLimits, CommandLine, ExitStatus, HostKeyError, KnownHosts, NodeAddr, RemotePath,
    SessionOptions, SshCredentials, SshError, SshSession, SshTarget,
};
use esc_testbed::sshd::{Fill, KeyType, SimEsc, SimNode, SimSpec};
use russh::keys::PublicKey;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};

fn target(node: &SimNode) -> SshTarget {
    SshTarget::new(node.address().to_string(), node.port(), node.key_user())
}

fn key_creds(node: &SimNode) -> SshCredentials {
    SshCredentials::private_key(node.private_key_pem().unwrap().into_bytes(), None)
}

fn known(node: &SimNode) -> KnownHosts {
    KnownHosts::parse(&node.known_hosts_line())
}

async fn connect(node: &SimNode) -> Result<SshSession> {
    Ok(SshSession::connect(
        target(node),
        &key_creds(node),
        &known(node),
        SessionOptions::default(),
    )
    .await?)
}

fn host_key_fingerprint(node: &SimNode) -> String {
    fingerprint(&PublicKey::from_openssh(node.host_public_key()).unwrap())
}

fn cmd(argv: &[&str]) -> CommandLine {
    CommandLine::new("test", argv.iter().copied())
}

fn rpath(p: &std::path::Path) -> RemotePath {
    RemotePath::new(p.to_str().unwrap()).unwrap()
}

fn keygen(dir: &std::path::Path, name: &str, passphrase: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", "", "-N", passphrase, "-f"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_mismatch_and_unknown_host_are_refused() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let dir = tempfile::tempdir()?;
    let other = keygen(dir.path(), "other", "");
    let other_pub = std::fs::read_to_string(other.with_extension("pub"))?;
    let offered = host_key_fingerprint(node);

    // The right host and port, another key: a mismatch naming host, port and both keys.
    let kh = KnownHosts::parse(&format!(
        "[{}]:{} {}",
        node.address(),
        node.port(),
        other_pub.trim()
    ));
    let err = SshSession::connect(
        target(node),
        &key_creds(node),
        &kh,
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SshError::HostKey(HostKeyError::Mismatch { .. })),
        "{err:?}"
    );
    assert_eq!(err.reason(), "HostKeyMismatch");
    assert_eq!(
        err.node(),
        Some(&NodeAddr::new(node.address().to_string(), node.port()))
    );
    let msg = err.to_string();
    assert!(msg.contains(&node.address().to_string()), "{msg}");
    assert!(msg.contains(&node.port().to_string()), "{msg}");
    assert!(msg.contains(&offered), "{msg}");

    // The node's key, recorded for another port: unknown.
    let kh = KnownHosts::parse(&format!(
        "[{}]:{} {}",
        node.address(),
        node.port() + 1,
        node.host_public_key()
    ));
    let err = SshSession::connect(
        target(node),
        &key_creds(node),
        &kh,
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SshError::HostKey(HostKeyError::Unknown { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(&offered), "{err}");

    // Empty known_hosts: unknown, too. Nothing is ever accepted blindly.
    let err = SshSession::connect(
        target(node),
        &key_creds(node),
        &KnownHosts::parse(""),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SshError::HostKey(HostKeyError::Unknown { .. })),
        "{err:?}"
    );

    // Hashed entries (ssh-keygen -H) work.
    let khf = dir.path().join("known_hosts");
    std::fs::write(&khf, format!("{}\n", node.known_hosts_line()))?;
    assert!(
        Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&khf)
            .output()?
            .status
            .success()
    );
    let hashed = std::fs::read_to_string(&khf)?;
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let s = SshSession::connect(
        target(node),
        &key_creds(node),
        &KnownHosts::parse(&hashed),
        SessionOptions::default(),
    )
    .await?;
    assert!(
        s.run(&cmd(&["true"]), &CommandLimits::default())
            .await?
            .exit_status
            .success()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_errors_are_clear_and_never_leak_secrets() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let pw_target = SshTarget::new(
        node.address().to_string(),
        node.port(),
        node.password_user(),
    );

    // The right password works.
    let s = SshSession::connect(
        pw_target.clone(),
        &SshCredentials::password(node.password()),
        &known(node),
        SessionOptions::default(),
    )
    .await?;
    let out = s
        .run(&cmd(&["id", "-un"]), &CommandLimits::default())
        .await?;
    assert_eq!(out.stdout_text().trim(), node.password_user());

    // A wrong password.
    let wrong = format!("{}-wrong-x9", node.password());
    let err = SshSession::connect(
        pw_target,
        &SshCredentials::password(wrong.clone()),
        &known(node),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
    assert_eq!(err.reason(), "AuthFailed");
    let msg = err.to_string();
    let dbg = format!("{err:?}");
    assert!(
        msg.contains("password authentication") && msg.contains(node.password_user()),
        "{msg}"
    );
    assert!(!msg.contains(&wrong) && !dbg.contains(&wrong), "{msg}");
    assert!(!msg.contains(node.password()), "{msg}");

    // A key the node does not know.
    let dir = tempfile::tempdir()?;
    let stranger = keygen(dir.path(), "stranger", "");
    let stranger_bytes = std::fs::read(&stranger)?;
    let err = SshSession::connect(
        target(node),
        &SshCredentials::private_key(stranger_bytes.clone(), None),
        &known(node),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            SshError::AuthRejected {
                method: "publickey",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(node.key_user()), "{err}");

    // Garbage instead of a key: refused before any network I/O, without quoting it.
    let err = SshSession::connect(
        target(node),
        &SshCredentials::private_key(b"not a key at all: s3cr3t".to_vec(), None),
        &known(node),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::InvalidPrivateKey { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");

    // Something listening that never speaks SSH: the connect timeout.
    let mute = TcpListener::bind("127.0.0.1:0").await?;
    let mute_port = mute.local_addr()?.port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = mute.accept().await {
            held.push(sock);
        }
    });
    let opts = SessionOptions {
        connect_timeout: Duration::from_secs(1),
        ..SessionOptions::default()
    };
    let t = Instant::now();
    let err = SshSession::connect(
        SshTarget::new("127.0.0.1", mute_port, "root"),
        &key_creds(node),
        &known(node),
        opts,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::ConnectTimeout { .. }), "{err:?}");
    assert_eq!(err.reason(), "ConnectTimeout");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Nothing listening: a connect error naming host and port.
    let closed = SshTarget::new(node.address().to_string(), 1, "root");
    let err = SshSession::connect(
        closed,
        &key_creds(node),
        &known(node),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("port 1"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_rsa_ecdsa_pem_and_passphrase_keys() -> Result<()> {
    for pem in [false, true] {
        let mut spec =
            SimSpec::standalone().key_types(&[KeyType::Ed25519, KeyType::Rsa, KeyType::Ecdsa]);
        spec.pem_keys = pem;
        let sim = SimEsc::start(spec)?;
        let node = sim.node("esc");
        for kind in [KeyType::Ed25519, KeyType::Rsa, KeyType::Ecdsa] {
            let key = node.private_key_of(kind)?;
            let s = SshSession::connect(
                target(node),
                &SshCredentials::private_key(key.into_bytes(), None),
                &known(node),
                SessionOptions::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{kind:?} pem={pem}: {e}"))?;
            let out = s
                .run(&cmd(&["echo", "ok"]), &CommandLimits::default())
                .await?;
            assert_eq!(out.stdout_text(), "ok\n", "{kind:?} pem={pem}");
            s.close().await;
        }
    }

    // A passphrase-protected copy of the node's key.
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let dir = tempfile::tempdir()?;
    let enc = dir.path().join("enc");
    std::fs::copy(node.private_key_path(), &enc)?;
    let st = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "pass phrase 1", "-f"])
        .arg(&enc)
        .status()?;
    assert!(st.success());
    let bytes = std::fs::read(&enc)?;
    let s = SshSession::connect(
        target(node),
        &SshCredentials::private_key(bytes.clone(), Some("pass phrase 1".into())),
        &known(node),
        SessionOptions::default(),
    )
    .await?;
    assert!(
        s.run(&cmd(&["true"]), &CommandLimits::default())
            .await?
            .exit_status
            .success()
    );
    let err = SshSession::connect(
        target(node),
        &SshCredentials::private_key(bytes.clone(), None),
        &known(node),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no passphrase"), "{err}");
    let err = SshSession::connect(
        target(node),
        &SshCredentials::private_key(bytes, Some("wrong".into())),
        &known(node),
        SessionOptions::default(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("wrong passphrase"), "{msg}");
    assert!(!msg.contains("pass phrase 1"), "{msg}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_exit_status_stderr_timeouts_limits_and_sudo() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let s = connect(node).await?;

    let out = s
        .run(
            &cmd(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            &CommandLimits::default(),
        )
        .await?;
    assert_eq!(out.exit_status, ExitStatus::Code(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let err = s
        .run_ok(
            &cmd(&["sh", "-c", "echo nope >&2; exit 4"]),
            &CommandLimits::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("exit status 4") && err.to_string().contains("nope"),
        "{err}"
    );

    // A command that exits but leaves something running with its output open (a daemon that
    // `escadm restart` starts): done soon after the exit, and what it started keeps running.
    let t = Instant::now();
    let out = s
        .run(
            &cmd(&["sh", "-c", "sleep 331 & echo started"]),
            &CommandLimits::with_timeout(Duration::from_secs(20)),
        )
        .await?;
    assert_eq!(out.exit_status, ExitStatus::Code(0));
    assert_eq!(out.stdout_text(), "started\n");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pgrep("sleep 331"), "the started process was killed");
    // End it by its pid (it is this test's own process).
    let pids = Command::new("pgrep").args(["-f", "^sleep 331$"]).output()?;
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = Command::new("kill").arg(pid).status();
    }

    // A prompt gets end of input at once, it does not wait for the timeout.
    let t = Instant::now();
    let out = s
        .run(
            &cmd(&[
                "sh",
                "-c",
                "printf 'Password: ' >&2; read pw || echo no-input",
            ]),
            &CommandLimits::with_timeout(Duration::from_secs(20)),
        )
        .await?;
    assert_eq!(out.stdout_text(), "no-input\n");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A hanging command times out promptly; the connection stays usable.
    let t = Instant::now();
    let err = s
        .run(
            &cmd(&["sleep", "30"]),
            &CommandLimits::with_timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::CommandTimeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Bounded output: a flood is refused, not buffered.
    let limits = CommandLimits {
        max_stdout: 1 << 20,
        ..CommandLimits::default()
    };
    let err = s
        .run(&cmd(&["head", "-c", "50000000", "/dev/zero"]), &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SshError::OutputTooLarge { limit: 1048576, .. }),
        "{err:?}"
    );
    let limits = CommandLimits {
        max_stderr: 10,
        ..CommandLimits::default()
    };
    let out = s
        .run(&cmd(&["sh", "-c", "head -c 100000 /dev/zero >&2"]), &limits)
        .await?;
    // It exited 0, yet the cut is not silent: counted in raw bytes, and a warning.
    assert!(out.exit_status.success());
    assert_eq!(out.stderr.len(), 10);
    assert_eq!(out.stderr_truncated, Some(100_000 - 10));
    assert_eq!(out.warnings().len(), 1, "{:?}", out.warnings());
    // A failing command's error quotes what was kept and counts what was dropped.
    let err = s
        .run_ok(
            &cmd(&[
                "sh",
                "-c",
                "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 3",
            ]),
            &limits,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"xxxxxxxxxx\" (+99990 more bytes)"),
        "{err}"
    );
    assert_eq!(err.reason(), "RemoteCommandFailed");

    // Killed by a signal.
    let out = s
        .run(
            &cmd(&["sh", "-c", "kill -TERM $$"]),
            &CommandLimits::default(),
        )
        .await?;
    assert!(!out.exit_status.success(), "{:?}", out.exit_status);

    let out = s
        .run(&cmd(&["echo", "still here"]), &CommandLimits::default())
        .await?;
    assert_eq!(out.stdout_text(), "still here\n");

    // sudo -n (the node's sudo shim), on a session of the password user.
    let opts = SessionOptions {
        sudo: true,
        ..SessionOptions::default()
    };
    let s = SshSession::connect(
        SshTarget::new(
            node.address().to_string(),
            node.port(),
            node.password_user(),
        ),
        &SshCredentials::password(node.password()),
        &known(node),
        opts,
    )
    .await?;
    let out = s
        .run(
            &cmd(&["escadm", "op_mode", "show"]),
            &CommandLimits::default(),
        )
        .await?;
    assert!(out.exit_status.success(), "{out:?}");
    assert_eq!(out.stdout_text().trim(), "Operation Mode = OPERATION");
    Ok(())
}

fn sha256_file(p: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

async fn read_all_hashing(mut r: impl AsyncRead + Unpin) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).await?;
        if k == 0 {
            return Ok((n, hex::encode(h.finalize())));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_reads_and_writes_are_exact() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let s = connect(node).await?;
    let size = 48 * (1 << 20) + 12345;
    let file = node.create_file("big.bin", size, Fill::Random(7))?;
    let want = sha256_file(&file)?;

    let reader = s.read_file(&rpath(&file)).await?;
    assert_eq!(reader.size(), size);
    let (n, got) = read_all_hashing(reader).await?;
    assert_eq!((n, got.as_str()), (size, want.as_str()));
    let done = s
        .download_hashed(&rpath(&file), &mut tokio::io::sink())
        .await?;
    assert_eq!(done.bytes, size);
    assert_eq!(done.sha256.to_string(), want);

    // Upload what we read back, to a new file, and compare.
    let data = std::fs::read(&file)?;
    let copy = node.data_dir().join("copy.bin");
    let sent = s.upload_from(&mut &data[..], &rpath(&copy)).await?;
    assert_eq!(sent, size);
    assert_eq!(sha256_file(&copy)?, want);
    assert!(!node.data_dir().join("copy.bin.partial").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy)?.permissions().mode() & 0o777,
        0o600
    );

    // Empty files are files too.
    let empty = node.create_file("empty", 0, Fill::Zeros)?;
    let mut sink = Vec::new();
    assert_eq!(s.download_to(&rpath(&empty), &mut sink).await?, 0);

    // A missing file is an error naming it.
    let err = s
        .download_to(&rpath(&node.data_dir().join("missing")), &mut sink)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    // An upload whose source fails midway leaves neither the target nor a partial file.
    struct Failing(usize);
    impl AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("source broke")));
            }
            let n = self.0.min(buf.remaining()).min(65536);
            buf.put_slice(&vec![1u8; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let target_file = node.data_dir().join("never.bin");
    let err = s
        .upload_from(&mut Failing(1 << 20), &rpath(&target_file))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::LocalIo { .. }), "{err:?}");
    assert!(!target_file.exists());
    assert!(!node.data_dir().join("never.bin.partial").exists());

    // An upload to a place that cannot be written fails with the remote error.
    let err = s
        .upload_from(&mut &b"x"[..], &RemotePath::new("/proc/forbidden/x")?)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::RemoteFailed { .. }), "{err:?}");
    Ok(())
}

/// A TCP proxy in front of a node that forwards everything until `cut_after` bytes went from
/// the server to the client, then either drops both sockets or (`stall`) stops forwarding
/// while keeping them open.
async fn proxy(upstream: SocketAddr, cut_after: u64, stall: bool) -> Result<SocketAddr> {
    proxy_with_freeze(upstream, cut_after, stall, Arc::new(AtomicBool::new(false))).await
}

/// [`proxy`] that also goes silent (forwards nothing more from the server, keeps the sockets
/// open) as soon as `freeze` is set.
async fn proxy_with_freeze(
    upstream: SocketAddr,
    cut_after: u64,
    stall: bool,
    freeze: Arc<AtomicBool>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
        });
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if freeze.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(120)).await;
                break;
            }
            let n = if sent + n as u64 > cut_after {
                (cut_after - sent) as usize
            } else {
                n
            };
            use tokio::io::AsyncWriteExt;
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent += n as u64;
            if sent >= cut_after {
                if stall {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                }
                break;
            }
        }
        up.abort();
    });
    Ok(addr)
}

async fn connect_via(node: &SimNode, addr: SocketAddr, opts: SessionOptions) -> Result<SshSession> {
    let kh = KnownHosts::parse(&format!(
        "[{}]:{} {}",
        addr.ip(),
        addr.port(),
        node.host_public_key()
    ));
    Ok(SshSession::connect(
        SshTarget::new(addr.ip().to_string(), addr.port(), node.key_user()),
        &key_creds(node),
        &kh,
        opts,
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_stream_is_detected() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let size = 32 << 20;
    let file = node.create_file("big.bin", size, Fill::Random(9))?;

    // Through the AsyncRead interface: the reader fails, it never reports a clean short EOF.
    let addr = proxy(node.socket_addr(), 8 << 20, false).await?;
    let s = connect_via(node, addr, SessionOptions::default()).await?;
    let reader = s.read_file(&rpath(&file)).await?;
    let err = read_all_hashing(reader).await.unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<SshError>());
    assert!(
        matches!(inner, Some(SshError::ConnectionLost { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("bytes received"), "{err}");
    assert!(
        s.is_closed()
            || s.run(&cmd(&["true"]), &CommandLimits::default())
                .await
                .is_err()
    );

    // Through download_to: an error, and what was written is less than the file.
    let addr = proxy(node.socket_addr(), 8 << 20, false).await?;
    let s = connect_via(node, addr, SessionOptions::default()).await?;
    let mut sink = Vec::new();
    let err = s.download_to(&rpath(&file), &mut sink).await.unwrap_err();
    assert!(matches!(err, SshError::ConnectionLost { .. }), "{err:?}");
    assert!((sink.len() as u64) < size);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_times_out() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let file = node.create_file("big.bin", 32 << 20, Fill::Random(3))?;
    let addr = proxy(node.socket_addr(), 4 << 20, true).await?;
    let opts = SessionOptions {
        stream_idle_timeout: Duration::from_secs(2),
        ..SessionOptions::default()
    };
    let s = connect_via(node, addr, opts).await?;
    let t = Instant::now();
    let err = s
        .download_to(&rpath(&file), &mut tokio::io::sink())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::StreamStalled { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    Ok(())
}

fn pgrep(pattern: &str) -> bool {
    Command::new("pgrep")
        .arg("-f")
        .arg(pattern)
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

async fn eventually_gone(pattern: &str) -> bool {
    for _ in 0..50 {
        if !pgrep(pattern) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A caller that gives up (drops a reader, cancels a command) leaves nothing running remotely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transfers_and_commands_are_killed_on_the_node() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let s = connect(node).await?;
    let file = node.create_file("abandon-me.bin", 256 << 20, Fill::Zeros)?;
    let mut reader = s.read_file(&rpath(&file)).await?;
    let mut buf = vec![0u8; 4096];
    reader.read_exact(&mut buf).await?;
    assert!(pgrep("cat -- .*abandon-me.bin"), "cat should be running");
    drop(reader);
    assert!(
        eventually_gone("cat -- .*abandon-me.bin").await,
        "cat still runs"
    );

    let cancelled = tokio::time::timeout(
        Duration::from_secs(2),
        s.run(&cmd(&["sleep", "317"]), &CommandLimits::default()),
    )
    .await;
    assert!(cancelled.is_err());
    assert!(eventually_gone("sleep 317").await, "sleep still runs");
    // The session is fine.
    let out = s
        .run(&cmd(&["echo", "ok"]), &CommandLimits::default())
        .await?;
    assert_eq!(out.stdout_text(), "ok\n");
    Ok(())
}

/// A peer that goes silent during a long command is detected by keepalives, well before the
/// command's own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_detect_a_silent_peer() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let freeze = Arc::new(AtomicBool::new(false));
    let addr = proxy_with_freeze(node.socket_addr(), u64::MAX, false, freeze.clone()).await?;
    let opts = SessionOptions {
        keepalive_interval: Duration::from_secs(1),
        keepalive_max: 2,
        ..SessionOptions::default()
    };
    let s = connect_via(node, addr, opts).await?;
    let t = Instant::now();
    let sleep = cmd(&["sleep", "60"]);
    let limits = CommandLimits::with_timeout(Duration::from_secs(50));
    let (res, ()) = tokio::join!(s.run(&sleep, &limits), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        freeze.store(true, Ordering::SeqCst);
    });
    let err = res.unwrap_err();
    assert!(matches!(err, SshError::ConnectionLost { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(s.is_closed());
    Ok(())
}

/// How far the remote `cat` of `name` has read its file (`pos` of the file's descriptor).
fn remote_read_position(name: &str) -> Option<u64> {
    let out = Command::new("pgrep")
        .arg("-n")
        .arg("-f")
        .arg(format!("cat -- .*{name}"))
        .output()
        .ok()?;
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let link = std::fs::read_link(fd.path()).ok()?;
        if link.to_string_lossy().ends_with(name) {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .ok()?;
            return info
                .lines()
                .find_map(|l| l.strip_prefix("pos:"))
                .and_then(|p| p.trim().parse().ok());
        }
    }
    None
}

/// Backpressure: while the reader is not read, the node's `cat` is held back by the SSH window
/// and bounded buffers; it does not read ahead the whole file into our memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_holds_the_remote_side_back() -> Result<()> {
    let sim = SimEsc::start(SimSpec::standalone())?;
    let node = sim.node("esc");
    let s = connect(node).await?;
    let size = 256u64 << 20;
    let file = node.create_file("backpressure.bin", size, Fill::Zeros)?;
    let mut reader = s.read_file(&rpath(&file)).await?;
    let mut buf = vec![0u8; 1 << 16];
    reader.read_exact(&mut buf).await?;
    let pause = Duration::from_secs(4);
    tokio::time::sleep(pause).await;
    let pos = remote_read_position("backpressure.bin").expect("the remote cat and its file");
    // Reading on completes the transfer exactly; its rate shows how far an unbounded read-ahead
    // would have got during the pause, so the bound below is meaningful.
    let t = Instant::now();
    let n = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    assert_eq!(n + buf.len() as u64, size);
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let bound = 32u64 << 20;
    eprintln!("paused reader: remote read position {pos} bytes; drain rate {rate:.0} B/s");
    assert!(
        rate * pause.as_secs_f64() > 2.0 * bound as f64,
        "inconclusive: the transfer is too slow here ({rate:.0} B/s) to tell a bounded read-ahead"
    );
    assert!(
        pos < bound,
        "the node read {pos} bytes ahead of a paused reader"
    );
    Ok(())
}
