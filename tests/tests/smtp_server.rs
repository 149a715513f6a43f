//! The SMTP server of the notification suites (`o2c_tests::smtp`, aiosmtpd
//! from PyPI, `deploy/dev/aiosmtpd.sh install`) does what those suites
//! rely on, seen through the notify service's own client, lettre: mail it
//! accepts is read back whole, `reject…@` and `tempfail…@` recipients are
//! refused permanently and transiently, and a `hold…@` message stays
//! unaccepted while held: its client dying then leaves nothing stored,
//! while a released one is stored.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use o2c_tests::TestEnv;
use o2c_tests::smtp::{SmtpOptions, SmtpServer};

const WAIT: Duration = Duration::from_secs(30);
const FROM: &str = "Shop <shop@example.com>";

fn transport(smtp: &SmtpServer) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .build()
}

/// A text/plain message to `to` with the given id (`<{id}@o2c.test>`).
fn mail(to: &str, id: &str, subject: &str, body: &str) -> Result<Message> {
    Ok(Message::builder()
        .from(FROM.parse()?)
        .to(to.parse()?)
        .subject(subject)
        .message_id(Some(format!("<{id}@o2c.test>")))
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())?)
}

#[tokio::test]
async fn accepted_mail_is_read_back_with_subject_id_and_body() -> Result<()> {
    let env = TestEnv::new();
    let smtp = SmtpServer::start(&env.path().join("smtp")).await?;
    ensure!(smtp.url() == format!("smtp://127.0.0.1:{}", smtp.port()));
    let client = transport(&smtp);
    let sent = [
        (
            "ann@example.com",
            "m1",
            "Your order is ready",
            "Order 1 is ready.\nThanks!\n",
        ),
        (
            "bob@example.com",
            "m2",
            "Commande prête – ½ café ☕",
            "Prête à 12 h ✓\n",
        ),
        (
            "cat@example.com",
            "m3",
            "Refund issued",
            "We refunded CAD 14.99.\n",
        ),
    ];
    for (to, id, subject, body) in sent {
        client
            .send(mail(to, id, subject, body)?)
            .await
            .with_context(|| format!("sending {id}"))?;
    }

    let got = smtp.wait_for_messages(sent.len(), WAIT).await?;
    ensure!(got.len() == sent.len(), "{got:#?}");
    for ((to, id, subject, body), m) in sent.iter().zip(&got) {
        let message_id = format!("<{id}@o2c.test>");
        ensure!(m.message_id == message_id, "{m:#?}");
        ensure!(
            m.header("message-id") == Some(message_id.as_str()),
            "{m:#?}"
        );
        ensure!(m.subject == *subject, "{m:#?}");
        // lettre ends DATA with CRLF.CRLF after a body that already ends in
        // CRLF, which adds an empty last line to a 7bit/8bit body.
        ensure!(m.body.trim_end() == body.trim_end(), "{m:#?}");
        ensure!(m.mail_from == "shop@example.com", "{m:#?}");
        ensure!(m.rcpt_tos == [*to], "{m:#?}");
        ensure!(m.header("TO") == Some(*to), "{m:#?}");
        ensure!(m.received_ns > 0, "{m:#?}");
    }
    ensure!(smtp.message_count()? == sent.len());
    Ok(())
}

#[tokio::test]
async fn reject_is_a_permanent_error_and_tempfail_a_transient_one() -> Result<()> {
    let env = TestEnv::new();
    let smtp = SmtpServer::start(&env.path().join("smtp")).await?;
    let client = transport(&smtp);

    let rejected = client
        .send(mail("reject.me@example.com", "r1", "no", "no\n")?)
        .await
        .err()
        .context("a reject… recipient was accepted")?;
    ensure!(rejected.is_permanent(), "{rejected:?}");
    ensure!(
        rejected.to_string().contains("mailbox unavailable"),
        "{rejected}"
    );

    let deferred = client
        .send(mail("tempfail.me@example.com", "t1", "later", "later\n")?)
        .await
        .err()
        .context("a tempfail… recipient was accepted")?;
    ensure!(deferred.is_transient(), "{deferred:?}");
    ensure!(!deferred.is_permanent(), "{deferred:?}");

    // The same connection pool still delivers: only the refused mail is missing.
    client
        .send(mail("ok@example.com", "ok1", "ok", "ok\n")?)
        .await?;
    let got = smtp.wait_for_messages(1, WAIT).await?;
    let ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
    ensure!(ids == ["<ok1@o2c.test>"], "{ids:?}");
    Ok(())
}

#[tokio::test]
async fn held_mail_whose_client_dies_is_not_stored_and_released_mail_is() -> Result<()> {
    let env = TestEnv::new();
    let smtp = SmtpServer::start(&env.path().join("smtp")).await?;

    // The first client dies while its message is held: aborting the task
    // drops its connection, closing the socket before the server answered
    // DATA. (It is a bare lettre connection: an aborted send on a pooled
    // `AsyncSmtpTransport` hands its connection back to the pool, which
    // keeps it open, mid-transaction.)
    let first = mail("hold.a@example.com", "h1", "held then dropped", "one\n")?;
    let port = smtp.port();
    let doomed = tokio::spawn(async move {
        let hello = ClientId::default();
        let addr = ("127.0.0.1", port);
        let mut conn = AsyncSmtpConnection::connect_tokio1(addr, None, &hello, None, None).await?;
        conn.send(first.envelope(), &first.formatted()).await
    });
    ensure!(smtp.wait_held(1, WAIT).await? == ["<h1@o2c.test>"]);
    doomed.abort();
    ensure!(doomed.await.is_err_and(|e| e.is_cancelled()));
    ensure!(smtp.wait_abandoned(1, WAIT).await? == ["<h1@o2c.test>"]);

    // The second is held too, and stored once released.
    let second = mail("hold.b@example.com", "h2", "held then released", "two\n")?;
    let client = transport(&smtp);
    let sending = tokio::spawn(async move { client.send(second).await });
    let held = smtp.wait_held(2, WAIT).await?;
    ensure!(held == ["<h1@o2c.test>", "<h2@o2c.test>"], "{held:?}");
    ensure!(smtp.message_count()? == 0, "accepted while held");
    smtp.release()?;
    let answer = sending.await?.context("sending the released message")?;
    ensure!(answer.is_positive(), "{answer:?}");

    let got = smtp.messages()?;
    let ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
    ensure!(
        ids == ["<h2@o2c.test>"],
        "the abandoned message was stored: {ids:?}"
    );
    ensure!(got[0].rcpt_tos == ["hold.b@example.com"], "{:?}", got[0]);
    ensure!(smtp.abandoned()? == ["<h1@o2c.test>"]);
    Ok(())
}

#[tokio::test]
async fn delay_ms_holds_back_every_acceptance() -> Result<()> {
    let env = TestEnv::new();
    let opts = SmtpOptions { delay_ms: 300 };
    let smtp = SmtpServer::start_with(&env.path().join("smtp"), opts).await?;
    let client = transport(&smtp);
    for id in ["d1", "d2"] {
        let started = std::time::Instant::now();
        client
            .send(mail("slow@example.com", id, id, "late\n")?)
            .await?;
        let took = started.elapsed();
        ensure!(
            took >= Duration::from_millis(300),
            "{id} accepted after {took:?}"
        );
    }
    ensure!(smtp.message_count()? == 2);
    Ok(())
}
