//! The SLA of a crisis: the kit is ready within N business hours of an eligible request.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::calendar::{BusinessCalendar, CalendarError};

/// Business hours promised by the deliberation (« délai de maximum 48h en heures ouvrées »).
pub const DEFAULT_BUSINESS_HOURS: u32 = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    /// Running, the projected ready instant is before the due instant.
    OnTrack,
    /// Running, the projected ready instant passes the due instant: act before the breach.
    AtRisk,
    /// Paused while waiting on the commune.
    Suspended,
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
            Self::AtRisk => "à risque",
            Self::Suspended => "suspendu",
            Self::Breached => "délai dépassé",
            Self::Met => "respecté",
            Self::MetLate => "livré en retard",
            Self::NotApplicable => "sans objet",
        }
    }
}

/// A pause of the clock while waiting on the commune (`end` is `None` while it lasts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspension {
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

/// Everything the SLA of one crisis depends on.
#[derive(Debug, Clone, Copy)]
pub struct SlaInput<'a> {
    pub started: Timestamp,
    pub business_hours: u32,
    /// In start order.
    pub suspensions: &'a [Suspension],
    pub ready_at: Option<Timestamp>,
    /// Rejected or cancelled.
    pub ended: bool,
    /// Business time the remaining work is estimated to take, for the forecast.
    pub remaining_work: SignedDuration,
}

/// The SLA of one crisis at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaView {
    pub status: SlaStatus,
    /// The due instant: start + N business hours, pushed back by the suspended business time
    /// that fell before it.
    pub due: Timestamp,
    /// Business time left until the due instant (zero once past or stopped).
    pub remaining: SignedDuration,
    /// Business time used, suspensions excluded (until ready, once ready).
    pub elapsed: SignedDuration,
    /// Business time the clock was suspended.
    pub suspended: SignedDuration,
    /// When the kit should be ready at the estimated pace (running crises only).
    pub projected_ready: Option<Timestamp>,
}

