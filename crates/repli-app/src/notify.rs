//! Notifications: to ops, SLA escalations (each threshold once per crisis) and legal reminders
//! (24 h and 6 h before each deadline); to the commune's DGS, what the playbooks announce (kit
//! ready, accounts closed), by SMS to the out-of-band phone and by e-mail to the out-of-band
//! address; and every moment of the notification plan ([`plan`]: DGS, ops, auditors). Only
//! channels that work while the commune's mail is down.
//!
//! The `notifications` table is the outbox: one row per message **and recipient** (ops'
//! configured recipients are written out when queued), so a failure is retried, and resent by
//! ops, only to the recipient it failed for. Rows are claimed before each attempt (two
//! deliveries never send the same row), retried with backoff, and survive a restart. Delivery
//! runs beside the crisis (maintenance round, or a spawned task), never in its way.

pub mod plan;

use jiff::{SignedDuration, Timestamp};
use repli_core::Actor;
use repli_core::{fr, legal};
use repli_store::{CrisisFilter, NewNotification, StoreError};
use serde_json::json;

use crate::config::Channel;
use crate::{Services, views};

/// Queues what has become due; returns how many notifications were new.
pub async fn queue(st: &Services, now: Timestamp) -> Result<usize, StoreError> {
    let tz = st.calendar.time_zone().clone();
    let mut new = 0;
    let facts = st.store.crisis_facts_all().await?;
    let preempted = st.store.preemptions_of_open_exercises().await?;
    for r in st.store.crises(&CrisisFilter { open_only: true, ..Default::default() }).await? {
        let mut due: Vec<(String, String, String)> = Vec::new();
        if r.ready_at.is_none()
            && let Some(f) = facts.get(r.id.as_str())
            && let Ok(v) = views::sla_of(st, &r, f, now)
        {
            let used = views::used_percent(v.elapsed, st.config.sla.business_hours);
            for t in st.config.notify.thresholds.iter().filter(|t| **t <= used) {
                due.push((
                    format!("sla:{}:{t}", r.id),
                    format!("Crise {} ({}) : {t} % du délai écoulé", r.id, r.commune_name),
                    format!(
                        "{t} % des {} heures ouvrées sont écoulées. Échéance : {}. Statut : {}.",
                        st.config.sla.business_hours,
                        fr::datetime(v.due, &tz),
                        v.status.label_fr()
                    ),
                ));
            }
        }
        if let Some(aware) = r.aware_at {
            for c in legal::clocks(aware, r.personal_data, r.cnil_notified_at, r.complaint_filed_at, now) {
                for h in legal::reminders_due(&c) {
                    due.push((
                        format!("legal:{}:{}:{h}", r.id, c.kind.as_str()),
                        format!("Crise {} ({}) : {} — moins de {h} h", r.id, r.commune_name, c.kind.label_fr()),
                        format!("Échéance légale : {}.", fr::datetime(c.deadline, &tz)),
                    ));
                }
            }
        }
        for l in st.store.loans(&r.id).await? {
            if l.returned_at.is_none() && l.due_back < now {
                let who = l.agent.as_ref().map_or_else(|| "la commune".to_owned(), |a| a.name.clone());
                due.push((
                    format!("loan:{}:{}", l.serial, l.lent_at),
                    format!("Crise {} ({}) : prêt en retard — {}", r.id, r.commune_name, l.asset_tag),
                    format!(
                        "{} ({}) prêté à {who}, retour prévu {}.",
                        l.asset_tag,
                        l.kind.label_fr(),
                        fr::datetime(l.due_back, &tz)
                    ),
                ));
            }
        }
        // An exercise whose equipment a real crisis took is told (its notifications reach only
        // the scenario's addresses).
        for (seq, _, taken) in preempted.iter().filter(|(_, c, _)| *c == r.id) {
            due.push((
                format!("preempt:{seq}"),
                format!("Crise {} ({}) : matériel repris par une crise réelle", r.id, r.commune_name),
                format!(
                    "La crise réelle {} a repris {} équipement(s) de l'exercice : {}. L'exercice continue sans eux.",
                    taken.by_crisis,
                    taken.asset_tags.len(),
                    taken.asset_tags.join(", ")
                ),
            ));
        }
        for (key, subject, body) in due {
            new += to_ops(st, &r, &key, &subject, &body, now).await?;
        }
        new += plan::queue_crisis(st, &r, facts.get(r.id.as_str()), now).await?;
    }
    // The plan's last word on a crisis that ended since the previous round (closed by the
    // hand-back playbook, rejected, cancelled).
    let since = now.checked_sub(SignedDuration::from_hours(24 * 7)).unwrap_or(now);
    for r in st.store.crises(&CrisisFilter::default()).await? {
        if r.closed_at.is_some_and(|c| c >= since) {
            new += plan::queue_crisis(st, &r, None, now).await?;
        }
    }
    Ok(new)
}

