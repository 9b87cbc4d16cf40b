//! Log lines pass the secret redactor before they are written: a message
//! or a field may quote an error, a URL or a program's words, and a log
//! file or journald keeps them for anyone who can read it.

use std::io::{self, Write};

use patrol_job_api::secret::redact;
use tracing_subscriber::fmt::MakeWriter;

/// Wraps the writer a log event goes to (stderr in `serve`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Redacted<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacted<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            event: Vec::new(),
            inner: self.0.make_writer(),
        }
    }
}

/// Collects one event's bytes and writes them, scrubbed, when dropped: the
/// formatter may write an event in pieces, and a secret split across two
/// pieces would pass a per-piece scrub.
pub struct RedactingWriter<W: Write> {
    event: Vec<u8>,
    inner: W,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.event.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        if self.event.is_empty() {
            return;
        }
        let line = redact(&String::from_utf8_lossy(&self.event));
        let _ = self.inner.write_all(line.as_bytes());
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use patrol_job_api::secret::SecretRef;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn secrets_and_url_credentials_never_reach_the_log() {
        std::env::set_var("PATROL_TEST_LOG_SECRET", "log-secret-value-8812");
        SecretRef::Env("PATROL_TEST_LOG_SECRET".into())
            .resolve(std::path::Path::new(""))
            .unwrap();
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Redacted(move || sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                error = "POST https://u:pw-in-url@hooks.example.com/x?token=t0k failed",
                "notifier said log-secret-value-8812"
            );
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("notifier said [redacted]"), "{log}");
        assert!(
            log.contains("https://[redacted]@hooks.example.com/x?token=[redacted]"),
            "{log}"
        );
        for secret in ["log-secret-value-8812", "pw-in-url", "t0k"] {
            assert!(!log.contains(secret), "{secret} in {log}");
        }
    }
}
