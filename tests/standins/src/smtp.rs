//! A real SMTP server for email tests: aiosmtpd, run by `smtp_server.py`
//! in a venv under the target directory, as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::record::WaitTimedOut;

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// No TLS offered (no STARTTLS in EHLO).
    Plain,
    /// STARTTLS offered and required before MAIL FROM (530 otherwise).
    StartTls,
    /// TLS from the first byte (SMTPS, port-465 style "wrapper mode").
    ImplicitTls,
}

impl SmtpMode {
    fn flag(self) -> &'static str {
        match self {
            SmtpMode::Plain => "plain",
            SmtpMode::StartTls => "starttls",
            SmtpMode::ImplicitTls => "tls",
        }
    }
}

/// What [`SmtpServer::start_with`] starts.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    mode: SmtpMode,
    credentials: Option<(String, String)>,
    require_auth: bool,
}

impl SmtpConfig {
    pub fn new(mode: SmtpMode) -> Self {
        SmtpConfig {
            mode,
            credentials: None,
            require_auth: false,
        }
    }

    /// Offers AUTH PLAIN and LOGIN for this user and password and refuses
    /// MAIL FROM before a successful AUTH (530). In [`SmtpMode::StartTls`]
    /// AUTH is only offered after STARTTLS; in [`SmtpMode::Plain`] it is
    /// offered in clear text.
    pub fn with_auth(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_string(), password.to_string()));
        self.require_auth = true;
        self
    }

    /// With [`Self::with_auth`]: accept mail without AUTH too.
    pub fn auth_optional(mut self) -> Self {
        self.require_auth = false;
        self
    }
}

/// Why the SMTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("setting up the aiosmtpd venv failed: {0}")]
    Venv(String),
    #[error("generating the test certificates failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the SMTP server did not start: {0}")]
    Startup(String),
}

/// One attachment of a received message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SmtpAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
}

/// A message as the server received it, parsed by Python's `email` package.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpMessage {
    /// 1-based, in order of DATA.
    pub seq: u64,
    pub received_at: SystemTime,
    /// Envelope sender (MAIL FROM) and recipients (RCPT TO).
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// Whether the session was encrypted when the message was sent, and how.
    pub tls: bool,
    pub tls_version: Option<String>,
    /// The user that authenticated, if any.
    pub auth_login: Option<String>,
    /// False when the server answered with a rejection from
    /// [`SmtpServer::reject_next`].
    pub accepted: bool,
    /// The reply to DATA.
    pub reply: String,
    /// The message as sent, byte for byte.
    pub raw: Vec<u8>,
    /// Headers in order, values decoded (RFC 2047).
    pub headers: Vec<(String, String)>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The full Content-Type header, and the MIME type alone.
    pub content_type: Option<String>,
    pub mime_type: String,
    /// The text/plain and text/html bodies, decoded, with LF line ends.
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<SmtpAttachment>,
    /// What Python's parser found wrong with the message (empty if nothing).
    pub defects: Vec<String>,
}

