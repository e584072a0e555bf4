//! A crisis: one kit loan to one commune, from the DGS's request to the closure of the hand-back.
//!
//! ```text
//! requested ─activate→ activated ─start_provisioning→ provisioning ─mark_ready→ ready
//!     │                    │                                                   │  │
//!   reject              cancel                                     deliver ───┘  │ start_handback
//!     ↓                    ↓                                          ↓           ↓
//!  rejected            cancelled              delivered ─start_handback→ handback ─close→ closed
//! ```
//! `cancel` is allowed while nothing has been provisioned (requested, activated); once
//! accounts or equipment exist, the way out is the hand-back, which winds them down.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::insee::InseeCode;

/// Most agents one request may declare.
pub const MAX_AGENTS: u32 = 500;

/// The states of a crisis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrisisState {
    Requested,
    Activated,
    Provisioning,
    Ready,
    Delivered,
    Handback,
    Closed,
    Rejected,
    Cancelled,
}

impl CrisisState {
    pub const ALL: [CrisisState; 9] = [
        Self::Requested,
        Self::Activated,
        Self::Provisioning,
        Self::Ready,
        Self::Delivered,
        Self::Handback,
        Self::Closed,
        Self::Rejected,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Activated => "activated",
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Delivered => "delivered",
            Self::Handback => "handback",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// French label of the crisis's state, for what a DGS reads (« la crise est à l'état
    /// « activée » », « État : kit prêt »): agreed with « crise », feminine.
    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Requested => "demandée",
            Self::Activated => "activée",
            Self::Provisioning => "en préparation",
            Self::Ready => "kit prêt",
            Self::Delivered => "kit livré",
            Self::Handback => "en restitution",
            Self::Closed => "clôturée",
            Self::Rejected => "refusée",
            Self::Cancelled => "annulée",
        }
    }

    /// A crisis is open until it is closed, rejected or cancelled. A commune has at most one
    /// open crisis at a time.
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Closed | Self::Rejected | Self::Cancelled)
    }

    /// Whether the kit is (being) prepared or in the commune's hands: the SLA clock stops at
    /// `ready`.
    pub fn is_ready_or_later(self) -> bool {
        matches!(self, Self::Ready | Self::Delivered | Self::Handback | Self::Closed)
    }
}

impl fmt::Display for CrisisState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a crisis state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown crisis state")]
pub struct UnknownState;

impl FromStr for CrisisState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or(UnknownState)
    }
}

/// What moves a crisis from one state to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CrisisAction {
    Activate,
    StartProvisioning,
    MarkReady,
    Deliver,
    StartHandback,
    Close,
    Reject,
    Cancel,
}

impl CrisisAction {
    pub const ALL: [CrisisAction; 8] = [
        Self::Activate,
        Self::StartProvisioning,
        Self::MarkReady,
        Self::Deliver,
        Self::StartHandback,
        Self::Close,
        Self::Reject,
        Self::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::StartProvisioning => "start_provisioning",
            Self::MarkReady => "mark_ready",
            Self::Deliver => "deliver",
            Self::StartHandback => "start_handback",
            Self::Close => "close",
            Self::Reject => "reject",
            Self::Cancel => "cancel",
        }
    }

    /// What the action is called in French, for people (never the code `start_handback`).
    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Activate => "activer",
            Self::StartProvisioning => "préparer le kit",
            Self::MarkReady => "déclarer le kit prêt",
            Self::Deliver => "livrer le kit",
            Self::StartHandback => "commencer la restitution",
            Self::Close => "clôturer",
            Self::Reject => "refuser",
            Self::Cancel => "annuler",
        }
    }

    /// Refusing or abandoning a loan, and opening its hand-back, must say why (the reason is
    /// audited with the transition).
    pub fn requires_reason(self) -> bool {
        matches!(self, Self::Reject | Self::Cancel | Self::StartHandback)
    }

    /// Whether this action can undo a kit (what it does then depends on the state: see
    /// [`CrisisAction::destructive`]).
    pub fn undoes_kit(self) -> bool {
        matches!(self, Self::StartHandback | Self::Cancel)
    }

    /// Whether taking this action from `from` undoes a kit: then it is confirmed first.
    pub fn destructive(self, from: CrisisState) -> Option<crate::Destructive> {
        use crate::Destructive as D;
        match (self, from) {
            (Self::StartHandback, _) => Some(D::StartHandback),
            (Self::Cancel, CrisisState::Requested) => Some(D::Cancel),
            (Self::Cancel, _) => Some(D::CancelProvisioned),
            _ => None,
        }
    }

    /// The state this action leads to from `from`, or why it cannot be taken.
    pub fn apply(self, from: CrisisState) -> Result<CrisisState, TransitionError> {
        use CrisisAction as A;
        use CrisisState as S;
        let to = match (self, from) {
            (A::Activate, S::Requested) => S::Activated,
            (A::StartProvisioning, S::Activated) => S::Provisioning,
            (A::MarkReady, S::Provisioning) => S::Ready,
            (A::Deliver, S::Ready) => S::Delivered,
            (A::StartHandback, S::Ready | S::Delivered) => S::Handback,
            (A::Close, S::Handback) => S::Closed,
            (A::Reject, S::Requested) => S::Rejected,
            // While the kit is prepared, a false alarm can still be called off: the engine then
            // winds down what was provisioned (the hand-back playbook).
            (A::Cancel, S::Requested | S::Activated | S::Provisioning) => S::Cancelled,
            _ => return Err(TransitionError::Illegal { action: self, from }),
        };
        Ok(to)
    }

    /// Checks the action and its reason together: the one entry point the store uses.
    pub fn check(self, from: CrisisState, reason: Option<&str>) -> Result<CrisisState, TransitionError> {
        let to = self.apply(from)?;
        if self.requires_reason() && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(TransitionError::ReasonRequired { action: self });
        }
        Ok(to)
    }
}

