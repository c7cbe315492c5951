//! The S3 sink: the archive streamed into one object by multipart upload ([`S3Upload`], an
//! [`AsyncWrite`]), with its SHA-256 in the object's metadata (`x-amz-meta-sha256`) and in a
//! `KEY.sha256` sidecar object; and the functions the controller calls on a stored artifact
//! with credentials it holds in memory ([`verify_stored`], [`delete_stored`]).
//!
//! Memory is bounded: one part being filled plus at most `concurrency` parts in flight, about
//! `part_size × (concurrency + 1)` bytes, whatever the artifact's size. A part is uploaded from
//! memory, so a retried request re-sends the same bytes.
//!
//! Checksums: S3-compatible stores refuse mixed settings (see `tests/s3_servers.rs`), so the two
//! modes are kept apart end to end. `WhenSupported`: the upload is created with CRC32, every
//! part carries its CRC32, and completing repeats each part's CRC32. `WhenRequired`: no
//! algorithm anywhere, and completing repeats none.
//!
//! The artifact's SHA-256 is known only after its last byte, while S3 fixes an object's metadata
//! when the upload is created; so after completion the object is copied onto itself with the
//! metadata replaced (a metadata-only copy on the stores that optimise it; a multipart copy, in
//! ranges, for objects over CopyObject's 5 GiB limit).
//!
//! Any failure aborts the multipart upload (after every part in flight has ended, so none lands
//! after the abort); a failure after completion deletes the object and its sidecar, so no
//! unverified artifact is ever left under the final key.
//!
//! Owns: [`S3Credentials`], [`S3Access`], [`S3Upload`], the classification of S3 errors into
//! stable reasons. Imports [`crate::mover::request`] and the sink's shared words.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective,
    ServerSideEncryption as SdkSse, StorageClass,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::{JoinError, JoinSet};
use zeroize::Zeroizing;

use crate::api::{ChecksumMode, SseAlgorithm};
use crate::esc::Sha256Digest;
use crate::mover::archive::MAX_HEAD_BYTES;
use crate::mover::request::S3Sink;
use crate::mover::sink::{
    ARTIFACT_NOT_FOUND, ArtifactHead, SinkError, StoredObject, parse_head, parse_sidecar,
    read_secret_file, read_secret_text, sidecar_content,
};

/// The object metadata key of the artifact's SHA-256 (`x-amz-meta-sha256`).
pub const METADATA_SHA256: &str = "sha256";

/// The largest object CopyObject copies; larger ones are copied in ranges.
pub const COPY_OBJECT_LIMIT: u64 = 5 << 30;
/// The range of one part of a multipart copy.
pub const COPY_PART: u64 = 1 << 30;
/// The largest sidecar read back (a real one is about 80 bytes).
const MAX_SIDECAR: i64 = 4096;

/// S3 credentials. Holds secrets: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub enum S3Credentials {
    /// An access key (and optional session token), from a Secret.
    Static {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
        session_token: Option<Zeroizing<String>>,
    },
    /// Whatever the process's environment provides: `AWS_*` variables, web identity (IRSA),
    /// the instance profile.
    Ambient,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish_non_exhaustive(),
            S3Credentials::Ambient => f.write_str("Ambient"),
        }
    }
}

impl S3Credentials {
    /// An access key held in memory (the controller reads it from a Secret).
    pub fn from_keys(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        S3Credentials::Static {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: session_token.map(Zeroizing::new),
        }
    }

    /// The files `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and optional `AWS_SESSION_TOKEN`)
    /// of a Secret mounted at `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, SinkError> {
        let missing = |key: &str| {
            SinkError::new(
                "CredentialsMissing",
                format!(
                    "the S3 credentials Secret has no key {key} (looked in {}); add it or unset credentialsSecretRef to use the ambient credentials",
                    dir.display()
                ),
            )
        };
        let id = read_secret_text(dir, "AWS_ACCESS_KEY_ID")?
            .ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
        let secret = read_secret_text(dir, "AWS_SECRET_ACCESS_KEY")?
            .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
        let token = read_secret_text(dir, "AWS_SESSION_TOKEN")?;
        if id.is_empty() || secret.is_empty() {
            return Err(SinkError::new(
                "CredentialsMissing",
                "the S3 credentials Secret has an empty AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY",
            ));
        }
        Ok(S3Credentials::Static {
            access_key_id: id.to_string(),
            secret_access_key: secret,
            session_token: token.filter(|t| !t.is_empty()),
        })
    }
}