impl SmtpMessage {
    /// A header's first value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Deserialize)]
struct RecordFile {
    seq: u64,
    received_at: f64,
    mail_from: String,
    rcpt_tos: Vec<String>,
    tls: bool,
    tls_version: Option<String>,
    auth_login: Option<String>,
    accepted: bool,
    reply: String,
    raw_latin1: String,
    headers: Vec<(String, String)>,
    subject: Option<String>,
    from: Option<String>,
    to: Option<String>,
    content_type: Option<String>,
    mime_type: String,
    text: Option<String>,
    html: Option<String>,
    attachments: Vec<SmtpAttachment>,
    defects: Vec<String>,
}

impl From<RecordFile> for SmtpMessage {
    fn from(record: RecordFile) -> Self {
        SmtpMessage {
            seq: record.seq,
            received_at: UNIX_EPOCH
                + Duration::try_from_secs_f64(record.received_at).unwrap_or_default(),
            mail_from: record.mail_from,
            rcpt_tos: record.rcpt_tos,
            tls: record.tls,
            tls_version: record.tls_version,
            auth_login: record.auth_login,
            accepted: record.accepted,
            reply: record.reply,
            // The script writes the raw bytes as Latin-1: one char per byte.
            raw: record
                .raw_latin1
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            headers: record.headers,
            subject: record.subject,
            from: record.from,
            to: record.to,
            content_type: record.content_type,
            mime_type: record.mime_type,
            text: record.text,
            html: record.html,
            attachments: record.attachments,
            defects: record.defects,
        }
    }
}

/// A running aiosmtpd on 127.0.0.1. Killed when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    // Field order matters for Drop: the child goes first, then its folder.
    child: Child,
    _stdin: Option<ChildStdin>,
    port: u16,
    mode: SmtpMode,
    credentials: Option<(String, String)>,
    maildir: PathBuf,
    ca_pem_path: PathBuf,
    ca_pem: String,
    rejections: AtomicUsize,
    dir: tempfile::TempDir,
}

/// The name the server certificate is issued for (it also covers 127.0.0.1).
pub const TLS_DOMAIN: &str = "localhost";

impl SmtpServer {
    /// Starts a server in `mode`, without AUTH.
    pub async fn start(mode: SmtpMode) -> Result<Self, SmtpError> {
        Self::start_with(SmtpConfig::new(mode)).await
    }

