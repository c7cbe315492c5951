//! Moving files: streaming a remote file out ([`SshSession::read_file`], the downloads) with
//! backpressure and truncation detection, and writing one in ([`SshSession::upload_from`]).
//!
//! A file is read with `cat` after a `stat` of its size; it counts as complete only when the
//! byte count matches, `cat` exited 0 and the channel closed cleanly. A dropped connection is
//! therefore always an error, never a short file.
//!
//! Owns: transfers and the reading of `stat`'s answer. Imports the transport's session, exec
//! and error, [`crate::esc::remote`] and the leaves.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::io::StreamReader;

use crate::esc::remote::{CommandLine, RemotePath};
use crate::esc::ssh::error::SshError;
use crate::esc::ssh::exec::{CommandLimits, Event, ExecChannel, Wait};
use crate::esc::ssh::session::SshSession;
use crate::esc::text::{OutputText, clip, quote_output};
use crate::esc::vocab::Sha256Digest;

/// The most stderr a transfer's command keeps, to quote it when it fails.
const TRANSFER_STDERR: usize = 4096;

/// A completed download ([`SshSession::download_hashed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The byte count (equal to the file's size).
    pub bytes: u64,
    /// The SHA-256 of the bytes received.
    pub sha256: Sha256Digest,
}

/// Reads `stat -c %s FILE`'s answer: exactly one line, one decimal number.
fn parse_stat_size(raw: &[u8]) -> Option<u64> {
    let text = OutputText::new(raw);
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(line), None) if line.bytes().all(|b| b.is_ascii_digit()) => line.parse().ok(),
        _ => None,
    }
}

impl SshSession {
    /// The size of a remote file (`stat -c %s`).
    pub async fn file_size(&self, path: &RemotePath) -> Result<u64, SshError> {
        let out = self
            .run_ok(
                &CommandLine::stat_size(path),
                &CommandLimits::with_timeout(Duration::from_secs(30)),
            )
            .await?;
        parse_stat_size(&out.stdout).ok_or_else(|| SshError::UnexpectedOutput {
            node: self.node().clone(),
            command: "stat -c %s",
            expected: "one decimal number",
            output: quote_output(&out.stdout),
        })
    }

    /// Opens a remote file for streaming. The returned reader yields the file's bytes and, if
    /// the transfer is cut short in any way (connection dropped, `cat` failed or killed, size
    /// changed, stalled), an error instead of a clean end of file.
    ///
    /// Backpressure: data is pulled from the connection only as fast as the reader is read.
    pub async fn read_file(&self, path: &RemotePath) -> Result<RemoteFileReader, SshError> {
        let size = self.file_size(path).await?;
        let chunks = self.chunks(path, size).await?;
        let stream = chunks.map(|r| r.map_err(io::Error::other)).boxed();
        Ok(RemoteFileReader {
            inner: StreamReader::new(stream),
            size,
        })
    }

    /// Streams a remote file into `sink` and returns the byte count; the count is only returned
    /// when the whole file arrived (see [`SshSession::read_file`]). `sink` is flushed, not shut
    /// down.
    pub async fn download_to<W: AsyncWrite + Unpin>(
        &self,
        path: &RemotePath,
        sink: &mut W,
    ) -> Result<u64, SshError> {
        self.download_inner(path, sink, None).await
    }

    /// [`SshSession::download_to`] that also computes the SHA-256 of the bytes as they pass, to
    /// compare with the node's own `sha256sum` ([`crate::esc::EscNode::sha256`]) or an
    /// artifact's recorded digest.
    pub async fn download_hashed<W: AsyncWrite + Unpin>(
        &self,
        path: &RemotePath,
        sink: &mut W,
    ) -> Result<Downloaded, SshError> {
        let mut hasher = Sha256::new();
        let bytes = self.download_inner(path, sink, Some(&mut hasher)).await?;
        Ok(Downloaded {
            bytes,
            sha256: Sha256Digest(hasher.finalize().into()),
        })
    }

