//! The audited actions: one enum, whose string form is what the log stores and hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{CrisisAction, LegalKind, LogKind};

/// Declares [`AuditAction`] from one table, so that the variants, [`AuditAction::ALL`],
/// [`AuditAction::as_str`] and [`FromStr`] cannot drift apart.
macro_rules! audit_actions {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// What an audit entry records, as one variant per action.
        ///
        /// The string form ([`AuditAction::as_str`], `Display`, `FromStr`, serde) is exactly the
        /// `action` the log stores, and the canonical encoding hashes that string
        /// (docs/AUDIT.md): a name must never change, not by one byte, or every stored entry
        /// that carries it stops verifying. Add a variant for a new action; never rename one.
        ///
        /// Reading: a stored entry keeps its action as the raw string it was hashed with
        /// ([`crate::audit::AuditEntry::action`]), and [`crate::audit::AuditEntry::action_kind`]
        /// gives the variant, or `None` for a string this version does not know (an entry
        /// written by a later version, or by hand). Such an entry is still read, exported and
        /// verified like any other; only the code that acts on a specific action skips it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AuditAction {
            $( $(#[$doc])* $variant, )*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[ $( Self::$variant, )* ];

            /// The string the log stores and hashes.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $name, )*
                }
            }
        }

        impl FromStr for AuditAction {
            type Err = UnknownAuditAction;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(Self::$variant), )*
                    _ => Err(UnknownAuditAction(s.to_owned())),
                }
            }
        }
    };
}

