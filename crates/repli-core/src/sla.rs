//! The SLA of a crisis: the kit is ready within N business hours of an eligible request.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::calendar::{BusinessCalendar, CalendarError};

/// Business hours promised by the deliberation (« délai de maximum 48h en heures ouvrées »).
pub const DEFAULT_BUSINESS_HOURS: u32 = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    /// Running, due instant not passed.
    OnTrack,
    /// Running, past the due instant.
    Breached,
    /// The kit was ready on time.
    Met,
    /// The kit was ready, late.
    MetLate,
    /// Rejected or cancelled before the kit was ready: no SLA applies.
    NotApplicable,
}

impl SlaStatus {
    pub fn label_fr(self) -> &'static str {
        match self {
            Self::OnTrack => "dans les délais",
            Self::Breached => "délai dépassé",
            Self::Met => "respecté",
            Self::MetLate => "livré en retard",
            Self::NotApplicable => "sans objet",
        }
    }
}

/// The SLA of one crisis at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaView {
    pub status: SlaStatus,
    /// Business time left until the due instant (zero once past or stopped).
    pub remaining: SignedDuration,
    /// Business time used from the start until `ready_at`, or until `now` while running.
    pub elapsed: SignedDuration,
}

/// Evaluates the SLA: `ended` is true when the crisis was rejected or cancelled.
pub fn evaluate(
    cal: &BusinessCalendar,
    started: Timestamp,
    due: Timestamp,
    ready_at: Option<Timestamp>,
    ended: bool,
    now: Timestamp,
) -> Result<SlaView, CalendarError> {
    let stop = ready_at.unwrap_or(now);
    let elapsed = cal.business_time_between(started, stop)?;
    let status = match ready_at {
        Some(r) if r <= due => SlaStatus::Met,
        Some(_) => SlaStatus::MetLate,
        None if ended => SlaStatus::NotApplicable,
        None if now > due => SlaStatus::Breached,
        None => SlaStatus::OnTrack,
    };
    let remaining =
        if ready_at.is_some() || ended { SignedDuration::ZERO } else { cal.business_time_between(now, due)? };
    Ok(SlaView { status, remaining, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris(s: &str) -> Timestamp {
        format!("{s}[Europe/Paris]").parse::<jiff::Zoned>().unwrap().timestamp()
    }

    #[test]
    fn statuses() {
        let cal = BusinessCalendar::french_default().unwrap();
        let start = paris("2026-05-13T10:00");
        let due = cal.add_hours(start, 48).unwrap();
        let v = evaluate(&cal, start, due, None, false, paris("2026-05-13T12:00")).unwrap();
        assert_eq!(v.status, SlaStatus::OnTrack);
        assert_eq!(v.elapsed, SignedDuration::from_hours(2));
        assert_eq!(v.remaining, SignedDuration::from_hours(46));
        let v = evaluate(&cal, start, due, None, false, paris("2026-05-21T09:00")).unwrap();
        assert_eq!(v.status, SlaStatus::Breached);
        assert_eq!(v.remaining, SignedDuration::ZERO);
        let v = evaluate(&cal, start, due, Some(paris("2026-05-15T09:00")), false, paris("2026-06-01T09:00")).unwrap();
        assert_eq!((v.status, v.elapsed), (SlaStatus::Met, SignedDuration::from_hours(9)));
        let v = evaluate(&cal, start, due, Some(paris("2026-05-21T09:00")), false, paris("2026-06-01T09:00")).unwrap();
        assert_eq!(v.status, SlaStatus::MetLate);
        let v = evaluate(&cal, start, due, None, true, paris("2026-06-01T09:00")).unwrap();
        assert_eq!(v.status, SlaStatus::NotApplicable);
    }
}