    async fn download_inner<W: AsyncWrite + Unpin>(
        &self,
        path: &RemotePath,
        sink: &mut W,
        mut hasher: Option<&mut Sha256>,
    ) -> Result<u64, SshError> {
        let size = self.file_size(path).await?;
        let mut chunks = self.chunks(path, size).await?;
        let mut total = 0u64;
        let host = &self.target().host;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            sink.write_all(&chunk)
                .await
                .map_err(|source| SshError::LocalIo {
                    context: format!("writing {path} from {host}"),
                    source,
                })?;
            total += chunk.len() as u64;
        }
        sink.flush().await.map_err(|source| SshError::LocalIo {
            context: format!("flushing {path} from {host}"),
            source,
        })?;
        Ok(total)
    }

    async fn chunks(
        &self,
        path: &RemotePath,
        expected: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, SshError>>, SshError> {
        let idle = self.options().stream_idle_timeout;
        let channel = self
            .start(&CommandLine::cat(path), TRANSFER_STDERR, idle)
            .await?;
        let state = ChunkState {
            channel: Some(channel),
            expected,
            received: 0,
            idle,
            path: path.to_string(),
        };
        Ok(futures::stream::unfold(state, ChunkState::next).boxed())
    }

    /// Writes `source` to a remote file (mode 0600), with backpressure, and returns the byte
    /// count. The data goes to `PATH.partial` first and is renamed to `PATH` only after `cat`
    /// exited 0 and the remote size equals the bytes sent; on failure the partial file is
    /// removed (best effort) and `PATH` is untouched.
    pub async fn upload_from<R: AsyncRead + Unpin>(
        &self,
        source: &mut R,
        path: &RemotePath,
    ) -> Result<u64, SshError> {
        let partial = path.with_suffix(".partial")?;
        let result = match self.upload_partial(source, &partial).await {
            Ok(sent) => match self.file_size(&partial).await {
                Ok(size) if size == sent => self
                    .run_ok(
                        &CommandLine::rename(&partial, path),
                        &CommandLimits::with_timeout(Duration::from_secs(30)),
                    )
                    .await
                    .map(|_| sent),
                Ok(size) => Err(SshError::SizeMismatch {
                    node: self.node().clone(),
                    path: partial.to_string(),
                    expected: sent,
                    actual: size,
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if result.is_err() && !self.is_closed() {
            let _ = self
                .run(
                    &CommandLine::remove(&partial),
                    &CommandLimits::with_timeout(Duration::from_secs(10)),
                )
                .await;
        }
        result
    }

    async fn upload_partial<R: AsyncRead + Unpin>(
        &self,
        source: &mut R,
        partial: &RemotePath,
    ) -> Result<u64, SshError> {
        let idle = self.options().stream_idle_timeout;
        let cmd = CommandLine::write_stdin_to(partial);
        let mut channel = self.start(&cmd, TRANSFER_STDERR, idle).await?;
        let mut sent = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(256 << 10);
            let n = source
                .read_buf(&mut buf)
                .await
                .map_err(|source| SshError::LocalIo {
                    context: format!("reading the data for {partial}"),
                    source,
                })?;
            if n == 0 {
                break;
            }
            channel.send(buf.freeze(), idle).await?;
            sent += n as u64;
        }
        channel.send_eof().await?;
        // `cat` prints nothing; whatever it might print is read and dropped with the rest.
        let out = channel
            .collect(
                Instant::now() + idle,
                idle,
                CommandLimits::default().max_stdout,
            )
            .await?;
        if out.exit_status.success() {
            Ok(sent)
        } else {
            Err(SshError::RemoteFailed {
                node: self.node().clone(),
                command: clip(&self.render(&cmd), 200),
                exit: out.exit_status.to_string(),
                stderr: out.stderr_quoted(),
            })
        }
    }
}

/// The state of a file being streamed out with `cat`.
struct ChunkState {
    /// `None` once the verdict is given.
    channel: Option<ExecChannel>,
    expected: u64,
    received: u64,
    idle: Duration,
    path: String,
}

impl ChunkState {
    /// The next chunk, or the verdict on the transfer when the channel ends.
    async fn next(mut self) -> Option<(Result<Bytes, SshError>, Self)> {
        let mut channel = self.channel.take()?;
        loop {
            let err = match channel.next(Wait::Idle(self.idle)).await {
                Event::Stdout(data) => {
                    self.received += data.len() as u64;
                    if self.received <= self.expected {
                        self.channel = Some(channel);
                        return Some((Ok(data), self));
                    }
                    channel.abort().await;
                    self.size_mismatch(&channel)
                }
                Event::Exited => continue,
                Event::Refused => {
                    channel.abort().await;
                    channel.refused()
                }
                Event::TimedOut => {
                    channel.abort().await;
                    channel.stalled(self.idle)
                }
                Event::Closed => self.verdict(&channel)?,
            };
            // The verdict is given: the stream ends after this error.
            return Some((Err(err), self));
        }
    }

    fn size_mismatch(&self, channel: &ExecChannel) -> SshError {
        SshError::SizeMismatch {
            node: channel.node().clone(),
            path: self.path.clone(),
            expected: self.expected,
            actual: self.received,
        }
    }

    /// `None` when the transfer is complete; the error otherwise.
    fn verdict(&self, channel: &ExecChannel) -> Option<SshError> {
        match channel.exit() {
            None => Some(channel.lost(format!(
                "the transfer of {} ended without an exit status ({} of {} bytes received)",
                self.path, self.received, self.expected
            ))),
            Some(e) if !e.success() => Some(channel.failed(e)),
            Some(_) if self.received != self.expected => Some(self.size_mismatch(channel)),
            Some(_) => None,
        }
    }
}

/// A remote file being streamed ([`SshSession::read_file`]): an [`AsyncRead`] that ends with an
/// error, never a clean EOF, when the transfer is incomplete. The error's inner error (via
/// [`io::Error::get_ref`]) is the [`SshError`].
pub struct RemoteFileReader {
    inner: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
    size: u64,
}

impl RemoteFileReader {
    /// The file's size, as `stat` reported it before the transfer.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl fmt::Debug for RemoteFileReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFileReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for RemoteFileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncBufRead for RemoteFileReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stat_answers() {
        assert_eq!(parse_stat_size(b"1073741824\n"), Some(1 << 30));
        assert_eq!(parse_stat_size(b"\x1b[0m12\0\r\n"), Some(12));
        assert_eq!(parse_stat_size(b"12\n13\n"), None);
        assert_eq!(parse_stat_size(b"-1\n"), None);
        assert_eq!(parse_stat_size(b"+1\n"), None);
        assert_eq!(parse_stat_size(b"1\x002\n"), None);
        assert_eq!(parse_stat_size(b""), None);
        assert_eq!(parse_stat_size(b"99999999999999999999999\n"), None);
    }

    proptest! {
        #[test]
        fn stat_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_stat_size(&raw);
        }

        #[test]
        fn stat_round_trips(n in any::<u64>()) {
            prop_assert_eq!(parse_stat_size(format!("{n}\n").as_bytes()), Some(n));
        }
    }
}