    /// Starts a server as configured. The first start on a machine creates
    /// the venv (pip install of the pinned aiosmtpd; a few seconds).
    pub async fn start_with(config: SmtpConfig) -> Result<Self, SmtpError> {
        let python = tokio::task::spawn_blocking(venv_python)
            .await
            .map_err(|error| SmtpError::Venv(error.to_string()))?
            .map_err(SmtpError::Venv)?;
        let dir = tempfile::Builder::new().prefix("patrol-smtp-").tempdir()?;
        let maildir = dir.path().join("mail");
        std::fs::create_dir_all(maildir.join("reject"))?;
        let certs = Certificates::generate()?;
        let ca_pem_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("server.pem");
        let key_path = dir.path().join("server-key.pem");
        std::fs::write(&ca_pem_path, &certs.ca_pem)?;
        std::fs::write(&cert_path, &certs.server_pem)?;
        std::fs::write(&key_path, &certs.server_key_pem)?;
        let stderr = std::fs::File::create(dir.path().join("server.log"))?;

        let mut command = Command::new(&python);
        command
            .arg(script_path())
            .arg("--dir")
            .arg(&maildir)
            .arg("--mode")
            .arg(config.mode.flag())
            .arg("--cert")
            .arg(&cert_path)
            .arg("--key")
            .arg(&key_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        if let Some((user, password)) = &config.credentials {
            command
                .arg("--user")
                .arg(user)
                .arg("--password")
                .arg(password);
            if config.require_auth {
                command.arg("--require-auth");
            }
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| SmtpError::Startup("no stdout".into()))?;
        let mut first_line = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut first_line),
        )
        .await;
        let log = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let port = match read {
            Ok(Ok(_)) => serde_json::from_str::<serde_json::Value>(&first_line)
                .ok()
                .and_then(|value| value["port"].as_u64())
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| {
                    SmtpError::Startup(format!("said {first_line:?}; log:\n{}", log()))
                })?,
            Ok(Err(error)) => return Err(SmtpError::Startup(format!("{error}; log:\n{}", log()))),
            Err(_) => {
                return Err(SmtpError::Startup(format!(
                    "no port within 30 s; log:\n{}",
                    log()
                )))
            }
        };
        Ok(SmtpServer {
            child,
            _stdin: stdin,
            port,
            mode: config.mode,
            credentials: config.credentials,
            maildir,
            ca_pem_path,
            ca_pem: certs.ca_pem,
            rejections: AtomicUsize::new(0),
            dir,
        })
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mode(&self) -> SmtpMode {
        self.mode
    }

    /// The name to verify the server certificate against: [`TLS_DOMAIN`].
    pub fn tls_domain(&self) -> &str {
        TLS_DOMAIN
    }

    /// The CA that issued the server certificate (PEM file), for a client
    /// to trust; generated at start, valid for `localhost` and `127.0.0.1`.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The same CA as PEM text.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// User and password AUTH accepts, if configured.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// The server's stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The next `n` messages are answered `reply` (an SMTP reply line such
    /// as `451 4.3.0 Try again later` or `554 5.7.1 Rejected`) instead of
    /// 250; they are still recorded, with `accepted: false`.
    pub fn reject_next(&self, n: usize, reply: &str) -> std::io::Result<()> {
        let folder = self.maildir.join("reject");
        for _ in 0..n {
            let number = self.rejections.fetch_add(1, Ordering::SeqCst) + 1;
            let temporary = folder.join(format!(".{number:06}.tmp"));
            std::fs::write(&temporary, reply)?;
            std::fs::rename(&temporary, folder.join(format!("{number:06}")))?;
        }
        Ok(())
    }

    /// After the next `n` messages' data, the server sends nothing for 120 s
    /// (then 451): a hung server, for client timeouts. The messages are
    /// recorded at once, with `accepted: false`.
    pub fn stall_next(&self, n: usize) -> std::io::Result<()> {
        self.reject_next(n, "stall")
    }

    /// Every DATA transaction so far, accepted or not, in order.
    pub fn attempts(&self) -> Vec<SmtpMessage> {
        let Ok(entries) = std::fs::read_dir(&self.maildir) else {
            return Vec::new();
        };
        let mut messages: Vec<SmtpMessage> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .filter(|path| {
                !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
            })
            .filter_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                serde_json::from_str::<RecordFile>(&text).ok()
            })
            .map(SmtpMessage::from)
            .collect();
        messages.sort_by_key(|message| message.seq);
        messages
    }

    /// The accepted messages, in order.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        self.attempts()
            .into_iter()
            .filter(|message| message.accepted)
            .collect()
    }

    /// Waits until at least `count` messages were accepted and returns them
    /// all; gives up after `timeout`.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<SmtpMessage>, WaitTimedOut> {
        self.wait_until(|server| server.messages().len() >= count, timeout)
            .await?;
        Ok(self.messages())
    }

    /// Waits until `condition(self)` holds (checked every 20 ms).
    pub async fn wait_until(
        &self,
        condition: impl Fn(&Self) -> bool,
        timeout: Duration,
    ) -> Result<(), WaitTimedOut> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WaitTimedOut {
                    timeout,
                    recorded: self.attempts().len(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

struct Certificates {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

impl Certificates {
    /// A CA and a server certificate it signs for `localhost` and
    /// `127.0.0.1` (a client trusting a self-signed leaf directly is not
    /// what real deployments do, and rustls refuses some such setups).
    fn generate() -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "patrol-standins test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let mut server_params =
            CertificateParams::new(vec![TLS_DOMAIN.to_string(), "127.0.0.1".to_string()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, TLS_DOMAIN);
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &ca, &ca_key)?;
        Ok(Certificates {
            ca_pem: ca.pem(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_server.py")
}

pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The venv's python, creating the venv once per target directory (the
/// script serialises concurrent creators with an flock).
fn venv_python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = target_dir().join("standins-smtp-venv");
            let output = std::process::Command::new("python3")
                .arg(script_path())
                .arg("--ensure-venv")
                .arg(&venv)
                .output()
                .map_err(|error| {
                    format!("running python3 (needed for the SMTP stand-in): {error}")
                })?;
            if !output.status.success() {
                return Err(format!(
                    "creating {} failed ({}):\n{}\n{}",
                    venv.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(venv.join("bin/python"))
        })
        .clone()
}