/// Everything needed to reach the store besides the sink's spec.
#[derive(Clone, Debug)]
pub struct S3Access {
    pub credentials: S3Credentials,
    /// A PEM CA bundle that signed the endpoint's certificate (only these CAs are trusted).
    pub ca_bundle_pem: Option<Vec<u8>>,
}

impl S3Access {
    /// The credentials and CA bundle the spec names as mounted files (the mover's case).
    pub fn from_files(spec: &S3Sink) -> Result<Self, SinkError> {
        let credentials = match &spec.credentials_dir {
            Some(dir) => S3Credentials::from_dir(dir)?,
            None => S3Credentials::Ambient,
        };
        let ca_bundle_pem = match &spec.ca_bundle_file {
            Some(file) => Some(
                read_secret_file(
                    file.parent().unwrap_or(Path::new("/")),
                    &file.file_name().unwrap_or_default().to_string_lossy(),
                )?
                .ok_or_else(|| {
                    SinkError::new(
                        "CABundleMissing",
                        format!("the CA bundle file {} does not exist", file.display()),
                    )
                })?
                .to_vec(),
            ),
            None => None,
        };
        Ok(S3Access {
            credentials,
            ca_bundle_pem,
        })
    }
}

/// The region to sign for: the spec's, else the environment's, else `us-east-1` (what
/// S3-compatible stores accept).
fn region(spec: &S3Sink) -> String {
    spec.region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// An S3 client for `spec`.
pub async fn client(spec: &S3Sink, access: &S3Access) -> Result<Client, SinkError> {
    let mut builder = match &access.credentials {
        S3Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                access_key_id.clone(),
                secret_access_key.to_string(),
                session_token.as_ref().map(|t| t.to_string()),
                None,
                "esc-operator",
            )),
        S3Credentials::Ambient => {
            let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
            aws_sdk_s3::config::Builder::from(&sdk)
        }
    };
    builder = builder
        .region(Region::new(region(spec)))
        .force_path_style(spec.force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(endpoint) = &spec.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder = match spec.checksum_mode {
        ChecksumMode::WhenSupported => builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
            .response_checksum_validation(ResponseChecksumValidation::WhenSupported),
        ChecksumMode::WhenRequired => builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired),
    };
    if let Some(pem) = &access.ca_bundle_pem {
        use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
        let context = TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_pem_certificate(pem.clone()))
            .build()
            .map_err(|e| {
                SinkError::new(
                    "CABundleInvalid",
                    format!("the S3 CA bundle is not usable PEM: {e}"),
                )
            })?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(context)
            .build_https();
        builder = builder.http_client(http);
    }
    Ok(Client::from_conf(builder.build()))
}

/// Turns an SDK error into a reason and a message that says what to do.
fn classify<E>(action: &str, spec: &S3Sink, err: SdkError<E, HttpResponse>) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let where_ = spec
        .endpoint
        .as_deref()
        .map(|e| format!(" at {e}"))
        .unwrap_or_default();
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let said = se.err().message().unwrap_or("");
            let (reason, hint) = match code {
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "AuthorizationHeaderMalformed" => (
                    "S3AccessDenied",
                    "check the S3 credentials Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and that they may write to the bucket",
                ),
                "NoSuchBucket" => (
                    "NoSuchBucket",
                    "create the bucket or correct the target's bucket name",
                ),
                "NoSuchKey" | "NotFound" => ("NoSuchKey", "the object does not exist"),
                "NoSuchUpload" => (
                    "S3UploadLost",
                    "the store dropped the multipart upload (a lifecycle rule or another client aborted it); retry the backup",
                ),
                "InvalidStorageClass" => (
                    "S3InvalidStorageClass",
                    "use a storage class this store supports",
                ),
                "SlowDown" | "ServiceUnavailable" | "InternalError" => (
                    "S3Unavailable",
                    "the store is overloaded or failing; retry later",
                ),
                _ if status == 403 => (
                    "S3AccessDenied",
                    "check the S3 credentials Secret and the bucket's policy",
                ),
                _ if status == 404 => ("NoSuchKey", "the object does not exist"),
                _ => ("S3RequestFailed", "see the store's message"),
            };
            let code = if code.is_empty() {
                "no error code"
            } else {
                code
            };
            SinkError::new(
                reason,
                format!("{action}{where_}: the store answered {status} {code}: {said}; {hint}"),
            )
        }
        SdkError::TimeoutError(_) => SinkError::new(
            "S3Timeout",
            format!(
                "{action}{where_}: timed out; check that the endpoint is reachable from the mover"
            ),
        ),
        SdkError::DispatchFailure(d) => {
            let detail = DisplayErrorContext(&err).to_string();
            // rustls says why it refused the endpoint's certificate in the error's text only.
            if detail.contains("invalid peer certificate") {
                return SinkError::new(
                    "S3CertificateNotTrusted",
                    format!(
                        "{action}{where_}: the endpoint's TLS certificate was refused ({detail}); \
                         if the store uses a private CA, give its certificate in the CA bundle \
                         Secret (spec.target.s3.caBundleSecretRef)"
                    ),
                );
            }
            let reason = if d.is_timeout() {
                "S3Timeout"
            } else {
                "S3Unreachable"
            };
            SinkError::new(
                reason,
                format!(
                    "{action}{where_}: the request could not be sent ({detail}); check the endpoint, the network and the CA bundle"
                ),
            )
        }
        SdkError::ResponseError(_) => SinkError::new(
            "S3BadResponse",
            format!(
                "{action}{where_}: the store's answer was not understood ({}); is the endpoint an S3 store?",
                DisplayErrorContext(&err)
            ),
        ),
        _ => SinkError::new(
            "S3RequestFailed",
            format!("{action}{where_}: {}", DisplayErrorContext(&err)),
        ),
    }
}

