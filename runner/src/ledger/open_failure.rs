//! The message a user reads when the ledger cannot be opened: which
//! database (the URL without its password), how TLS was asked for, and
//! sqlx's reason once.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{redact_url, Backend};

/// `err` from opening the ledger at `url`, as one flat message. sqlx's
/// errors print their cause and then return it again as their source, so
/// anyhow's `{:#}` would say everything twice; the cause is kept in the
/// text instead of the chain.
pub(super) fn open_failure(url: &str, backend: Backend, err: &sqlx::Error) -> anyhow::Error {
    let mut message = format!("cannot open the ledger at {}", redact_url(url));
    // When the URL does not say, the mode came from PGSSLMODE or the
    // default (`prefer`); either may surprise.
    if backend == Backend::Postgres && !url.contains("sslmode=") {
        if let Ok(options) = PgConnectOptions::from_str(url) {
            message.push_str(&format!(
                " (sslmode={})",
                ssl_mode_name(options.get_ssl_mode())
            ));
        }
    }
    message.push_str(&format!(": {err}"));
    if let Some(hint) = tls_hint(&err.to_string()) {
        message.push_str(&format!(" ({hint})"));
    }
    anyhow::anyhow!(message)
}

fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// What to do about the certificate failures rustls names tersely.
fn tls_hint(reason: &str) -> Option<&'static str> {
    if reason.contains("UnknownIssuer") {
        Some(
            "the server's certificate is not signed by a CA the ledger trusts: \
             name the CA that signed it in the URL's sslrootcert=PATH",
        )
    } else if reason.contains("not valid for name") {
        // sqlx 0.8.6 with rustls >= 0.23.24 checks the name under
        // verify-ca too (launchbadge/sqlx#3793, fixed in sqlx 0.9), so
        // switching to verify-ca is no way out.
        Some(
            "the URL's host must be a name the server's certificate lists; patrol checks it \
             under sslmode=verify-ca as well as verify-full",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(url: &str, err: sqlx::Error) -> String {
        format!("{:#}", open_failure(url, Backend::Postgres, &err))
    }

    #[test]
    fn names_the_effective_sslmode_when_the_url_does_not() {
        let said = message(
            "postgres://u:secret@db.example:5432/patrol",
            sqlx::Error::Protocol("refused".into()),
        );
        assert!(
            said.starts_with(
                "cannot open the ledger at postgres://u:***@db.example:5432/patrol (sslmode="
            ),
            "{said}"
        );
        assert!(!said.contains("secret"), "{said}");
    }

    #[test]
    fn says_the_reason_once_and_what_to_do_about_an_unknown_issuer() {
        let said = message(
            "postgres://u@db.example/patrol?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            sqlx::Error::Tls("invalid peer certificate: UnknownIssuer".into()),
        );
        assert_eq!(said.matches("UnknownIssuer").count(), 1, "{said}");
        assert!(
            said.contains("?sslmode=verify-full&sslrootcert=/etc/ca.pem: "),
            "{said}"
        );
        assert!(said.contains("sslrootcert=PATH"), "{said}");
    }
}
