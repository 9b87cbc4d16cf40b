//! The SMTP server, driven by lettre (the client the email notifier uses).

use std::time::Duration;

use lettre::message::{header::ContentType, Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use patrol_standins::{SmtpConfig, SmtpMode, SmtpServer};

const WAIT: Duration = Duration::from_secs(10);

fn alert(subject: &str) -> Message {
    Message::builder()
        .from("patrol <patrol@example.test>".parse().expect("from"))
        .to("On call <oncall@example.test>".parse().expect("to"))
        .cc("ops@example.test".parse().expect("cc"))
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(
            "Job backup failed.\nAttempt 3 of 3.".to_string(),
            "<p>Job <b>backup</b> failed.</p>".to_string(),
        ))
        .expect("message")
}

fn tls_parameters(server: &SmtpServer) -> TlsParameters {
    TlsParameters::builder(server.tls_domain().to_string())
        .add_root_certificate(Certificate::from_pem(server.ca_pem().as_bytes()).expect("CA PEM"))
        .build_rustls()
        .expect("TLS parameters")
}

fn mailer(
    server: &SmtpServer,
    tls: Tls,
    credentials: Option<(&str, &str)>,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host())
        .port(server.port())
        .tls(tls)
        .timeout(Some(Duration::from_secs(5)));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::new(user.to_string(), password.to_string()));
    }
    builder.build()
}

#[tokio::test]
async fn plain_delivery_is_recorded_and_parsed() {
    let server = SmtpServer::start(SmtpMode::Plain).await.expect("starts");
    mailer(&server, Tls::None, None)
        .send(alert("Job failed: backup ✗"))
        .await
        .expect("sent");
    let messages = server.wait_for(1, WAIT).await.expect("received");
    let message = &messages[0];
    assert_eq!(message.mail_from, "patrol@example.test");
    let mut rcpts = message.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["oncall@example.test", "ops@example.test"]);
    assert_eq!(
        message.subject.as_deref(),
        Some("Job failed: backup ✗"),
        "RFC 2047 decoded"
    );
    assert_eq!(
        message.from.as_deref(),
        Some("patrol <patrol@example.test>")
    );
    assert_eq!(message.to.as_deref(), Some("On call <oncall@example.test>"));
    assert_eq!(message.mime_type, "multipart/alternative");
    assert_eq!(
        message.text.as_deref().map(str::trim_end),
        Some("Job backup failed.\nAttempt 3 of 3.")
    );
    assert_eq!(
        message.html.as_deref().map(str::trim_end),
        Some("<p>Job <b>backup</b> failed.</p>")
    );
    assert!(message.header("date").is_some());
    assert!(message.defects.is_empty(), "{:?}", message.defects);
    assert!(!message.tls);
    assert!(message.accepted);
    assert!(String::from_utf8_lossy(&message.raw).contains("Subject: "));
}

#[tokio::test]
async fn starttls_with_auth() {
    let server =
        SmtpServer::start_with(SmtpConfig::new(SmtpMode::StartTls).with_auth("patrol", "pw"))
            .await
            .expect("starts");
    mailer(
        &server,
        Tls::Required(tls_parameters(&server)),
        Some(("patrol", "pw")),
    )
    .send(alert("over STARTTLS"))
    .await
    .unwrap_or_else(|e| panic!("{e:?}\n{}", server.log()));
    let message = server.wait_for(1, WAIT).await.expect("received").remove(0);
    assert!(message.tls);
    assert!(message
        .tls_version
        .as_deref()
        .is_some_and(|v| v.starts_with("TLSv1.")));
    assert_eq!(message.auth_login.as_deref(), Some("patrol"));
    assert_eq!(message.subject.as_deref(), Some("over STARTTLS"));

    // Refused: no TLS; a wrong password; a client that does not trust the CA.
    let error = mailer(&server, Tls::None, None)
        .send(alert("clear text"))
        .await
        .expect_err("STARTTLS is required");
    assert_eq!(
        error.status().map(|code| code.to_string()),
        Some("530".into()),
        "{error:?}"
    );
    // AUTH is not even offered before STARTTLS, so lettre gives up itself.
    mailer(&server, Tls::None, Some(("patrol", "pw")))
        .send(alert("clear text with credentials"))
        .await
        .expect_err("no AUTH without TLS");
    let error = mailer(
        &server,
        Tls::Required(tls_parameters(&server)),
        Some(("patrol", "nope")),
    )
    .send(alert("bad password"))
    .await
    .expect_err("bad password");
    assert_eq!(
        error.status().map(|code| code.to_string()),
        Some("535".into()),
        "{error:?}"
    );
    let untrusted = TlsParameters::new_rustls(server.tls_domain().to_string()).expect("parameters");
    mailer(&server, Tls::Required(untrusted), Some(("patrol", "pw")))
        .send(alert("untrusted"))
        .await
        .expect_err("the certificate is not trusted by default");
    assert_eq!(server.attempts().len(), 1);
}