fn sse_of(spec: &S3Sink) -> (Option<SdkSse>, Option<String>) {
    match &spec.sse {
        Some(sse) => (
            Some(match sse.algorithm {
                SseAlgorithm::Aes256 => SdkSse::Aes256,
                SseAlgorithm::AwsKms => SdkSse::AwsKms,
            }),
            sse.kms_key_id.clone(),
        ),
        None => (None, None),
    }
}

fn storage_class_of(spec: &S3Sink) -> Option<StorageClass> {
    spec.storage_class.as_deref().map(StorageClass::from)
}

/// `BUCKET/KEY` for `x-amz-copy-source`, percent-encoded except `/`.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    for b in format!("{bucket}/{key}").bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type PartResult = Result<CompletedPart, SinkError>;

/// A multipart upload in progress, written as an [`AsyncWrite`]: [`S3Upload::start`], write the
/// artifact, then [`S3Upload::finish`] or [`S3Upload::abort`] (one of them must be called: a
/// dropped upload stays in progress on the store).
pub struct S3Upload {
    client: Client,
    spec: S3Sink,
    upload_id: String,
    crc32: bool,
    part_size: usize,
    concurrency: usize,
    /// The part being filled.
    buf: BytesMut,
    next_part: i32,
    in_flight: JoinSet<PartResult>,
    done: Vec<CompletedPart>,
    /// Bytes accepted so far.
    written: u64,
    /// The first failure; every later write fails with it.
    failure: Option<SinkError>,
}

impl fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Upload")
            .field("uri", &self.spec.uri())
            .field("upload_id", &self.upload_id)
            .field("parts", &self.next_part)
            .finish_non_exhaustive()
    }
}