/// Queues a message to ops on each of `notify.channels`: one row per configured recipient of
/// the channel (none for log and webhook), so each is delivered, retried and resent alone. An
/// exercise's rows go to its scenario's addresses instead (the store decides, where every
/// notification is queued). Returns how many rows were new.
pub async fn to_ops(
    st: &Services,
    r: &repli_store::CrisisRecord,
    key: &str,
    subject: &str,
    body: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut new = 0;
    for channel in &st.config.notify.channels {
        let configured: &[String] = match channel {
            Channel::Sms => st.config.notify.sms.as_ref().map_or(&[], |c| c.to.as_slice()),
            Channel::Smtp => st.config.notify.smtp.as_ref().map_or(&[], |c| c.to.as_slice()),
            Channel::Log | Channel::Webhook => &[],
        };
        let base = NewNotification {
            key,
            channel: channel.as_str(),
            crisis: Some(r.id.as_str()),
            recipient: None,
            audience: "ops",
            subject,
            body,
        };
        if configured.is_empty() || r.exercise.is_some() {
            new += usize::from(st.store.enqueue_notification(&base, now).await?);
            continue;
        }
        for to in configured {
            let one_key = format!("{key}:{to}");
            let n = NewNotification { key: &one_key, recipient: Some(to.as_str()), ..base };
            new += usize::from(st.store.enqueue_notification(&n, now).await?);
        }
    }
    Ok(new)
}

/// Queues a message to each of `notify.auditors`: by mail to an address, by SMS to a number.
pub async fn to_auditors(
    st: &Services,
    r: &repli_store::CrisisRecord,
    key: &str,
    subject: &str,
    body: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut new = 0;
    for to in &st.config.notify.auditors {
        let channel = if to.contains('@') { Channel::Smtp } else { Channel::Sms };
        let one_key = format!("{key}:{to}");
        let n = NewNotification {
            key: &one_key,
            channel: channel.as_str(),
            crisis: Some(r.id.as_str()),
            recipient: Some(to.as_str()),
            audience: "auditors",
            subject,
            body,
        };
        new += usize::from(st.store.enqueue_notification(&n, now).await?);
    }
    Ok(new)
}

/// How long an attempt holds its row: a daemon that dies while sending leaves it to be tried
/// again after this.
const CLAIM: SignedDuration = SignedDuration::from_mins(2);

/// Delivers due notifications in a task of their own, so a slow or unreachable channel never
/// holds up what queued them (a request, a transition, a playbook step). Returns the task, for
/// whoever wants to wait a little.
pub fn deliver_soon(st: &Services) -> tokio::task::JoinHandle<()> {
    let st = st.clone();
    tokio::spawn(async move {
        let now = st.clock.now();
        if let Err(e) = deliver(&st, now).await {
            tracing::warn!(error = %e, "notification delivery deferred to the maintenance round");
        }
    })
}

/// Sends due notifications, each claimed first; returns how many attempts were made.
pub async fn deliver(st: &Services, now: Timestamp) -> Result<usize, StoreError> {
    let due = st.store.due_notifications(now).await?;
    let mut attempted = 0;
    for n in &due {
        if !st.store.claim_notification(n.id, now, now.checked_add(CLAIM).unwrap_or(now)).await? {
            continue;
        }
        attempted += 1;
        let result = match Channel::parse(&n.channel) {
            Some(Channel::Log) => {
                // Ids only: the subject and text may hold the commune's contact (name, phone) or
                // an agent's name; ops read them in the notifications list.
                tracing::warn!(
                    notification = n.id,
                    key = %n.key,
                    crisis = n.crisis.as_deref().unwrap_or(""),
                    "notification for ops: read it with `repli notifications` or on the notifications page"
                );
                Ok(())
            }
            Some(Channel::Webhook) => webhook(st, n).await,
            Some(Channel::Smtp) => smtp(st, n).await,
            Some(Channel::Sms) => sms(st, n).await,
            None => Err(format!("unknown channel {}", n.channel)),
        };
        let retry_at = match &result {
            Ok(()) => None,
            Err(e) if n.attempts + 1 < i64::from(st.config.notify.max_attempts) => {
                tracing::warn!(notification = %n.key, error = %e, "notification not delivered, will retry");
                // 1, 2, 4… minutes, at most an hour.
                let wait = SignedDuration::from_mins(1i64 << n.attempts.clamp(0, 6));
                Some(now.checked_add(wait).unwrap_or(now))
            }
            Err(e) => {
                tracing::error!(notification = %n.key, error = %e, "notification failed for good");
                None
            }
        };
        st.store.notification_attempt(n.id, result.as_ref().map(|_| ()).map_err(String::as_str), retry_at, now).await?;
    }
    Ok(attempted)
}