#[tokio::test]
async fn implicit_tls() {
    let server = SmtpServer::start(SmtpMode::ImplicitTls)
        .await
        .expect("starts");
    mailer(&server, Tls::Wrapper(tls_parameters(&server)), None)
        .send(alert("wrapped"))
        .await
        .expect("sent");
    let message = server.wait_for(1, WAIT).await.expect("received").remove(0);
    assert!(message.tls);
}

#[tokio::test]
async fn auth_over_plain_text_and_required_auth() {
    let server = SmtpServer::start_with(SmtpConfig::new(SmtpMode::Plain).with_auth("u", "p"))
        .await
        .expect("starts");
    let error = mailer(&server, Tls::None, None)
        .send(alert("no auth"))
        .await
        .expect_err("AUTH is required");
    assert!(error.is_permanent(), "{error:?}");
    mailer(&server, Tls::None, Some(("u", "p")))
        .send(alert("with auth"))
        .await
        .expect("sent");
    let message = server.wait_for(1, WAIT).await.expect("received").remove(0);
    assert_eq!(message.auth_login.as_deref(), Some("u"));
    assert!(!message.tls);
}

#[tokio::test]
async fn rejections_are_transient_or_permanent_as_asked() {
    let server = SmtpServer::start(SmtpMode::Plain).await.expect("starts");
    server
        .reject_next(1, "451 4.3.0 Try again later")
        .expect("queued");
    server.reject_next(1, "554 5.7.1 Rejected").expect("queued");
    let mailer = mailer(&server, Tls::None, None);
    let error = mailer.send(alert("first")).await.expect_err("451");
    assert!(error.is_transient(), "{error:?}");
    let error = mailer.send(alert("second")).await.expect_err("554");
    assert!(error.is_permanent(), "{error:?}");
    mailer.send(alert("third")).await.expect("sent");
    let messages = server.wait_for(1, WAIT).await.expect("received");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].subject.as_deref(), Some("third"));
    let attempts = server.attempts();
    assert_eq!(attempts.len(), 3);
    assert!(!attempts[0].accepted);
    assert_eq!(attempts[0].reply, "451 4.3.0 Try again later");
}

#[tokio::test]
async fn attachments_are_listed() {
    let server = SmtpServer::start(SmtpMode::Plain).await.expect("starts");
    let message = Message::builder()
        .from("patrol@example.test".parse().expect("from"))
        .to("oncall@example.test".parse().expect("to"))
        .subject("with log")
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain("see log".to_string()))
                .singlepart(
                    Attachment::new("run.log".to_string())
                        .body(b"line 1\nline 2\n".to_vec(), ContentType::TEXT_PLAIN),
                ),
        )
        .expect("message");
    mailer(&server, Tls::None, None)
        .send(message)
        .await
        .expect("sent");
    let message = server.wait_for(1, WAIT).await.expect("received").remove(0);
    assert_eq!(message.text.as_deref().map(str::trim_end), Some("see log"));
    assert_eq!(message.attachments.len(), 1);
    assert_eq!(message.attachments[0].filename.as_deref(), Some("run.log"));
    assert_eq!(message.attachments[0].size, 14);
}

/// `stall_next` makes the server go silent after DATA. lettre's own
/// `timeout` (500 ms here) does not end that wait (lettre 0.11.23): the
/// email notifier must bound `send` itself, e.g. with `tokio::time::timeout`.
#[tokio::test]
async fn stalled_server_outlasts_lettres_timeout() {
    let server = SmtpServer::start(SmtpMode::Plain).await.expect("starts");
    server.stall_next(1).expect("queued");
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host())
        .port(server.port())
        .tls(Tls::None)
        .timeout(Some(Duration::from_millis(500)))
        .build();
    let sent = tokio::time::timeout(Duration::from_secs(2), mailer.send(alert("stalled"))).await;
    assert!(sent.is_err(), "send should still be waiting: {sent:?}");
    server
        .wait_until(|s| s.attempts().len() == 1, WAIT)
        .await
        .expect("recorded at once");
    assert_eq!(server.attempts()[0].reply, "451 4.4.2 Stalled by the test");
    assert!(server.messages().is_empty());
}