impl S3Upload {
    /// Creates the multipart upload.
    pub async fn start(client: Client, spec: &S3Sink) -> Result<Self, SinkError> {
        let crc32 = spec.checksum_mode == ChecksumMode::WhenSupported;
        let (sse, kms) = sse_of(spec);
        let out = client
            .create_multipart_upload()
            .bucket(&spec.bucket)
            .key(&spec.key)
            .content_type("application/x-tar")
            .set_checksum_algorithm(crc32.then_some(ChecksumAlgorithm::Crc32))
            .set_storage_class(storage_class_of(spec))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .send()
            .await
            .map_err(|e| classify(&format!("starting the upload of {}", spec.uri()), spec, e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| {
                SinkError::new(
                    "S3BadResponse",
                    "the store started a multipart upload without an upload id",
                )
            })?
            .to_owned();
        tracing::info!(uri = %spec.uri(), %upload_id, part_size = spec.part_size_bytes, concurrency = spec.concurrency, "multipart upload started");
        let part_size = spec.part_size_bytes as usize;
        Ok(S3Upload {
            client,
            spec: spec.clone(),
            upload_id,
            crc32,
            part_size,
            concurrency: spec.concurrency as usize,
            buf: BytesMut::with_capacity(part_size),
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            written: 0,
            failure: None,
        })
    }

    /// The upload's id, as the store's multipart listing shows it.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// The first failure of a part, if one failed: the precise reason behind a write error.
    pub fn failure(&self) -> Option<&SinkError> {
        self.failure.as_ref()
    }

    fn dispatch(&mut self) {
        let body: Bytes =
            std::mem::replace(&mut self.buf, BytesMut::with_capacity(self.part_size)).freeze();
        let number = self.next_part;
        self.next_part += 1;
        let (client, spec, id, crc32) = (
            self.client.clone(),
            self.spec.clone(),
            self.upload_id.clone(),
            self.crc32,
        );
        self.in_flight.spawn(async move {
            let len = body.len();
            let request = client
                .upload_part()
                .bucket(&spec.bucket)
                .key(&spec.key)
                .upload_id(&id)
                .part_number(number)
                .content_length(len as i64)
                .set_checksum_algorithm(crc32.then_some(ChecksumAlgorithm::Crc32))
                .body(ByteStream::from(body));
            let sent = if unsigned_payload(&spec) {
                request.customize().disable_payload_signing().send().await
            } else {
                request.send().await
            };
            let out = sent.map_err(|e| {
                    classify(
                        &format!("uploading part {number} of {}", spec.uri()),
                        &spec,
                        e,
                    )
                })?;
            let mut part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned));
            if crc32 {
                let crc = out.checksum_crc32().ok_or_else(|| {
                    SinkError::new(
                        "S3ChecksumMissing",
                        format!(
                            "the store returned no CRC32 for part {number} of {}; set checksumMode: WhenRequired for this store",
                            spec.uri()
                        ),
                    )
                })?;
                part = part.checksum_crc32(crc);
            }
            tracing::debug!(part = number, bytes = len, "part uploaded");
            Ok(part.build())
        });
    }

    /// Records a finished part; a failure is kept and returned.
    fn record(&mut self, joined: Result<PartResult, JoinError>) -> Result<(), SinkError> {
        let result = joined.unwrap_or_else(|e| {
            Err(SinkError::new(
                "S3PartFailed",
                format!("a part upload ended abnormally: {e}"),
            ))
        });
        match result {
            Ok(part) => {
                self.done.push(part);
                Ok(())
            }
            Err(e) => {
                self.failure.get_or_insert(e.clone());
                Err(e)
            }
        }
    }

    fn io_error(e: &SinkError) -> io::Error {
        io::Error::other(e.clone())
    }

    /// Uploads the last part, waits for every part, completes the upload, writes the digest
    /// into the object's metadata and the sidecar. Aborts (or, once completed, deletes) on any
    /// failure. The stored artifact is then ready for [`verify_stored`].
    pub async fn finish(mut self, sha256: &Sha256Digest) -> Result<(), SinkError> {
        let completed = match self.complete().await {
            Ok(size) => size,
            Err(e) => {
                let _ = self.abort_inner().await;
                return Err(e);
            }
        };
        let after = async {
            set_digest_metadata(
                &self.client,
                &self.spec,
                completed,
                sha256,
                COPY_OBJECT_LIMIT,
                COPY_PART,
            )
            .await?;
            put_sidecar(&self.client, &self.spec, sha256).await
        };
        if let Err(e) = after.await {
            // The object exists but is not what a verified artifact is: leave nothing.
            let _ = delete_with(&self.client, &self.spec).await;
            return Err(e);
        }
        Ok(())
    }

    /// Everything up to CompleteMultipartUpload; the byte count.
    async fn complete(&mut self) -> Result<u64, SinkError> {
        if let Some(e) = &self.failure {
            return Err(e.clone());
        }
        if !self.buf.is_empty() || self.next_part == 1 {
            self.dispatch();
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.record(joined)?;
        }
        self.done.sort_by_key(|p| p.part_number());
        let parts = std::mem::take(&mut self.done);
        let uri = self.spec.uri();
        self.client
            .complete_multipart_upload()
            .bucket(&self.spec.bucket)
            .key(&self.spec.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(&format!("completing the upload of {uri}"), &self.spec, e))?;
        tracing::info!(%uri, bytes = self.written, "multipart upload completed");
        Ok(self.written)
    }

    /// Stops every part in flight, then aborts the multipart upload. Returns the abort's own
    /// failure, if any (the upload then stays until a lifecycle rule removes it).
    pub async fn abort(mut self) -> Option<SinkError> {
        self.abort_inner().await
    }

    async fn abort_inner(&mut self) -> Option<SinkError> {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let uri = self.spec.uri();
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.spec.bucket)
            .key(&self.spec.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        match result {
            Ok(_) => {
                tracing::info!(%uri, upload_id = %self.upload_id, "multipart upload aborted");
                None
            }
            Err(e) => {
                let e = classify(
                    &format!(
                        "aborting the multipart upload {} of {uri} (it stays until a lifecycle rule AbortIncompleteMultipartUpload removes it)",
                        self.upload_id
                    ),
                    &self.spec,
                    e,
                );
                tracing::warn!(error = %e, "abort failed");
                Some(e)
            }
        }
    }
}

