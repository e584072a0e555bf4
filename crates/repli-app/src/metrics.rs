//! Supervision metrics in the Prometheus / OpenMetrics text format (`GET /metrics`).
//!
//! Most figures are read from the database at each scrape ([`repli_store::Tallies`]): they
//! survive a restart and cannot disagree with what the pages show. What only the process knows
//! — Graph calls, sign-in failures — is counted in memory ([`Telemetry`], the M365 adapter's
//! `CallStats`) and starts again at zero with the process, as Prometheus counters may.
//! A registry is built per scrape: no global recorder, so several daemons in one test process
//! keep their figures apart.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use repli_core::SlaStatus;

use crate::{AppError, Services, crises};

/// The media type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Step duration buckets, in seconds: from a Graph call to a manual step done the next day.
const STEP_BUCKETS: [f64; 12] =
    [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4.0 * 3600.0, 12.0 * 3600.0, 86_400.0, 2.0 * 86_400.0];

const SLA_STATUSES: [SlaStatus; 7] = [
    SlaStatus::OnTrack,
    SlaStatus::AtRisk,
    SlaStatus::Suspended,
    SlaStatus::Breached,
    SlaStatus::Met,
    SlaStatus::MetLate,
    SlaStatus::NotApplicable,
];

/// The status as the API spells it (a new status fails to compile here, and goes in the list
/// above).
fn sla_label(s: SlaStatus) -> &'static str {
    match s {
        SlaStatus::OnTrack => "on_track",
        SlaStatus::AtRisk => "at_risk",
        SlaStatus::Suspended => "suspended",
        SlaStatus::Breached => "breached",
        SlaStatus::Met => "met",
        SlaStatus::MetLate => "met_late",
        SlaStatus::NotApplicable => "not_applicable",
    }
}

/// How a caller failed to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    /// A wrong login or password on the sign-in page.
    Password,
    /// A login refused because of too many failures (throttled).
    Throttled,
    /// An API token that is malformed, unknown, revoked or expired.
    Token,
    /// A session cookie that is malformed, unknown or expired.
    Session,
    /// A wrong, replayed or unreadable second factor (TOTP or recovery code).
    SecondFactor,
}

impl SignInFailure {
    const ALL: [SignInFailure; 5] = [Self::Password, Self::Throttled, Self::Token, Self::Session, Self::SecondFactor];

    fn label(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Throttled => "throttled",
            Self::Token => "token",
            Self::Session => "session",
            Self::SecondFactor => "second_factor",
        }
    }
}

/// What the process counts in memory.
#[derive(Debug, Default)]
pub struct Telemetry {
    sign_in_failures: [AtomicU64; 5],
    /// Scheduled snapshots taken, and failed ([`crate::backup::scheduled`]).
    backups: [AtomicU64; 2],
    /// When the last scheduled snapshot was taken (Unix seconds; 0: none yet).
    last_backup: std::sync::atomic::AtomicI64,
}