audit_actions! {
    /// A commune asked for the kit.
    CrisisRequest => "crisis.request",
    CrisisActivate => "crisis.activate",
    CrisisReject => "crisis.reject",
    CrisisCancel => "crisis.cancel",
    CrisisStartProvisioning => "crisis.start_provisioning",
    CrisisMarkReady => "crisis.mark_ready",
    CrisisDeliver => "crisis.deliver",
    CrisisStartHandback => "crisis.start_handback",
    CrisisClose => "crisis.close",
    /// The commune's agents list was set.
    CrisisAgents => "crisis.agents",
    /// Agents were added after the accounts were created.
    CrisisAgentsAdded => "crisis.agents.added",
    /// Ops accepted fewer agents than asked for.
    CrisisAgentsAccepted => "crisis.agents.accepted",
    CrisisPurgePersonalData => "crisis.purge_personal_data",
    ExerciseStart => "exercise.start",
    ExercisePurgePersonalData => "exercise.purge_personal_data",
    /// Main courante entries, one per [`LogKind`].
    LogInformation => "log.information",
    LogDemande => "log.demande",
    LogAction => "log.action",
    LogDecision => "log.decision",
    LogPointDeSituation => "log.point_de_situation",
    LogInject => "log.inject",
    InventoryImport => "inventory.import",
    /// Items counted for a crisis waiting for stock.
    InventoryCount => "inventory.count",
    InventoryReserve => "inventory.reserve",
    /// Items taken from an exercise for a real crisis.
    InventoryPreempt => "inventory.preempt",
    InventoryLend => "inventory.lend",
    InventoryCheckIn => "inventory.check_in",
    InventoryWriteOff => "inventory.write_off",
    InventoryWipe => "inventory.wipe",
    /// A returned item that needs no wipe (router, SIM, printer) checked and put back in stock.
    InventoryCheck => "inventory.check",
    /// An item's asset tag, model, notes or condition changed (each change, before → after).
    InventoryEdit => "inventory.edit",
    /// A SIM card put in (or taken out of) a phone or router.
    InventorySimLink => "inventory.sim_link",
    InventoryService => "inventory.service",
    SlaSuspend => "sla.suspend",
    SlaResume => "sla.resume",
    LegalFacts => "legal.facts",
    LegalCnilDone => "legal.cnil_done",
    LegalComplaintDone => "legal.complaint_done",
    NotifyRetry => "notify.retry",
    EngineRunStarted => "engine.run.started",
    EngineRunFinished => "engine.run.finished",
    EngineStepStarted => "engine.step.started",
    EngineStepSucceeded => "engine.step.succeeded",
    /// A failed attempt, another one planned.
    EngineStepRetry => "engine.step.retry",
    EngineStepFailed => "engine.step.failed",
    EngineStepWaitingManual => "engine.step.waiting_manual",
    EngineStepWaiting => "engine.step.waiting",
    /// A step whose lease expired (its daemon died) went back to pending.
    EngineStepReclaimed => "engine.step.reclaimed",
    EngineStepReopened => "engine.step.reopened",
    /// A person asked for a failed step to run again.
    EngineStepRetried => "engine.step.retried",
    EngineStepSkipped => "engine.step.skipped",
    EngineTaskDone => "engine.task.done",
    ReferenceSync => "reference.sync",
    DocumentsCredentialSheets => "documents.credential_sheets",
    DocumentsCredentialSheetsReissued => "documents.credential_sheets.reissued",
    UserCreate => "user.create",
    UserPasswordLink => "user.password_link",
    UserSetPassword => "user.set_password",
    TokenIssue => "token.issue",
    TokenRevoke => "token.revoke",
    SessionOpen => "session.open",
    SessionClose => "session.close",
    /// An account enrolled its TOTP second factor (its recovery codes were issued).
    SecondFactorEnrol => "second_factor.enrol",
    /// A recovery code replaced the TOTP code at a sign-in (the authenticator was lost); the
    /// code is spent.
    SecondFactorRecoveryUsed => "second_factor.recovery_used",
    /// An admin removed an account's second factor (lost device): the account enrols again at
    /// its next sign-in; its sessions are closed.
    SecondFactorReset => "second_factor.reset",
    ServiceBackup => "service.backup",
    ServiceRestore => "service.restore",
    /// replid was started over an audit chain that did not verify, by an operator's explicit
    /// decision (the break stays visible to every full verification).
    ServiceAuditBreakAccepted => "service.audit_break_accepted",
    /// The audit signing key was changed: the previous key signs the hand-over
    /// ([`crate::audit::KeyChange`]).
    ServiceAuditKeyChanged => "service.audit_key_changed",
    /// The tenant's Graph throttle taught replid a new pace (requests Graph admits a second, or
    /// none seen), kept so a restarted daemon does not learn it again from a 429.
    ServiceGraphPace => "service.graph_pace",
    /// The data hand-back's archive written: its signed manifest's SHA-256, and whether every
    /// item is in it.
    HandbackExported => "handback.exported",
}

impl AuditAction {
    /// The entry recording a crisis transition (`crisis.<action>`).
    pub const fn transition(action: CrisisAction) -> Self {
        match action {
            CrisisAction::Activate => Self::CrisisActivate,
            CrisisAction::StartProvisioning => Self::CrisisStartProvisioning,
            CrisisAction::MarkReady => Self::CrisisMarkReady,
            CrisisAction::Deliver => Self::CrisisDeliver,
            CrisisAction::StartHandback => Self::CrisisStartHandback,
            CrisisAction::Close => Self::CrisisClose,
            CrisisAction::Reject => Self::CrisisReject,
            CrisisAction::Cancel => Self::CrisisCancel,
        }
    }

    /// The entry recording a main-courante entry of this kind (`log.<kind>`).
    pub const fn log(kind: LogKind) -> Self {
        match kind {
            LogKind::Information => Self::LogInformation,
            LogKind::Demande => Self::LogDemande,
            LogKind::Action => Self::LogAction,
            LogKind::Decision => Self::LogDecision,
            LogKind::PointDeSituation => Self::LogPointDeSituation,
            LogKind::Inject => Self::LogInject,
        }
    }

    /// The entry recording that a legal step was done (`legal.<kind>_done`).
    pub const fn legal_done(kind: LegalKind) -> Self {
        match kind {
            LegalKind::Cnil => Self::LegalCnilDone,
            LegalKind::Complaint => Self::LegalComplaintDone,
        }
    }