impl AsyncWrite for S3Upload {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = &this.failure {
            return Poll::Ready(Err(Self::io_error(e)));
        }
        // A part that failed meanwhile stops the stream now, not at the end.
        while let Some(joined) = this.in_flight.try_join_next() {
            this.record(joined).map_err(|e| Self::io_error(&e))?;
        }
        if this.buf.len() >= this.part_size {
            // Backpressure: the part waits for a free slot, and so does the writer.
            while this.in_flight.len() >= this.concurrency {
                match ready!(this.in_flight.poll_join_next(cx)) {
                    Some(joined) => this.record(joined).map_err(|e| Self::io_error(&e))?,
                    None => break,
                }
            }
            this.dispatch();
        }
        let n = data.len().min(this.part_size - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    /// A partial part cannot be sent before it is full (S3's minimum part size): nothing to do.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Completing needs the digest: see [`S3Upload::finish`].
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Replaces the object's metadata with its digest (and keeps its storage class, encryption and
/// content type, which a copy would otherwise reset). Objects up to `copy_limit` bytes
/// ([`COPY_OBJECT_LIMIT`]) are copied onto themselves at once; larger ones by a multipart copy
/// in ranges of `copy_part` bytes ([`COPY_PART`]).
pub async fn set_digest_metadata(
    client: &Client,
    spec: &S3Sink,
    size: u64,
    sha256: &Sha256Digest,
    copy_limit: u64,
    copy_part: u64,
) -> Result<(), SinkError> {
    let uri = spec.uri();
    let (sse, kms) = sse_of(spec);
    let metadata = HashMap::from([(METADATA_SHA256.to_owned(), sha256.to_string())]);
    let source = copy_source(&spec.bucket, &spec.key);
    let action = format!("recording the SHA-256 in the metadata of {uri}");
    if size <= copy_limit {
        client
            .copy_object()
            .bucket(&spec.bucket)
            .key(&spec.key)
            .copy_source(&source)
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata))
            .content_type("application/x-tar")
            .set_storage_class(storage_class_of(spec))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .send()
            .await
            .map_err(|e| classify(&action, spec, e))?;
        return Ok(());
    }
    let out = client
        .create_multipart_upload()
        .bucket(&spec.bucket)
        .key(&spec.key)
        .content_type("application/x-tar")
        .set_metadata(Some(metadata))
        .set_storage_class(storage_class_of(spec))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms)
        .send()
        .await
        .map_err(|e| classify(&action, spec, e))?;
    let id = out.upload_id().unwrap_or_default().to_owned();
    let copied = async {
        let mut parts = Vec::new();
        let mut start = 0u64;
        let mut number = 1;
        while start < size {
            let end = (start + copy_part).min(size) - 1;
            let out = client
                .upload_part_copy()
                .bucket(&spec.bucket)
                .key(&spec.key)
                .upload_id(&id)
                .part_number(number)
                .copy_source(&source)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| classify(&action, spec, e))?;
            let etag = out
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned);
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
            start = end + 1;
            number += 1;
        }
        client
            .complete_multipart_upload()
            .bucket(&spec.bucket)
            .key(&spec.key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify(&action, spec, e))?;
        Ok(())
    };
    let result = copied.await;
    if result.is_err() {
        let _ = client
            .abort_multipart_upload()
            .bucket(&spec.bucket)
            .key(&spec.key)
            .upload_id(&id)
            .send()
            .await;
    }
    result
}

async fn put_sidecar(
    client: &Client,
    spec: &S3Sink,
    sha256: &Sha256Digest,
) -> Result<(), SinkError> {
    let key = spec.sidecar_key();
    let (sse, kms) = sse_of(spec);
    client
        .put_object()
        .bucket(&spec.bucket)
        .key(&key)
        .content_type("text/plain")
        .set_storage_class(storage_class_of(spec))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms)
        .body(ByteStream::from(Bytes::from(sidecar_content(
            sha256, &spec.key,
        ))))
        .send()
        .await
        .map_err(|e| {
            classify(
                &format!("writing the sidecar s3://{}/{key}", spec.bucket),
                spec,
                e,
            )
        })?;
    Ok(())
}