async fn webhook(st: &Services, n: &repli_store::Notification) -> Result<(), String> {
    let Some(url) = st.config.notify.webhook_url.as_deref() else { return Err("no webhook_url configured".into()) };
    let body = json!({ "key": n.key, "crisis": n.crisis, "subject": n.subject, "body": n.body });
    match st.http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("webhook answered HTTP {}", r.status().as_u16())),
        // Without the URL: it may carry a token in its query.
        Err(e) => Err(format!("webhook unreachable: {}", e.without_url())),
    }
}

async fn smtp(st: &Services, n: &repli_store::Notification) -> Result<(), String> {
    use crate::config::SmtpSecurity;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let Some(cfg) = st.config.notify.smtp.as_ref() else { return Err("no [notify.smtp] configured".into()) };
    let mut builder = match cfg.security {
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host).map_err(|e| e.to_string())?
        }
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| e.to_string())?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
    };
    builder = builder.port(cfg.port).timeout(Some(std::time::Duration::from_secs(15)));
    let password = crate::config::secret(cfg.password_file.as_deref(), "REPLI_SMTP_PASSWORD")?;
    if let (Some(user), Some(password)) = (&cfg.username, password) {
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let to = recipients(n, &cfg.to)?;
    let message = mail(cfg, n, &to, st.clock.now())?;
    builder.build().send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
}

/// The mail of a notification: MIME 1.0, one `text/plain; charset=utf-8` part whose transfer
/// encoding lettre picks for the text (quoted-printable or base64: « é » arrives as « é »),
/// `Date` from our clock, and a `Message-ID` fixed by the row, so a mail sent again after a
/// crash mid-send is the same message to the reader's client.
pub fn mail(
    cfg: &crate::config::SmtpConfig,
    n: &repli_store::Notification,
    to: &[&str],
    now: Timestamp,
) -> Result<lettre::Message, String> {
    use lettre::message::{Mailbox, SinglePart};
    let from: Mailbox = cfg.from.parse().map_err(|e| format!("notify.smtp.from: {e}"))?;
    let domain = from.email.domain().to_owned();
    let id = {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(format!("{}\u{0}{}\u{0}{}", n.id, n.key, n.channel).as_bytes());
        format!("<repli.{}.{}@{domain}>", n.id, hex::encode(&h[..8]))
    };
    let mut message = lettre::Message::builder()
        .from(from)
        .subject(format!("[Repli] {}", n.subject))
        .date(std::time::SystemTime::from(now))
        .message_id(Some(id));
    for to in to {
        message = message.to(to.parse().map_err(|_| "an address of notify.smtp.to or of the contact is invalid")?);
    }
    message.singlepart(SinglePart::plain(format!("{}\n\n{}\n", n.subject, n.body))).map_err(|e| e.to_string())
}

/// Who a notification goes to: its own recipient, or else the channel's ops recipients (rows
/// queued before recipients were written out, and an exercise's rows with no address).
fn recipients<'a>(n: &'a repli_store::Notification, ops: &'a [String]) -> Result<Vec<&'a str>, String> {
    let list: Vec<&str> = match &n.recipient {
        Some(r) => vec![r.as_str()],
        None => ops.iter().map(String::as_str).collect(),
    };
    if list.is_empty() {
        return Err(format!("no recipient: notify.{}.to is empty", n.channel));
    }
    Ok(list)
}

/// Longest SMS text sent: four concatenated parts of 153 GSM characters.
pub const SMS_MAX_CHARS: usize = 612;

/// An SMS's text: the body, prefixed, cut at [`SMS_MAX_CHARS`] on a character boundary.
pub fn sms_text(n: &repli_store::Notification) -> String {
    let text = if n.audience == "dgs" {
        format!("Repli : {}", n.body)
    } else {
        format!("Repli : {} — {}", n.subject, n.body)
    };
    if text.chars().count() <= SMS_MAX_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SMS_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

async fn sms(st: &Services, n: &repli_store::Notification) -> Result<(), String> {
    let Some(cfg) = st.config.notify.sms.as_ref() else { return Err("no [notify.sms] configured".into()) };
    let token = crate::config::secret(cfg.token_file.as_deref(), "REPLI_SMS_TOKEN")?;
    let text = sms_text(n);
    for to in recipients(n, &cfg.to)? {
        let mut req = st.http.post(&cfg.url).json(&json!({ "to": to, "from": cfg.sender, "text": text }));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => return Err(format!("SMS gateway answered HTTP {}", r.status().as_u16())),
            // Without the URL: it may carry a key in its query.
            Err(e) => return Err(format!("SMS gateway unreachable: {}", e.without_url())),
        }
    }
    Ok(())
}