    /// The main-courante kind this action records, if it is a main-courante entry.
    pub const fn log_kind(self) -> Option<LogKind> {
        match self {
            Self::LogInformation => Some(LogKind::Information),
            Self::LogDemande => Some(LogKind::Demande),
            Self::LogAction => Some(LogKind::Action),
            Self::LogDecision => Some(LogKind::Decision),
            Self::LogPointDeSituation => Some(LogKind::PointDeSituation),
            Self::LogInject => Some(LogKind::Inject),
            _ => None,
        }
    }

    /// Whether this action records a crisis transition or the request that opened it (the
    /// crisis's own life, not what was done for it).
    pub const fn is_crisis_lifecycle(self) -> bool {
        matches!(
            self,
            Self::CrisisRequest
                | Self::CrisisActivate
                | Self::CrisisReject
                | Self::CrisisCancel
                | Self::CrisisStartProvisioning
                | Self::CrisisMarkReady
                | Self::CrisisDeliver
                | Self::CrisisStartHandback
                | Self::CrisisClose
        )
    }

    /// The action in French, for people (`crisis.deliver` → « Kit livré »). `None` for the
    /// actions people are shown by their code (accounts, sessions, the service's own entries).
    pub const fn label_fr(self) -> Option<&'static str> {
        Some(match self {
            Self::CrisisRequest => "Demande du kit",
            Self::CrisisActivate => "Demande activée",
            Self::CrisisReject => "Demande refusée",
            Self::CrisisCancel => "Kit annulé",
            Self::CrisisStartProvisioning => "Préparation du kit commencée",
            Self::CrisisMarkReady => "Kit prêt",
            Self::CrisisDeliver => "Kit livré",
            Self::CrisisStartHandback => "Restitution ouverte",
            Self::CrisisClose => "Crise close",
            Self::CrisisAgents => "Liste des agents mise à jour",
            Self::InventoryReserve => "Matériel réservé",
            Self::InventoryLend => "Équipement prêté",
            Self::InventoryCheckIn => "Équipement rendu",
            Self::InventoryWriteOff => "Équipement passé en perte",
            Self::InventoryWipe => "Effacement certifié",
            Self::InventoryCheck => "Équipement vérifié et remis en stock",
            Self::InventoryEdit => "Fiche d'équipement modifiée",
            Self::InventorySimLink => "Carte SIM associée",
            Self::SlaSuspend => "Délai suspendu",
            Self::SlaResume => "Délai repris",
            Self::LegalFacts => "Faits notés pour les échéances légales",
            Self::LegalCnilDone => "Notification à la CNIL faite",
            Self::LegalComplaintDone => "Plainte déposée",
            Self::EngineRunStarted => "Déroulé commencé",
            Self::EngineRunFinished => "Déroulé terminé",
            Self::EngineStepStarted => "Étape commencée",
            Self::EngineStepSucceeded => "Étape terminée",
            Self::EngineStepRetry => "Nouvel essai prévu",
            Self::EngineStepFailed => "Étape en échec",
            Self::EngineStepWaitingManual => "Tâche manuelle en attente",
            Self::EngineStepWaiting => "Étape en attente",
            Self::EngineStepReclaimed => "Étape reprise après un arrêt",
            Self::EngineStepReopened => "Étape rouverte",
            Self::EngineStepRetried => "Étape relancée",
            Self::EngineStepSkipped => "Étape ignorée",
            Self::EngineTaskDone => "Tâche confirmée",
            Self::NotifyRetry => "Notification renvoyée",
            Self::HandbackExported => "Données de la commune exportées (archive signée)",
            Self::LogInformation
            | Self::LogDemande
            | Self::LogAction
            | Self::LogDecision
            | Self::LogPointDeSituation
            | Self::LogInject => "Main courante",
            // Shown by their code, as before this enum existed: listed one by one so that a new
            // action has to choose.
            Self::CrisisAgentsAdded
            | Self::CrisisAgentsAccepted
            | Self::CrisisPurgePersonalData
            | Self::ExerciseStart
            | Self::ExercisePurgePersonalData
            | Self::InventoryImport
            | Self::InventoryCount
            | Self::InventoryPreempt
            | Self::InventoryService
            | Self::ReferenceSync
            | Self::DocumentsCredentialSheets
            | Self::DocumentsCredentialSheetsReissued
            | Self::UserCreate
            | Self::UserPasswordLink
            | Self::UserSetPassword
            | Self::TokenIssue
            | Self::TokenRevoke
            | Self::SessionOpen
            | Self::SessionClose
            | Self::SecondFactorEnrol
            | Self::SecondFactorRecoveryUsed
            | Self::SecondFactorReset
            | Self::ServiceBackup
            | Self::ServiceRestore
            | Self::ServiceAuditBreakAccepted
            | Self::ServiceAuditKeyChanged
            | Self::ServiceGraphPace => return None,
        })
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AuditAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The text is not an action this version records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAuditAction(pub String);

/// Which actions to read from the log: one action, or every action under a dotted prefix.
///
/// Built from what a person typed ([`FromStr`]: `crisis.activate`, or a prefix ending in `.`
/// such as `crisis.` or `engine.step.`), it only names actions this version knows, so that a
/// typo is refused instead of silently matching nothing. Entries whose stored action this
/// version does not know are read without a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionFilter(Filter);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Is(AuditAction),
    /// Always a prefix of a known action's string, ending in `.`.
    Prefix(&'static str),
}

impl ActionFilter {
    /// This action only.
    pub const fn is(action: AuditAction) -> Self {
        Self(Filter::Is(action))
    }