/// Whether the store takes an object at the artifact's place: an empty `KEY.preflight` is
/// written and deleted again (the operator's preflight, before anything is asked of ESC).
pub async fn probe_writable(spec: &S3Sink, access: &S3Access) -> Result<(), SinkError> {
    let client = client(spec, access).await?;
    let key = format!("{}.preflight", spec.key);
    let place = format!("s3://{}/{key}", spec.bucket);
    client
        .put_object()
        .bucket(&spec.bucket)
        .key(&key)
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .map_err(|e| classify(&format!("writing {place}"), spec, e))?;
    client
        .delete_object()
        .bucket(&spec.bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| classify(&format!("deleting {place}"), spec, e))?;
    Ok(())
}

/// Reads back a stored artifact: its size (HEAD), the digest in its metadata and in its
/// sidecar, which must agree. Fails when the object or the sidecar is missing, or the two
/// digests differ.
pub async fn verify_stored(spec: &S3Sink, access: &S3Access) -> Result<StoredObject, SinkError> {
    let client = client(spec, access).await?;
    verify_with(&client, spec).await
}

pub(crate) async fn verify_with(client: &Client, spec: &S3Sink) -> Result<StoredObject, SinkError> {
    let uri = spec.uri();
    let head = client
        .head_object()
        .bucket(&spec.bucket)
        .key(&spec.key)
        .send()
        .await
        .map_err(|e| {
            let e = classify(&format!("reading {uri}"), spec, e);
            if e.reason == "NoSuchKey" {
                SinkError::new(
                    "ArtifactMissing",
                    format!("the artifact {uri} does not exist"),
                )
            } else {
                e
            }
        })?;
    let size = u64::try_from(head.content_length().unwrap_or(-1)).map_err(|_| {
        SinkError::new(
            "S3BadResponse",
            format!("the store reports no size for {uri}"),
        )
    })?;
    let in_metadata = head
        .metadata()
        .and_then(|m| m.get(METADATA_SHA256))
        .map(|v| v.parse::<Sha256Digest>());
    let in_metadata = match in_metadata {
        Some(Ok(d)) => d,
        Some(Err(_)) | None => {
            return Err(SinkError::new(
                "MetadataMissing",
                format!(
                    "{uri} has no valid x-amz-meta-{METADATA_SHA256}: it was not written completely by esc-operator"
                ),
            ));
        }
    };
    let sidecar_key = spec.sidecar_key();
    let sidecar_uri = format!("s3://{}/{sidecar_key}", spec.bucket);
    let out = client
        .get_object()
        .bucket(&spec.bucket)
        .key(&sidecar_key)
        .send()
        .await
        .map_err(|e| {
            let e = classify(&format!("reading {sidecar_uri}"), spec, e);
            if e.reason == "NoSuchKey" {
                SinkError::new(
                    "SidecarMissing",
                    format!("the sidecar {sidecar_uri} does not exist"),
                )
            } else {
                e
            }
        })?;
    if out.content_length().unwrap_or(0) > MAX_SIDECAR {
        return Err(SinkError::new(
            "SidecarInvalid",
            format!("{sidecar_uri} is larger than a sidecar"),
        ));
    }
    let body = out.body.collect().await.map_err(|e| {
        SinkError::new(
            "S3Unreachable",
            format!("reading {sidecar_uri}: {}", DisplayErrorContext(&e)),
        )
    })?;
    let in_sidecar = parse_sidecar(&body.into_bytes()).ok_or_else(|| {
        SinkError::new(
            "SidecarInvalid",
            format!("{sidecar_uri} does not hold a sha256sum line"),
        )
    })?;
    if in_sidecar != in_metadata {
        return Err(SinkError::new(
            "ChecksumMismatch",
            format!(
                "{uri}: the SHA-256 in its metadata ({in_metadata}) differs from its sidecar's ({in_sidecar})"
            ),
        ));
    }
    Ok(StoredObject {
        size,
        sha256: in_metadata,
    })
}

/// The artifact's manifest and stored size and digest (see [`crate::mover::sink::read_head`]):
/// HEAD, metadata and sidecar first, then one ranged GET of the archive's first
/// [`MAX_HEAD_BYTES`].
pub async fn read_head(spec: &S3Sink, access: &S3Access) -> Result<ArtifactHead, SinkError> {
    let client = client(spec, access).await?;
    let stored = verify_with(&client, spec).await.map_err(|mut e| {
        if e.reason == "ArtifactMissing" {
            e.reason = ARTIFACT_NOT_FOUND;
        }
        e
    })?;
    if stored.size == 0 {
        // A ranged GET of an empty object is refused (416): nothing to read anyway.
        return Err(SinkError::new(
            "ArtifactMalformed",
            format!(
                "{} is empty: not an esc-operator backup artifact",
                spec.uri()
            ),
        ));
    }
    let (_, body) = get(&client, spec, Some(MAX_HEAD_BYTES.min(stored.size))).await?;
    let manifest = parse_head(body, &spec.uri()).await?;
    Ok(ArtifactHead { manifest, stored })
}