impl Telemetry {
    pub fn sign_in_failed(&self, how: SignInFailure) {
        self.sign_in_failures[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn sign_in_failures(&self, how: SignInFailure) -> u64 {
        self.sign_in_failures[how as usize].load(Ordering::Relaxed)
    }

    /// Counts a scheduled snapshot, taken at `at` or failed.
    pub fn backup(&self, taken_at: Option<jiff::Timestamp>) {
        self.backups[usize::from(taken_at.is_none())].fetch_add(1, Ordering::Relaxed);
        if let Some(at) = taken_at {
            self.last_backup.store(at.as_second(), Ordering::Relaxed);
        }
    }

    /// Scheduled snapshots taken and failed since start.
    pub fn backups(&self) -> (u64, u64) {
        (self.backups[0].load(Ordering::Relaxed), self.backups[1].load(Ordering::Relaxed))
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn counter_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS)
}

/// Every metric, read now.
pub async fn render(st: &Services) -> Result<String, AppError> {
    let tallies = st.store.tallies().await?;
    let sla = crises::sla_report(st).await?;
    let now = st.clock.now();
    let mut reg = Registry::with_prefix("repli");

    let crises = gauge_family(&mut reg, "crises", "Crises by state");
    // Every state and status is written, at 0 when none: an alert sees 0, not an absent series.
    for state in repli_core::CrisisState::ALL {
        crises.get_or_create(&vec![("state", state.as_str().to_owned())]).set(0);
    }
    for (state, n) in &tallies.crises_by_state {
        crises.get_or_create(&vec![("state", state.clone())]).set(*n);
    }

    let sla_status = gauge_family(
        &mut reg,
        "sla_crises",
        "Crises by SLA status (on_track, at_risk, suspended, breached while running; met, met_late once ready)",
    );
    for status in SLA_STATUSES {
        sla_status.get_or_create(&vec![("status", sla_label(status).to_owned())]).set(0);
    }
    for line in &sla {
        sla_status.get_or_create(&vec![("status", sla_label(line.status).to_owned())]).inc();
    }

    let steps = gauge_family(&mut reg, "steps", "Playbook steps by kind and state (failed: given up after retries)");
    let retries = counter_family(&mut reg, "step_retries", "Step attempts beyond the first, by kind");
    for t in &tallies.steps {
        steps.get_or_create(&vec![("kind", t.kind.clone()), ("state", t.state.clone())]).set(t.count);
        // Sums of non-negative columns (SUM(MAX(attempts - 1, 0)), SUM(attempts)): never negative,
        // and a metrics scrape reports what it can rather than failing.
        retries.get_or_create(&vec![("kind", t.kind.clone())]).inc_by(u64::try_from(t.retries).unwrap_or(0));
    }
    let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(step_histogram);
    reg.register(
        "step_duration_seconds",
        "Finished steps (succeeded or failed): time from their first start to their end, by kind",
        durations.clone(),
    );
    for (kind, secs) in &tallies.step_durations {
        durations.get_or_create(&vec![("kind", kind.clone())]).observe(*secs);
    }

    let notifications =
        gauge_family(&mut reg, "notifications", "Notifications by channel and delivery status (pending, sent, failed)");
    let attempts = counter_family(&mut reg, "notification_attempts", "Delivery attempts, by channel");
    // Every channel and status at 0 first: an alert on failures sees 0, not an absent series.
    for channel in repli_config::Channel::ALL {
        for status in ["pending", "sent", "failed"] {
            notifications
                .get_or_create(&vec![("channel", channel.as_str().to_owned()), ("status", status.to_owned())])
                .set(0);
        }
        attempts.get_or_create(&vec![("channel", channel.as_str().to_owned())]).inc_by(0);
    }
    for n in &tallies.notifications {
        notifications.get_or_create(&vec![("channel", n.channel.clone()), ("status", n.status.clone())]).set(n.count);
        attempts.get_or_create(&vec![("channel", n.channel.clone())]).inc_by(u64::try_from(n.attempts).unwrap_or(0));
    }

    // The storage, as the writer saw it (in memory: a database that cannot be written to can
    // still be read, and these say why writes fail).
    counter(
        &mut reg,
        "store_write_failures",
        "Database write transactions that failed (begin or commit refused: disk full, I/O, busy); nothing of them was kept",
        st.store.write_failures(),
    );
    gauge(
        &mut reg,
        "store_write_fault",
        "1 while the last database write failed and none has committed since",
        i64::from(st.store.write_fault().is_some()),
    );
    gauge(
        &mut reg,
        "store_writes_stopped",
        "1 while writes are refused because the audit chain did not verify",
        i64::from(st.store.writes_stopped().is_some()),
    );
    if let Ok(free) = st.store.free_bytes() {
        gauge(
            &mut reg,
            "store_free_bytes",
            "Bytes free on the database's filesystem",
            i64::try_from(free).unwrap_or(i64::MAX),
        );
    }
    gauge(
        &mut reg,
        "store_min_free_bytes",
        "The configured minimum free space (database.min_free_mb)",
        i64::try_from(st.config.database.min_free_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX),
    );

    let calls = st.m365.stats();
    counter(
        &mut reg,
        "graph_http_calls",
        "HTTP requests sent to Microsoft Graph (a $batch counts once)",
        calls.http_calls,
    );
    counter(&mut reg, "graph_requests", "Graph requests, each request of a $batch counted", calls.graph_requests);
    counter(
        &mut reg,
        "graph_throttled",
        "Graph answers that were 429 (or batches with throttled items)",
        calls.throttled,
    );
    counter(&mut reg, "graph_retries", "Graph requests sent again (throttled, failed or dropped)", calls.retries);
    let preflight = crate::preflight::last(st).map(|run| i64::from(run.report.ok));
    if let Some(ok) = preflight {
        gauge(&mut reg, "m365_preflight_ok", "1 when the last Microsoft 365 preflight passed, 0 when it failed", ok);
    }

    gauge(&mut reg, "audit_entries", "Entries in the audit log", tallies.audit_entries);
    gauge(&mut reg, "audit_last_seq", "Sequence number of the last audit entry", tallies.audit_last_seq);
    let (cp_seq, cp_age) = match tallies.last_checkpoint {
        Some((seq, at)) => (seq, now.duration_since(at).as_secs().max(0)),
        None => (0, 0),
    };
    gauge(
        &mut reg,
        "audit_checkpoint_seq",
        "Sequence number covered by the last signed checkpoint (0: none yet)",
        cp_seq,
    );
    gauge(
        &mut reg,
        "audit_unsigned_entries",
        "Audit entries after the last signed checkpoint",
        tallies.audit_last_seq - cp_seq,
    );
    gauge(&mut reg, "audit_checkpoint_age_seconds", "Seconds since the last signed checkpoint (0: none yet)", cp_age);

    let sign_in = counter_family(
        &mut reg,
        "sign_in_failures",
        "Refused credentials: password (wrong login or password), throttled, token, session",
    );
    for how in SignInFailure::ALL {
        sign_in.get_or_create(&vec![("method", how.label().to_owned())]).inc_by(st.telemetry.sign_in_failures(how));
    }

    let backups =
        counter_family(&mut reg, "scheduled_backups", "Scheduled snapshots since start, by result (ok, failed)");
    let (ok, failed) = st.telemetry.backups();
    backups.get_or_create(&vec![("result", "ok".to_owned())]).inc_by(ok);
    backups.get_or_create(&vec![("result", "failed".to_owned())]).inc_by(failed);
    gauge(
        &mut reg,
        "last_backup_timestamp_seconds",
        "When the last scheduled snapshot was taken (Unix seconds; 0: none since start)",
        st.telemetry.last_backup.load(Ordering::Relaxed),
    );

    let mut out = String::new();
    encode(&mut out, &reg).map_err(|e| AppError::Internal(format!("metrics encoding: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_labels_are_the_wire_names() {
        for s in SLA_STATUSES {
            assert_eq!(serde_json::to_value(s).unwrap(), sla_label(s));
        }
    }
}
