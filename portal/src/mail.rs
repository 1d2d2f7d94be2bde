//! Outgoing email: a persistent queue in the store, delivered by a background
//! worker through lettre, either into a file outbox (default: one `.eml` file per
//! message in `<data dir>/outbox`) or over SMTP.
//!
//! A message is written to the queue (and flushed) before the request that caused
//! it is answered, so a crash or an SMTP outage never loses it. A failed send is
//! retried with exponential backoff (30 s, 1 min, 2 min, ... capped at 1 hour) for
//! as long as it takes; admins see failing messages on the admin page.

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use keys::{Clock, UnixTime};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

const FIRST_RETRY_SECS: u64 = 30;
const MAX_RETRY_SECS: u64 = 3600;
/// How long a sender holds the messages it took: longer than one SMTP exchange
/// can take (lettre's timeout is a minute), so a message is sent again only when
/// its sender died.
const LEASE_SECS: u64 = 300;
/// Messages taken per round.
const BATCH: usize = 32;

/// How SMTP connections are secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (only for a relay on the same host or in tests).
    None,
    /// STARTTLS on the submission port (587).
    #[default]
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
}

/// SMTP settings; without them mail goes to the file outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

/// One message, already rendered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A queued message and its delivery history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MailJob {
    pub id: u64,
    pub email: Email,
    pub queued_at: UnixTime,
    pub attempts: u32,
    pub next_attempt: UnixTime,
    pub last_error: Option<String>,
}

fn to_job_json(job: &MailJob) -> String {
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_string(job).unwrap_or_default()
}

