//! TLS to a PostgreSQL ledger (issue 20, item 2): the ledger URL's
//! `sslmode` and `sslrootcert` decide how the connection is encrypted and
//! which server it trusts.
//!
//! Each test starts its own cluster that speaks TLS only (pg_hba.conf
//! refuses plaintext, so a client falling back to plaintext fails instead
//! of passing unnoticed), with a certificate from a CA the test made that
//! names `localhost` only: connecting by `127.0.0.1` is then a host name
//! the certificate does not cover, which `verify-full` must refuse.

use std::path::PathBuf;

use patrol::ledger::{Ledger, RunStatus};

use crate::support::{stderr, PgCluster, Project, TestCa};

/// A TLS-only cluster and the CA files a client may be given.
struct TlsServer {
    cluster: PgCluster,
    files: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> Self {
        let ca = TestCa::new("patrol ledger test CA");
        let cluster = PgCluster::start_tls_only(&ca.issue_server(&["localhost"]));
        let files = tempfile::tempdir().expect("temp dir for CA files");
        std::fs::write(files.path().join("server-ca.pem"), ca.pem()).expect("server-ca.pem");
        let stranger = TestCa::new("a CA the server never heard of");
        std::fs::write(files.path().join("other-ca.pem"), stranger.pem()).expect("other-ca.pem");
        Self { cluster, files }
    }

    /// The CA that signed the server's certificate.
    fn server_ca(&self) -> PathBuf {
        self.files.path().join("server-ca.pem")
    }

    /// A CA that did not.
    fn other_ca(&self) -> PathBuf {
        self.files.path().join("other-ca.pem")
    }

    /// The ledger URL for the server reached as `host`, with `query`
    /// (e.g. `?sslmode=require`, or empty).
    fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres{query}",
            self.cluster.port()
        )
    }
}

fn verify(mode: &str, root: &std::path::Path) -> String {
    format!("?sslmode={mode}&sslrootcert={}", root.display())
}

/// Whether the ledger's own connection is encrypted, as the server sees it.
async fn ledger_uses_tls(ledger: &Ledger) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(ledger.pool())
        .await
        .expect("pg_stat_ssl")
}

/// `patrol runs` against `url`: the quickest real command that opens
/// (and migrates) the ledger.
fn patrol_runs(url: &str) -> std::process::Output {
    Project::on_database(url.to_string(), "").patrol(&["runs"])
}

/// `patrol runs` against `url` is refused; what it said.
fn refused(url: &str) -> String {
    let output = patrol_runs(url);
    let message = stderr(&output);
    assert!(!output.status.success(), "connected anyway: {message}");
    message
}

/// `patrol runs` against `url` works, and the ledger's connection there is
/// encrypted, as the server sees it.
async fn accepted_over_tls(url: &str) {
    let accepted = patrol_runs(url);
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    let ledger = Ledger::connect(url).await.expect("ledger over TLS");
    assert!(ledger_uses_tls(&ledger).await);
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_runs_a_job_on_a_ledger_reached_over_tls() {
    let server = TlsServer::start();
    let url = server.url("localhost", &verify("verify-full", &server.server_ca()));
    let project = Project::on_database(url, "");
    project.schedule(
        "greet.yaml",
        "id: greet\njob: command\ncron: \"0 3 1 1 *\"\nparams: {shell: 'echo hello'}\n",
    );

    let run = project.patrol(&["run", "greet", "--wait"]);
    assert!(
        run.status.success(),
        "patrol run over verify-full failed: {}",
        stderr(&run)
    );
    let runs = project.runs("greet").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:?}");

    let ledger = project.ledger().await;
    assert!(ledger_uses_tls(&ledger).await);
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_server_whose_certificate_another_ca_signed() {
    let server = TlsServer::start();
    let url = server.url("localhost", &verify("verify-full", &server.other_ca()));

    let message = refused(&url);
    assert!(
        message.contains(&format!(
            "cannot open the ledger at postgres://postgres@localhost:{}/postgres?sslmode=verify-full",
            server.cluster.port()
        )),
        "{message}"
    );
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains("name the CA that signed it"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_host_the_certificate_does_not_name() {
    let server = TlsServer::start();
    let url = server.url("127.0.0.1", &verify("verify-full", &server.server_ca()));

    let message = refused(&url);
    assert!(message.contains("sslmode=verify-full"), "{message}");
    assert!(
        message.contains("certificate not valid for name \"127.0.0.1\""),
        "{message}"
    );
    assert!(
        message.contains("the URL's host must be a name the server's certificate lists"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_accepts_the_servers_ca_and_refuses_another() {
    let server = TlsServer::start();

    let trusted = server.url("localhost", &verify("verify-ca", &server.server_ca()));
    accepted_over_tls(&trusted).await;

    let untrusted = server.url("localhost", &verify("verify-ca", &server.other_ca()));
    let message = refused(&untrusted);
    assert!(message.contains("UnknownIssuer"), "{message}");
}

/// libpq's verify-ca does not check the host name; sqlx 0.8.6 with rustls
/// 0.23.24 or later does (launchbadge/sqlx#3793, fixed in sqlx 0.9), and
/// the README says so. This fails when a sqlx upgrade fixes it: then the
/// README and the hint in `ledger/open_failure.rs` should change with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_also_checks_the_host_name_as_the_readme_warns() {
    let server = TlsServer::start();
    let url = server.url("127.0.0.1", &verify("verify-ca", &server.server_ca()));

    let refused = patrol_runs(&url);
    let message = stderr(&refused);
    assert!(
        !refused.status.success(),
        "connected: update the README, then this test"
    );
    assert!(
        message.contains("patrol checks it under sslmode=verify-ca as well"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_without_checking_the_certificate() {
    let server = TlsServer::start();
    accepted_over_tls(&server.url("127.0.0.1", "?sslmode=require")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_sslmode_the_ledger_uses_tls_when_the_server_offers_it() {
    let server = TlsServer::start();

    // The server really refuses plaintext, so passing below means TLS.
    let plaintext = patrol_runs(&server.url("127.0.0.1", "?sslmode=disable"));
    assert!(!plaintext.status.success(), "plaintext was accepted");
    assert!(
        stderr(&plaintext).contains("no encryption"),
        "{}",
        stderr(&plaintext)
    );

    accepted_over_tls(&server.url("127.0.0.1", "")).await;
}