/// GetObject of the artifact, the first `first` bytes only when given (a ranged GET): the
/// object's (or range's) length and its body as a stream. A missing object is
/// [`ARTIFACT_NOT_FOUND`]; a failure while the body streams is an `io::Error` whose inner error
/// is the [`SinkError`].
pub(crate) async fn get(
    client: &Client,
    spec: &S3Sink,
    first: Option<u64>,
) -> Result<(u64, impl AsyncRead + Send + Unpin + use<>), SinkError> {
    let uri = spec.uri();
    let mut request = client.get_object().bucket(&spec.bucket).key(&spec.key);
    if let Some(n) = first {
        request = request.range(format!("bytes=0-{}", n.saturating_sub(1)));
    }
    let out = request.send().await.map_err(|e| {
        let e = classify(&format!("reading {uri}"), spec, e);
        if e.reason == "NoSuchKey" {
            SinkError::new(
                ARTIFACT_NOT_FOUND,
                format!("the artifact {uri} does not exist; check the backup's location"),
            )
        } else {
            e
        }
    })?;
    let size = u64::try_from(out.content_length().unwrap_or(-1)).map_err(|_| {
        SinkError::new(
            "S3BadResponse",
            format!("the store reports no size for {uri}"),
        )
    })?;
    let body = BodyReader {
        inner: out.body.into_async_read(),
        uri,
    };
    Ok((size, body))
}

/// An object's body, its read errors told as the store's (`S3Unreachable`: the connection
/// broke or stalled mid-body).
struct BodyReader<R> {
    inner: R,
    uri: String,
}

impl<R: AsyncRead + Unpin> AsyncRead for BodyReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_read(cx, buf)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io::Error::new(
                e.kind(),
                SinkError::new(
                    "S3Unreachable",
                    format!("reading {}: {e}; check the store and the network", this.uri),
                ),
            ))),
        }
    }
}

/// Whether a part goes with `UNSIGNED-PAYLOAD` instead of its SHA-256 in the signature: over
/// HTTPS (AWS's default endpoint, or an `https://` one), where TLS already protects the bytes
/// in transit, as awscli does. Signing costs one more SHA-256 pass over every byte in the
/// mover. Over plain HTTP the signature is the only protection against a changed body, so it
/// stays.
fn unsigned_payload(spec: &S3Sink) -> bool {
    spec.endpoint.as_deref().is_none_or(|e| {
        e.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
    })
}

/// Aborts the incomplete multipart uploads a mover that could not clean up after itself left
/// under the artifact's key (killed: OOM, node lost, SIGKILL after its grace period) and
/// returns how many it aborted. Only uploads of exactly this key, initiated at or after
/// `cutoff_unix_secs`, are touched: never a completed object, never another key.
pub async fn abort_incomplete_uploads(
    spec: &S3Sink,
    access: &S3Access,
    cutoff_unix_secs: i64,
) -> Result<u32, SinkError> {
    let client = client(spec, access).await?;
    let place = format!("the incomplete uploads of {}", spec.uri());
    let mut ours = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let listed = client
            .list_multipart_uploads()
            .bucket(&spec.bucket)
            .prefix(&spec.key)
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .send()
            .await
            .map_err(|e| classify(&format!("listing {place}"), spec, e));
        let page = match listed {
            Ok(page) => page,
            // No bucket, no upload in it: nothing was left (the run already failed for that).
            Err(e) if e.reason == "NoSuchBucket" => return Ok(0),
            Err(e) => return Err(e),
        };
        for upload in page.uploads() {
            let initiated = upload.initiated().map(|t| t.secs());
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id())
                && is_leftover_upload(key, initiated, &spec.key, cutoff_unix_secs)
            {
                ours.push(id.to_owned());
            }
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        id_marker = page.next_upload_id_marker().map(str::to_owned);
        if key_marker.is_none() && id_marker.is_none() {
            break;
        }
    }
    for id in &ours {
        match client
            .abort_multipart_upload()
            .bucket(&spec.bucket)
            .key(&spec.key)
            .upload_id(id)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(uri = %spec.uri(), upload_id = %id, "incomplete multipart upload aborted")
            }
            // Gone meanwhile (the mover's own abort won the race): what was wanted.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("NoSuchUpload") => {}
            Err(e) => {
                return Err(classify(
                    &format!(
                        "aborting the multipart upload {id} of {} (abort it by hand: aws s3api abort-multipart-upload)",
                        spec.uri()
                    ),
                    spec,
                    e,
                ));
            }
        }
    }
    Ok(ours.len() as u32)
}