impl fmt::Display for CrisisAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("action « {} » impossible : la crise est à l'état « {} »", action.label_fr(), from.label_fr())]
    Illegal { action: CrisisAction, from: CrisisState },
    #[error("l'action « {} » exige un motif", action.label_fr())]
    ReasonRequired { action: CrisisAction },
}

/// A crisis identifier, readable over the phone: `{INSEE}-{year}-{nnn}`, e.g. `13005-2026-001`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^([0-9]{2}|2[AB])[0-9]{3}-[0-9]{4}-[0-9]{3,6}$", example = "13005-2026-001")]
pub struct CrisisId(String);

/// The text was not a crisis identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identifiant de crise invalide (attendu : 13005-2026-001)")]
pub struct InvalidCrisisId;

impl CrisisId {
    pub fn new(commune: &InseeCode, year: i16, seq: u32) -> Self {
        Self(format!("{commune}-{year:04}-{seq:03}"))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidCrisisId> {
        let mut parts = s.splitn(3, '-');
        let (Some(insee), Some(year), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(InvalidCrisisId);
        };
        let digits =
            |p: &str, min: usize, max: usize| (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        if InseeCode::parse(insee).is_ok() && digits(year, 4, 4) && digits(seq, 3, 6) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidCrisisId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CrisisId {
    type Error = InvalidCrisisId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CrisisId> for String {
    fn from(id: CrisisId) -> Self {
        id.0
    }
}

impl fmt::Display for CrisisId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_reaches_closed() {
        let path = [
            CrisisAction::Activate,
            CrisisAction::StartProvisioning,
            CrisisAction::MarkReady,
            CrisisAction::Deliver,
            CrisisAction::StartHandback,
            CrisisAction::Close,
        ];
        let end = path.iter().try_fold(CrisisState::Requested, |s, a| a.apply(s)).unwrap();
        assert_eq!(end, CrisisState::Closed);
        assert!(!end.is_open());
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for st in [CrisisState::Closed, CrisisState::Rejected, CrisisState::Cancelled] {
            for a in CrisisAction::ALL {
                assert_eq!(a.apply(st), Err(TransitionError::Illegal { action: a, from: st }));
            }
        }
    }

    #[test]
    fn exactly_the_documented_transitions_are_legal() {
        let legal: usize =
            CrisisState::ALL.iter().map(|s| CrisisAction::ALL.iter().filter(|a| a.apply(*s).is_ok()).count()).sum();
        // activate, start_provisioning, mark_ready, deliver, start_handback ×2, close, reject, cancel ×3
        assert_eq!(legal, 11);
    }

    #[test]
    fn cancel_and_reject_need_a_reason() {
        assert_eq!(
            CrisisAction::Cancel.check(CrisisState::Requested, Some("  ")),
            Err(TransitionError::ReasonRequired { action: CrisisAction::Cancel })
        );
        assert_eq!(CrisisAction::Reject.check(CrisisState::Requested, Some("doublon")), Ok(CrisisState::Rejected));
        assert_eq!(CrisisAction::Activate.check(CrisisState::Requested, None), Ok(CrisisState::Activated));
    }

    #[test]
    fn illegal_message_names_current_state() {
        let e = CrisisAction::Close.apply(CrisisState::Ready).unwrap_err();
        assert!(e.to_string().contains("prêt"), "{e}");
    }

    #[test]
    fn state_strings_round_trip() {
        for s in CrisisState::ALL {
            assert_eq!(s.as_str().parse::<CrisisState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert!("open".parse::<CrisisState>().is_err());
    }

    #[test]
    fn crisis_ids() {
        let id = CrisisId::new(&InseeCode::parse("13005").unwrap(), 2026, 1);
        assert_eq!(id.as_str(), "13005-2026-001");
        assert_eq!(CrisisId::parse("13005-2026-001").unwrap(), id);
        assert!(CrisisId::parse("2A004-2026-1234").is_ok());
        for bad in [
            "",
            "13005",
            "13005-2026",
            "13005-26-001",
            "13005-2026-01",
            "13005-2026-001-x",
            "../etc-2026-001",
            "13005-2026-0a1",
        ] {
            assert!(CrisisId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