    /// Every main-courante entry (`log.`).
    pub const fn main_courante() -> Self {
        Self(Filter::Prefix("log."))
    }

    /// The exact action to match, if this filter names one.
    pub const fn exact(self) -> Option<AuditAction> {
        match self.0 {
            Filter::Is(a) => Some(a),
            Filter::Prefix(_) => None,
        }
    }

    /// The prefix every matching action starts with, if this filter is a prefix (ends in `.`).
    pub const fn prefix(self) -> Option<&'static str> {
        match self.0 {
            Filter::Is(_) => None,
            Filter::Prefix(p) => Some(p),
        }
    }

    /// Every filter [`FromStr`] accepts: each known action, and each of their dotted prefixes
    /// (`crisis.`, `engine.step.`), sorted and without repeats (the OpenAPI document's enum).
    pub fn accepted() -> Vec<&'static str> {
        let mut out = std::collections::BTreeSet::new();
        for a in AuditAction::ALL {
            let name = a.as_str();
            out.insert(name);
            for (i, _) in name.match_indices('.') {
                if let Some(prefix) = name.get(..=i) {
                    out.insert(prefix);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Whether `action` (as stored) matches.
    pub fn matches(self, action: &str) -> bool {
        match self.0 {
            Filter::Is(a) => a.as_str() == action,
            Filter::Prefix(p) => action.starts_with(p),
        }
    }
}

impl From<AuditAction> for ActionFilter {
    fn from(a: AuditAction) -> Self {
        Self::is(a)
    }
}

impl FromStr for ActionFilter {
    type Err = UnknownAuditAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.ends_with('.') {
            return s.parse().map(Self::is);
        }
        AuditAction::ALL
            .iter()
            .map(|a| a.as_str())
            .find(|name| name.starts_with(s))
            .and_then(|name| name.get(..s.len()))
            .map(|p| Self(Filter::Prefix(p)))
            .ok_or_else(|| UnknownAuditAction(s.to_owned()))
    }
}

impl fmt::Display for ActionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Filter::Is(a) => f.write_str(a.as_str()),
            Filter::Prefix(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn every_accepted_filter_parses_and_nothing_else_does() {
        let accepted = ActionFilter::accepted();
        assert!(accepted.contains(&"crisis.") && accepted.contains(&"crisis.activate"));
        for f in &accepted {
            assert!(f.parse::<ActionFilter>().is_ok(), "{f}");
        }
        for bad in ["", ".", "crisis", "cris.", "crisis.teleport", "crisis.activate."] {
            assert!(bad.parse::<ActionFilter>().is_err(), "{bad:?}");
            assert!(!accepted.contains(&bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_action_round_trips_and_names_are_unique() {
        let mut seen = HashSet::new();
        for &a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "{a} is declared twice");
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<AuditAction>(&json).unwrap(), a);
            assert!(a.as_str().split('.').count() >= 2, "{a} is a dotted verb");
        }
        assert_eq!(seen.len(), AuditAction::ALL.len());
    }

    #[test]
    fn stored_names_never_change() {
        // These strings are inside the hashes of existing logs: renaming one breaks them.
        for (a, s) in [
            (AuditAction::CrisisRequest, "crisis.request"),
            (AuditAction::CrisisStartHandback, "crisis.start_handback"),
            (AuditAction::CrisisAgentsAdded, "crisis.agents.added"),
            (AuditAction::LogPointDeSituation, "log.point_de_situation"),
            (AuditAction::InventoryCheckIn, "inventory.check_in"),
            (AuditAction::LegalCnilDone, "legal.cnil_done"),
            (AuditAction::EngineStepWaitingManual, "engine.step.waiting_manual"),
            (AuditAction::DocumentsCredentialSheetsReissued, "documents.credential_sheets.reissued"),
            (AuditAction::UserSetPassword, "user.set_password"),
            (AuditAction::ServiceRestore, "service.restore"),
        ] {
            assert_eq!(a.as_str(), s);
        }
        assert_eq!(AuditAction::ALL.len(), 71);
    }

    #[test]
    fn families_map_to_the_names_they_always_had() {
        for a in CrisisAction::ALL {
            assert_eq!(AuditAction::transition(a).as_str(), format!("crisis.{}", a.as_str()));
            assert!(AuditAction::transition(a).is_crisis_lifecycle());
        }
        for k in LogKind::ALL {
            assert_eq!(AuditAction::log(k).as_str(), format!("log.{}", k.as_str()));
            assert_eq!(AuditAction::log(k).log_kind(), Some(k));
        }
        for k in LegalKind::ALL {
            assert_eq!(AuditAction::legal_done(k).as_str(), format!("legal.{}_done", k.as_str()));
        }
        let logs = AuditAction::ALL.iter().filter(|a| a.log_kind().is_some()).count();
        assert_eq!(logs, LogKind::ALL.len());
        assert!(AuditAction::CrisisRequest.is_crisis_lifecycle());
        assert!(!AuditAction::CrisisAgents.is_crisis_lifecycle());
    }

    #[test]
    fn unknown_names_are_refused_not_guessed() {
        assert_eq!("crisis.explode".parse::<AuditAction>(), Err(UnknownAuditAction("crisis.explode".into())));
        assert!("Crisis.request".parse::<AuditAction>().is_err());
        assert!(serde_json::from_str::<AuditAction>("\"graph.call\"").is_err());
    }

    #[test]
    fn filters_name_known_actions_or_their_prefixes() {
        let f: ActionFilter = "crisis.activate".parse().unwrap();
        assert_eq!(f.exact(), Some(AuditAction::CrisisActivate));
        assert!(f.matches("crisis.activate") && !f.matches("crisis.activated"));
        let f: ActionFilter = "engine.step.".parse().unwrap();
        assert_eq!(f.prefix(), Some("engine.step."));
        assert!(f.matches("engine.step.started") && !f.matches("engine.run.started"));
        assert_eq!(ActionFilter::main_courante(), "log.".parse().unwrap());
        assert_eq!(f.to_string(), "engine.step.");
        for bad in ["crisis.activat", "crisis.act.", "nope.", "", "."] {
            assert!(bad.parse::<ActionFilter>().is_err(), "{bad:?} accepted");
        }
    }
}
