//! Notifications to ops: SLA escalations (each threshold once per crisis) and legal reminders
//! (24 h and 6 h before each deadline), through channels that work while the commune's mail is
//! down. Queued in the database, delivered and retried with backoff by the maintenance round.

use jiff::{SignedDuration, Timestamp};
use repli_core::{fr, legal};
use repli_store::{CrisisFilter, StoreError};
use serde_json::json;

use crate::config::Channel;
use crate::{Services, views};

/// Queues what has become due; returns how many notifications were new.
pub async fn queue(st: &Services, now: Timestamp) -> Result<usize, StoreError> {
    let tz = st.calendar.time_zone().clone();
    let mut new = 0;
    let facts = st.store.crisis_facts_all().await?;
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
        for (key, subject, body) in due {
            for channel in &st.config.notify.channels {
                if st
                    .store
                    .enqueue_notification(&key, channel.as_str(), Some(r.id.as_str()), &subject, &body, now)
                    .await?
                {
                    new += 1;
                }
            }
        }
    }
    Ok(new)
}

/// Sends due notifications; returns how many attempts were made.
pub async fn deliver(st: &Services, now: Timestamp) -> Result<usize, StoreError> {
    let due = st.store.due_notifications(now).await?;
    for n in &due {
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
    Ok(due.len())
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

/// The SMTP password: from `password_file`, or REPLI_SMTP_PASSWORD.
fn smtp_password(cfg: &crate::config::SmtpConfig) -> Result<Option<String>, String> {
    if let Some(p) = &cfg.password_file {
        return std::fs::read_to_string(p)
            .map(|s| Some(s.trim_end().to_owned()))
            .map_err(|e| format!("cannot read the SMTP password file: {e}"));
    }
    Ok(std::env::var("REPLI_SMTP_PASSWORD").ok())
}

async fn smtp(st: &Services, n: &repli_store::Notification) -> Result<(), String> {
    use crate::config::SmtpSecurity;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let Some(cfg) = st.config.notify.smtp.as_ref() else { return Err("no [notify.smtp] configured".into()) };
    let mut builder = match cfg.security {
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host).map_err(|e| e.to_string())?
        }
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| e.to_string())?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
    };
    builder = builder.port(cfg.port).timeout(Some(std::time::Duration::from_secs(15)));
    if let (Some(user), Some(password)) = (&cfg.username, smtp_password(cfg)?) {
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let mut message = Message::builder()
        .from(cfg.from.parse().map_err(|e| format!("notify.smtp.from: {e}"))?)
        .subject(format!("[Repli] {}", n.subject));
    for to in &cfg.to {
        message = message.to(to.parse().map_err(|e| format!("notify.smtp.to: {e}"))?);
    }
    let message = message.body(format!("{}\n\n{}\n", n.subject, n.body)).map_err(|e| e.to_string())?;
    builder.build().send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
}
