//! Repli's domain model. Pure: this crate performs no I/O and never reads the clock;
//! every instant it needs (`now`, a request time) is a parameter.
//!
//! - [`insee`]: the INSEE commune code newtype.
//! - [`reference`]: communes and signed conventions, parsed from CSV text.
//! - [`crisis`]: one kit loan to one commune and its state machine.
//! - [`crisis_log`]: the main courante's entry kinds.
//! - [`exercise`]: drills marked EXERCICE: their mode, tag and notification rules.
//! - [`destructive`]: the actions that undo a kit, and what the confirmation says of each.
//! - [`role`]: who may do what (the policy table).
//! - [`calendar`]: business hours in a time zone, French public holidays.
//! - [`sla`]: the 48-business-hour promise evaluated for one crisis.
//! - [`audit`]: audit entries and their hash chain (canonical encoding v1).
//! - [`fr`]: French formatting of dates, durations and phone numbers.
//! - [`text`]: validation of the free text, phone numbers and e-mail addresses people type.
//! - [`schema`]: the JSON Schemas of those validated strings, from the same constants.

pub mod audit;
pub mod calendar;
pub mod crisis;
pub mod crisis_log;
pub mod destructive;
pub mod exercise;
pub mod fr;
pub mod handback;
pub mod insee;
pub mod inventory;
pub mod legal;
pub mod m365;
pub mod playbook;
pub mod reference;
pub mod role;
pub mod run;
pub mod schema;
pub mod sla;
pub mod text;

pub use audit::{AuditAction, AuditBundle, AuditEntry, ChainError, ChainSummary, ChainVerifier, Checkpoint, Tamper};
pub use calendar::{BusinessCalendar, CalendarError, CalendarSpec};
pub use crisis::{CrisisAction, CrisisId, CrisisState, TransitionError};
pub use crisis_log::LogKind;
pub use destructive::Destructive;
pub use exercise::{ExerciseMode, ExerciseTag};
pub use insee::InseeCode;
pub use inventory::{Item, ItemKind, ItemState};
pub use legal::{LegalKind, LegalStatus};
pub use playbook::{Playbook, Step, StepKind, StepState};
pub use reference::{Commune, Convention, ReferenceError};
pub use role::{Actor, AuthMethod, Permission, Role};
pub use sla::{SlaStatus, SlaView};
pub use text::FieldError;