/// Evaluates the SLA of a crisis at `now`.
pub fn evaluate(cal: &BusinessCalendar, input: &SlaInput<'_>, now: Timestamp) -> Result<SlaView, CalendarError> {
    let stop = input.ready_at.unwrap_or(now);
    let mut due = cal.add_hours(input.started, input.business_hours)?;
    let mut suspended = SignedDuration::ZERO;
    let mut paused_now = false;
    for s in input.suspensions {
        if s.start >= due || s.start > stop {
            // A pause after the due instant cannot undo a breach.
            continue;
        }
        let end = s.end.unwrap_or(now).min(stop).max(s.start);
        let paused = cal.business_time_between(s.start, end)?;
        due = cal.add(due, paused)?;
        suspended += paused;
        paused_now |= s.end.is_none() && input.ready_at.is_none();
    }
    let elapsed = cal.business_time_between(input.started, stop)? - suspended;
    let running = input.ready_at.is_none() && !input.ended;
    let remaining = if running { cal.business_time_between(now, due)? } else { SignedDuration::ZERO };
    let projected_ready =
        if running { Some(cal.add(now, input.remaining_work.max(SignedDuration::ZERO))?) } else { None };
    let status = match input.ready_at {
        Some(r) if r <= due => SlaStatus::Met,
        Some(_) => SlaStatus::MetLate,
        None if input.ended => SlaStatus::NotApplicable,
        None if now > due => SlaStatus::Breached,
        None if paused_now => SlaStatus::Suspended,
        None if projected_ready.is_some_and(|p| p > due) => SlaStatus::AtRisk,
        None => SlaStatus::OnTrack,
    };
    Ok(SlaView { status, due, remaining, elapsed, suspended, projected_ready })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris(s: &str) -> Timestamp {
        format!("{s}[Europe/Paris]").parse::<jiff::Zoned>().unwrap().timestamp()
    }

    fn input(started: Timestamp, suspensions: &[Suspension], ready_at: Option<Timestamp>, ended: bool) -> SlaInput<'_> {
        SlaInput {
            started,
            business_hours: 48,
            suspensions,
            ready_at,
            ended,
            remaining_work: SignedDuration::from_hours(8),
        }
    }

    #[test]
    fn statuses() {
        let cal = BusinessCalendar::french_default().unwrap();
        let start = paris("2026-05-13T10:00");
        let v = evaluate(&cal, &input(start, &[], None, false), paris("2026-05-13T12:00")).unwrap();
        assert_eq!((v.status, v.due), (SlaStatus::OnTrack, paris("2026-05-20T18:00")));
        assert_eq!(v.elapsed, SignedDuration::from_hours(2));
        assert_eq!(v.remaining, SignedDuration::from_hours(46));
        assert_eq!(v.projected_ready, Some(paris("2026-05-15T10:00")));
        // Tuesday 19 May 12:00: 16 h left for 8 h of work; Wednesday 12:00: 6 h left, at risk
        // before the breach.
        let v = evaluate(&cal, &input(start, &[], None, false), paris("2026-05-19T12:00")).unwrap();
        assert_eq!(v.status, SlaStatus::OnTrack);
        let v = evaluate(&cal, &input(start, &[], None, false), paris("2026-05-20T12:00")).unwrap();
        assert_eq!(v.status, SlaStatus::AtRisk);
        let v = evaluate(&cal, &input(start, &[], None, false), paris("2026-05-21T09:00")).unwrap();
        assert_eq!((v.status, v.remaining), (SlaStatus::Breached, SignedDuration::ZERO));
        let v = evaluate(&cal, &input(start, &[], Some(paris("2026-05-15T09:00")), false), paris("2026-06-01T09:00"))
            .unwrap();
        assert_eq!((v.status, v.elapsed, v.projected_ready), (SlaStatus::Met, SignedDuration::from_hours(9), None));
        let v = evaluate(&cal, &input(start, &[], Some(paris("2026-05-21T09:00")), false), paris("2026-06-01T09:00"))
            .unwrap();
        assert_eq!(v.status, SlaStatus::MetLate);
        let v = evaluate(&cal, &input(start, &[], None, true), paris("2026-06-01T09:00")).unwrap();
        assert_eq!(v.status, SlaStatus::NotApplicable);
    }

    #[test]
    fn suspensions_push_the_due_instant_back() {
        let cal = BusinessCalendar::french_default().unwrap();
        let start = paris("2026-05-13T10:00");
        // Waiting on the agents list from Wed 13:00 to Fri 15 11:00: 5 h + 3 h = 8 h paused.
        let s = [Suspension { start: paris("2026-05-13T13:00"), end: Some(paris("2026-05-15T11:00")) }];
        let v = evaluate(&cal, &input(start, &s, None, false), paris("2026-05-15T12:00")).unwrap();
        assert_eq!(v.suspended, SignedDuration::from_hours(8));
        assert_eq!(v.elapsed, SignedDuration::from_hours(4));
        assert_eq!(v.due, paris("2026-05-21T16:00"), "Wed 20 18:00 + 8 business hours");
        // Suspended this very instant: already suspended.
        let now_s = [Suspension { start: paris("2026-05-13T13:00"), end: None }];
        let v = evaluate(&cal, &input(start, &now_s, None, false), paris("2026-05-13T13:00")).unwrap();
        assert_eq!(v.status, SlaStatus::Suspended);
        // Still waiting: suspended, and the due instant moves with the clock.
        let open = [Suspension { start: paris("2026-05-13T13:00"), end: None }];
        let v = evaluate(&cal, &input(start, &open, None, false), paris("2026-05-14T12:00")).unwrap();
        assert_eq!(v.status, SlaStatus::Suspended);
        assert_eq!(v.elapsed, SignedDuration::from_hours(3));
        // A pause after the breach does not undo it.
        let late = [Suspension { start: paris("2026-05-21T09:00"), end: None }];
        let v = evaluate(&cal, &input(start, &late, None, false), paris("2026-05-22T09:00")).unwrap();
        assert_eq!(v.status, SlaStatus::Breached);
    }
}