/// Could not queue a message.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the recipient address {0:?} is not a valid email address")]
    BadAddress(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Transport {
    Outbox(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// The queue and its delivery.
pub struct Mailer {
    store: Arc<Store>,
    transport: Transport,
    from: Mailbox,
    clock: Arc<dyn Clock>,
    wake: tokio::sync::Notify,
    outbox: Option<PathBuf>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// `outbox` is used when `smtp` is `None`.
    /// The mailer a configuration asks for: its sender, SMTP when configured,
    /// the outbox directory otherwise.
    pub fn from_config(
        store: &Arc<Store>,
        config: &crate::config::Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::new(
            store,
            &config.http.mail_from,
            config.smtp.as_ref(),
            config.outbox_dir(),
            clock,
        )
    }

    pub fn new(
        store: &Arc<Store>,
        from: &str,
        smtp: Option<&SmtpConfig>,
        outbox: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().map_err(|e| {
            anyhow::anyhow!(
                "mail.from {from:?} is not a valid sender (like \"PLS <pls@example.com>\"): {e}"
            )
        })?;
        let (transport, outbox) = match smtp {
            None => {
                std::fs::create_dir_all(&outbox).map_err(|e| {
                    anyhow::anyhow!("cannot create mail outbox {}: {e}", outbox.display())
                })?;
                (
                    Transport::Outbox(AsyncFileTransport::new(&outbox)),
                    Some(outbox),
                )
            }
            Some(s) => {
                if s.host.trim().is_empty() {
                    anyhow::bail!(
                        "the SMTP host is empty: set [smtp] host in the config or PLS_SMTP_HOST"
                    );
                }
                let builder = match s.tls {
                    SmtpTls::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                    }
                    SmtpTls::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?
                    }
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?,
                };
                let mut builder = builder.port(s.port);
                if let (Some(u), Some(p)) = (&s.username, &s.password) {
                    builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                }
                (Transport::Smtp(builder.build()), None)
            }
        };
        Ok(Mailer {
            store: store.clone(),
            transport,
            from,
            clock,
            wake: tokio::sync::Notify::new(),
            outbox,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Counts deliveries into `metrics` (the server's registry).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The file outbox directory, when mail goes there.
    pub fn outbox(&self) -> Option<&PathBuf> {
        self.outbox.as_ref()
    }

    /// Queues a message durably and wakes the worker.
    pub fn enqueue(&self, email: Email) -> Result<u64, MailError> {
        let now = self.clock.now();
        let job = self.job(email)?;
        let id = self.store.enqueue_mail(now, job)?;
        self.wake.notify_one();
        Ok(id)
    }

    /// A message as a mail job, due now, for a store operation that queues it
    /// in its own transaction (with the change the message tells about; see
    /// [`crate::store::RebindMail`]). Call [`Mailer::wake`] after the commit.
    pub fn job(&self, email: Email) -> Result<crate::store::MailJobFn, MailError> {
        if email.to.parse::<lettre::Address>().is_err() {
            return Err(MailError::BadAddress(email.to));
        }
        let now = self.clock.now();
        Ok(Box::new(move |id| {
            to_job_json(&MailJob {
                id,
                email,
                queued_at: now,
                attempts: 0,
                next_attempt: now,
                last_error: None,
            })
        }))
    }

    /// Wakes the worker for a job queued by a store operation (without it the
    /// worker finds the job at its next round, within seconds).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn jobs(store: &Store) -> Vec<MailJob> {
        match store.mail_jobs() {
            Ok(jobs) => jobs
                .into_iter()
                .filter_map(|(id, v)| match serde_json::from_str::<MailJob>(&v) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        tracing::error!(mail_id = id, error = %e, "a queued email does not decode");
                        None
                    }
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the mail queue");
                vec![]
            }
        }
    }

    /// Messages waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.store.mail_queue_len().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the mail queue");
            0
        })
    }

    /// Messages whose delivery failed at least once and that are still queued.
    pub fn failing(&self) -> Vec<MailJob> {
        Self::jobs(&self.store)
            .into_iter()
            .filter(|j| j.attempts > 0)
            .collect()
    }

    /// Makes a failing message due now (admin "retry").
    pub fn retry_now(&self, id: u64) -> Result<bool, MailError> {
        let Some(v) = self.store.mail_job(id)? else {
            return Ok(false);
        };
        let Ok(mut job) = serde_json::from_str::<MailJob>(&v) else {
            return Ok(false);
        };
        job.next_attempt = self.clock.now();
        self.store
            .update_mail(id, job.next_attempt, &to_job_json(&job))?;
        self.wake.notify_one();
        Ok(true)
    }

    fn build(&self, email: &Email) -> Result<Message, String> {
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| format!("bad recipient: {e}"))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                email.text.clone(),
                email.html.clone(),
            ))
            .map_err(|e| format!("cannot build message: {e}"))
    }

    /// Runs a store operation on a blocking thread (never on an async worker).
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Option<T> {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "a mail queue operation failed");
                None
            }
        }
    }

    /// Sends every message that is due; returns how many were delivered. Each
    /// is leased from the queue first ([`Store::claim_due_mail`]), so of several
    /// servers on one database exactly one sends it.
    pub async fn deliver_due(&self) -> usize {
        let mut sent = 0;
        loop {
            let (round, full) = self.deliver_batch().await;
            sent += round;
            if !full {
                break;
            }
        }
        sent
    }

    /// One batch of [`Mailer::deliver_due`]: how many were delivered, and whether
    /// the batch was full (more may be due).
    async fn deliver_batch(&self) -> (usize, bool) {
        let now = self.clock.now();
        let mut sent = 0;
        let lease_until = now.plus_secs(LEASE_SECS);
        let claimed = match self
            .on_store(move |s| s.claim_due_mail(now, lease_until, BATCH))
            .await
        {
            Some(Ok(jobs)) => jobs,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read the mail queue");
                vec![]
            }
            None => vec![],
        };
        let full = claimed.len() == BATCH;
        let jobs =
            claimed
                .into_iter()
                .filter_map(|(id, v)| match serde_json::from_str::<MailJob>(&v) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        tracing::error!(mail_id = id, error = %e, "a queued email does not decode");
                        None
                    }
                });
        for mut job in jobs {
            let result = match self.build(&job.email) {
                Err(e) => Err(e),
                Ok(msg) => match &self.transport {
                    Transport::Outbox(t) => {
                        t.send(msg).await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Transport::Smtp(t) => t.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
                },
            };
            match result {
                Ok(()) => {
                    let id = job.id;
                    if let Some(Err(e)) = self.on_store(move |s| s.remove_mail(id)).await {
                        // It stays queued and goes out again: better twice than never.
                        tracing::error!(mail_id = job.id, error = %e, "cannot take a sent email off the queue");
                    }
                    tracing::info!(mail_id = job.id, subject = %job.email.subject, "email delivered");
                    self.metrics.email_delivery(true);
                    sent += 1;
                }
                Err(e) => {
                    job.attempts += 1;
                    let backoff = FIRST_RETRY_SECS
                        .saturating_mul(1 << (job.attempts - 1).min(10))
                        .min(MAX_RETRY_SECS);
                    job.next_attempt = now.plus_secs(backoff);
                    tracing::warn!(mail_id = job.id, attempts = job.attempts, retry_in_secs = backoff, error = %e, "email delivery failed");
                    self.metrics.email_delivery(false);
                    job.last_error = Some(e);
                    let (id, next, json) = (job.id, job.next_attempt, to_job_json(&job));
                    if let Some(Err(e)) =
                        self.on_store(move |s| s.update_mail(id, next, &json)).await
                    {
                        tracing::error!(mail_id = job.id, error = %e, "cannot record a failed delivery");
                    }
                }
            }
        }
        (sent, full)
    }

    /// Delivers until `shutdown` resolves: at once when woken, otherwise every
    /// few seconds so retries come due.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.deliver_due().await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }
}