/// The channels that reach the commune's DGS directly: SMS when a gateway is configured,
/// e-mail when a relay is (and the contact gave an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DgsChannels {
    pub sms: bool,
    pub email: bool,
}

pub fn dgs_channels(st: &Services) -> DgsChannels {
    DgsChannels { sms: st.config.notify.sms.is_some(), email: st.config.notify.smtp.is_some() }
}

/// Queues a message for the crisis's out-of-band contact: an SMS to the phone and an e-mail to
/// the address, as configured, and a copy to ops on their channels (they relay it by phone
/// when neither channel exists). Returns how many notifications were new.
pub async fn to_dgs(
    st: &Services,
    r: &repli_store::CrisisRecord,
    key: &str,
    message: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let direct = dgs_channels(st);
    let subject = format!("Crise {} ({})", r.id, r.commune_name);
    let mut queued = Vec::new();
    if direct.sms {
        queued.push((Channel::Sms, Some(r.contact_phone.as_str())));
    }
    if direct.email
        && let Some(mail) = r.contact_email.as_deref()
    {
        queued.push((Channel::Smtp, Some(mail)));
    }
    let copy_subject = if queued.is_empty() {
        format!("À transmettre à {} ({}) — crise {}", r.contact_name, fr::phone(&r.contact_phone), r.id)
    } else {
        format!("Envoyé à {} — crise {}", r.contact_name, r.id)
    };
    let mut new = 0;
    for (channel, to) in &queued {
        let n = NewNotification {
            key,
            channel: channel.as_str(),
            crisis: Some(r.id.as_str()),
            recipient: *to,
            audience: "dgs",
            subject: &subject,
            body: message,
        };
        new += usize::from(st.store.enqueue_notification(&n, now).await?);
    }
    // The ops copy has its own key: the same channel (smtp) may carry both. When the DGS was
    // reached directly, the copy goes to the log alone (the crisis page shows what was sent):
    // ops' phones ring only for what they must relay.
    let copy_key = format!("{key}:ops");
    if queued.is_empty() {
        new += to_ops(st, r, &copy_key, &copy_subject, message, now).await?;
    } else if st.config.notify.channels.contains(&Channel::Log) {
        let n = NewNotification {
            key: &copy_key,
            channel: Channel::Log.as_str(),
            crisis: Some(r.id.as_str()),
            recipient: None,
            audience: "ops",
            subject: &copy_subject,
            body: message,
        };
        new += usize::from(st.store.enqueue_notification(&n, now).await?);
    }
    Ok(new)
}

/// Ops send a failed notification again (it is delivered at once, then retried as usual).
pub async fn retry(st: &Services, a: &Actor, id: i64) -> Result<(), crate::AppError> {
    let now = st.clock.now();
    if !st.store.retry_notification(id, a, now).await? {
        return Err(crate::AppError::problem(
            repli_proto::ProblemCode::NotificationConflict,
            "Seule une notification en échec peut être renvoyée.",
        ));
    }
    // Awaited: ops see the outcome of their resend on the page they come back to.
    if let Err(e) = deliver(st, now).await {
        tracing::warn!(error = %e, "notification delivery deferred");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(recipient: Option<&str>, body: &str) -> repli_store::Notification {
        repli_store::Notification {
            id: 1,
            key: "k".into(),
            channel: "sms".into(),
            crisis: None,
            recipient: recipient.map(str::to_owned),
            audience: if recipient.is_some() { "dgs" } else { "ops" }.into(),
            subject: "Crise 13005-2026-001 (Aubagne)".into(),
            body: body.into(),
            status: "pending".into(),
            attempts: 0,
            next_attempt_at: Timestamp::UNIX_EPOCH,
            last_error: None,
            created_at: Timestamp::UNIX_EPOCH,
            sent_at: None,
        }
    }

    #[test]
    fn sms_texts_are_prefixed_and_cut_on_a_character() {
        assert_eq!(sms_text(&notification(Some("+33612345678"), "Le kit est prêt.")), "Repli : Le kit est prêt.");
        let ops = sms_text(&notification(None, "50 % écoulés."));
        assert_eq!(ops, "Repli : Crise 13005-2026-001 (Aubagne) — 50 % écoulés.", "ops get the subject too");
        let long = sms_text(&notification(Some("+33612345678"), &"é".repeat(2000)));
        assert_eq!(long.chars().count(), SMS_MAX_CHARS);
        assert!(long.ends_with('…'));
    }
}