/// Whether a listed multipart upload is a leftover of this run: exactly the artifact's key (the
/// listing's prefix also matches longer keys), initiated no earlier than `cutoff`. An upload
/// without an initiation time is not touched: the store did not say it is recent.
fn is_leftover_upload(key: &str, initiated: Option<i64>, artifact_key: &str, cutoff: i64) -> bool {
    key == artifact_key && initiated.is_some_and(|t| t >= cutoff)
}

/// Deletes a stored artifact and its sidecar (a missing one is no error: S3 deletes are
/// idempotent).
pub async fn delete_stored(spec: &S3Sink, access: &S3Access) -> Result<(), SinkError> {
    let client = client(spec, access).await?;
    delete_with(&client, spec).await
}

pub(crate) async fn delete_with(client: &Client, spec: &S3Sink) -> Result<(), SinkError> {
    for key in [spec.key.clone(), spec.sidecar_key()] {
        client
            .delete_object()
            .bucket(&spec.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| classify(&format!("deleting s3://{}/{key}", spec.bucket), spec, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_signed_unless_tls_protects_them() {
        let with = |endpoint: Option<&str>| S3Sink {
            endpoint: endpoint.map(str::to_owned),
            ..serde_json::from_value(serde_json::json!({
                "bucket": "b", "key": "k", "checksumMode": "WhenSupported",
                "partSizeBytes": 5 << 20, "concurrency": 1
            }))
            .unwrap()
        };
        assert!(unsigned_payload(&with(None)), "AWS's own endpoint is HTTPS");
        assert!(unsigned_payload(&with(Some("https://minio.example:9000"))));
        assert!(unsigned_payload(&with(Some("HTTPS://minio.example"))));
        assert!(!unsigned_payload(&with(Some("http://127.0.0.1:9000"))));
        // Not recognised as HTTPS: signed (fails closed to the stronger check).
        assert!(!unsigned_payload(&with(Some("minio.example:9000"))));
        assert!(!unsigned_payload(&with(Some("https:/x"))));
    }

    #[test]
    fn only_recent_uploads_of_exactly_the_key_are_leftovers() {
        let key = "esc/ns/esc/nightly.tar";
        assert!(is_leftover_upload(key, Some(1_000), key, 1_000));
        assert!(is_leftover_upload(key, Some(2_000), key, 1_000));
        // Older than the run: not this run's.
        assert!(!is_leftover_upload(key, Some(999), key, 1_000));
        // The listing's prefix matches longer keys: another backup's artifact or sidecar.
        assert!(!is_leftover_upload(
            "esc/ns/esc/nightly.tar.sha256",
            Some(2_000),
            key,
            1_000
        ));
        assert!(!is_leftover_upload(
            "esc/ns/esc/nightly.tar2",
            Some(2_000),
            key,
            1_000
        ));
        // No initiation time: unknown, left alone.
        assert!(!is_leftover_upload(key, None, key, 1_000));
    }

    #[test]
    fn copy_sources_are_encoded() {
        assert_eq!(copy_source("b", "esc/prod/x-1.tar"), "b/esc/prod/x-1.tar");
        assert_eq!(copy_source("b", "a b+c"), "b/a%20b%2Bc");
    }

    #[test]
    fn credentials_from_a_directory_never_show_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let err = S3Credentials::from_dir(dir.path()).unwrap_err();
        assert_eq!(err.reason, "CredentialsMissing");
        assert!(err.message.contains("AWS_ACCESS_KEY_ID"), "{err}");
        std::fs::write(dir.path().join("AWS_ACCESS_KEY_ID"), "AKIDEXAMPLE\n").unwrap();
        std::fs::write(dir.path().join("AWS_SECRET_ACCESS_KEY"), "s3cr3t-value\n").unwrap();
        let creds = S3Credentials::from_dir(dir.path()).unwrap();
        let shown = format!("{creds:?}");
        assert!(
            shown.contains("AKIDEXAMPLE") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        let S3Credentials::Static {
            secret_access_key,
            session_token,
            ..
        } = creds
        else {
            panic!()
        };
        assert_eq!(secret_access_key.as_str(), "s3cr3t-value");
        assert!(session_token.is_none());
    }
}
