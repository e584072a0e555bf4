//! Playbooks: the steps of an activation or a hand-back, their dependencies and estimates.
//!
//! This module is the model and its checks (kinds, dependencies, cycles, the critical path);
//! reading TOML files with positions and checking templates is `repli-engine`'s job.

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a step does. Automated kinds have an executor in the engine; `manual` waits for ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StepKind {
    #[serde(rename = "m365.domain")]
    M365Domain,
    #[serde(rename = "dns.publish")]
    DnsPublish,
    #[serde(rename = "dns.remove")]
    DnsRemove,
    #[serde(rename = "m365.verify")]
    M365Verify,
    #[serde(rename = "m365.services")]
    M365Services,
    #[serde(rename = "m365.accounts")]
    M365Accounts,
    #[serde(rename = "m365.licences")]
    M365Licences,
    #[serde(rename = "m365.team")]
    M365Team,
    #[serde(rename = "m365.meeting")]
    M365Meeting,
    #[serde(rename = "m365.isolation")]
    M365Isolation,
    #[serde(rename = "m365.winddown")]
    M365WindDown,
    #[serde(rename = "m365.delete_group")]
    M365DeleteGroup,
    #[serde(rename = "m365.delete_accounts")]
    M365DeleteAccounts,
    #[serde(rename = "m365.remove_domain")]
    M365RemoveDomain,
    /// The data hand-back: every kit mailbox and drive exported to a signed archive.
    #[serde(rename = "m365.export")]
    M365Export,
    #[serde(rename = "inventory.reserve")]
    InventoryReserve,
    #[serde(rename = "inventory.assign")]
    InventoryAssign,
    #[serde(rename = "docs.render")]
    DocsRender,
    #[serde(rename = "notify")]
    Notify,
    #[serde(rename = "manual")]
    Manual,
    /// The hand-back's reception of the equipment: a manual step whose confirmation the store
    /// refuses while an item is still out or a returned laptop or phone has no wipe record.
    #[serde(rename = "inventory.reception")]
    InventoryReception,
    #[serde(rename = "crisis.ready")]
    CrisisReady,
    #[serde(rename = "crisis.close")]
    CrisisClose,
}

impl StepKind {
    pub const ALL: [StepKind; 23] = [
        Self::M365Domain,
        Self::DnsPublish,
        Self::DnsRemove,
        Self::M365Verify,
        Self::M365Services,
        Self::M365Accounts,
        Self::M365Licences,
        Self::M365Team,
        Self::M365Meeting,
        Self::M365Isolation,
        Self::M365WindDown,
        Self::M365DeleteGroup,
        Self::M365DeleteAccounts,
        Self::M365RemoveDomain,
        Self::M365Export,
        Self::InventoryReserve,
        Self::InventoryAssign,
        Self::DocsRender,
        Self::Notify,
        Self::Manual,
        Self::InventoryReception,
        Self::CrisisReady,
        Self::CrisisClose,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::M365Domain => "m365.domain",
            Self::DnsPublish => "dns.publish",
            Self::DnsRemove => "dns.remove",
            Self::M365Verify => "m365.verify",
            Self::M365Services => "m365.services",
            Self::M365Accounts => "m365.accounts",
            Self::M365Licences => "m365.licences",
            Self::M365Team => "m365.team",
            Self::M365Meeting => "m365.meeting",
            Self::M365Isolation => "m365.isolation",
            Self::M365WindDown => "m365.winddown",
            Self::M365DeleteGroup => "m365.delete_group",
            Self::M365DeleteAccounts => "m365.delete_accounts",
            Self::M365RemoveDomain => "m365.remove_domain",
            Self::M365Export => "m365.export",
            Self::InventoryReserve => "inventory.reserve",
            Self::InventoryAssign => "inventory.assign",
            Self::DocsRender => "docs.render",
            Self::Notify => "notify",
            Self::Manual => "manual",
            Self::InventoryReception => "inventory.reception",
            Self::CrisisReady => "crisis.ready",
            Self::CrisisClose => "crisis.close",
        }
    }

    /// A step a person does and ops confirm: it waits with instructions and a checklist.
    pub fn is_manual(self) -> bool {
        matches!(self, Self::Manual | Self::InventoryReception)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Parameters the kind accepts (all templated strings).
    pub fn params(self) -> &'static [&'static str] {
        match self {
            Self::Notify => &["audience", "message"],
            Self::M365RemoveDomain => &["force"],
            Self::DnsPublish => &["records"],
            _ => &[],
        }
    }

    /// Parameters the kind requires.
    pub fn required_params(self) -> &'static [&'static str] {
        match self {
            Self::Notify => &["audience", "message"],
            _ => &[],
        }
    }

    /// The step group shown as one progress bar (`repli crisis watch`).
    pub fn group(self) -> &'static str {
        match self {
            Self::M365Domain | Self::DnsPublish | Self::M365Verify | Self::M365Services => "Domaine de secours",
            Self::M365Accounts | Self::M365Licences | Self::M365Team | Self::M365Meeting | Self::M365Isolation => {
                "Microsoft 365"
            }
            Self::M365WindDown
            | Self::M365DeleteGroup
            | Self::M365DeleteAccounts
            | Self::M365RemoveDomain
            | Self::M365Export => "Microsoft 365",
            Self::DnsRemove => "Domaine de secours",
            Self::InventoryReserve | Self::InventoryAssign | Self::InventoryReception => "Équipements",
            Self::DocsRender | Self::Notify => "Documents et messages",
            Self::Manual => "Tâches manuelles",
            Self::CrisisReady | Self::CrisisClose => "Clôture d'étape",
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step (or one of its fields) was written, 1-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One step of a playbook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    /// Templated title, in French.
    pub title: String,
    pub needs: Vec<String>,
    /// Estimated duration (business time for manual steps); feeds the SLA forecast.
    pub estimate: SignedDuration,
    /// Time budget of the step, retries included, after which it fails.
    pub budget: SignedDuration,
    /// Attempts before failing (automated steps).
    pub attempts: u32,
    pub params: BTreeMap<String, String>,
    /// Manual steps: templated instructions in French, and a checklist.
    pub instructions: Option<String>,
    pub checklist: Vec<String>,
    #[serde(skip)]
    pub pos: Pos,
    /// Position of each `needs` entry, for diagnostics.
    #[serde(skip)]
    pub needs_pos: Vec<Pos>,
}

/// A playbook: named steps forming a DAG.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Playbook {
    pub name: String,
    pub description: String,
    pub steps: Vec<Step>,
}

/// One problem found in a playbook, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
}

/// The state of a step in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    WaitingManual,
    Succeeded,
    Failed,
    Skipped,
}

impl StepState {
    pub const ALL: [StepState; 6] =
        [Self::Pending, Self::Running, Self::WaitingManual, Self::Succeeded, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::WaitingManual => "waiting_manual",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Done for its dependants: succeeded, or skipped by ops.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped)
    }

    /// Whether ops may skip a step in this state (failed, not started, or waiting for a
    /// person), when its run takes step operations ([`crate::run::RunState::takes_step_operations`]).
    /// The store checks it inside the transaction that records the skip; the pages offer the
    /// button only then.
    pub fn may_be_skipped(self) -> bool {
        matches!(self, Self::Failed | Self::Pending | Self::WaitingManual)
    }

    /// Whether ops may send a step of `kind` back to pending for another try: a failed one,
    /// or a DNS step handed to a person (the servers did not take the update), so that the
    /// engine publishes by itself once the server is back.
    pub fn may_be_retried(self, kind: StepKind) -> bool {
        self == Self::Failed
            || (self == Self::WaitingManual && matches!(kind, StepKind::DnsPublish | StepKind::DnsRemove))
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Pending => "en attente",
            Self::Running => "en cours",
            Self::WaitingManual => "à faire (manuel)",
            Self::Succeeded => "terminée",
            Self::Failed => "en échec",
            Self::Skipped => "ignorée",
        }
    }
}

impl std::fmt::Display for StepState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `30s`, `15m`, `4h`, `1h30m`, `2d` (days of 24 h).
pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !number.is_empty() || total > 400 * 86_400 {
        return None;
    }
    Some(SignedDuration::from_secs(total))
}

/// `1h30m`-style text for a duration.
pub fn format_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

impl Playbook {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Structural checks: ids, kinds' parameters, manual steps' instructions, unknown and
    /// cyclic dependencies. Every problem is reported, not only the first.
    pub fn check(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for s in &self.steps {
            let id_ok = !s.id.is_empty()
                && s.id.len() <= 64
                && s.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !id_ok {
                out.push(Diagnostic {
                    pos: s.pos,
                    message: format!("step id {:?} must be 1-64 characters of a-z, 0-9, '-' or '_'", s.id),
                });
            }
            if !seen.insert(s.id.as_str()) {
                out.push(Diagnostic { pos: s.pos, message: format!("duplicate step id {:?}", s.id) });
            }
            for p in s.kind.required_params() {
                if !s.params.contains_key(*p) {
                    out.push(Diagnostic {
                        pos: s.pos,
                        message: format!("step {:?} ({}) needs parameter {p:?}", s.id, s.kind),
                    });
                }
            }
            if s.kind.is_manual() && s.instructions.as_deref().is_none_or(|i| i.trim().is_empty()) {
                out.push(Diagnostic { pos: s.pos, message: format!("manual step {:?} needs instructions", s.id) });
            }
            if !s.kind.is_manual() && (s.instructions.is_some() || !s.checklist.is_empty()) {
                out.push(Diagnostic {
                    pos: s.pos,
                    message: format!("step {:?}: instructions and checklist are for manual steps only", s.id),
                });
            }
            if s.attempts == 0 {
                out.push(Diagnostic { pos: s.pos, message: format!("step {:?}: attempts must be at least 1", s.id) });
            }
        }
        let ids: BTreeSet<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
        for s in &self.steps {
            for (i, need) in s.needs.iter().enumerate() {
                let pos = s.needs_pos.get(i).copied().unwrap_or(s.pos);
                if !ids.contains(need.as_str()) {
                    out.push(Diagnostic { pos, message: format!("step {:?} needs unknown step {need:?}", s.id) });
                } else if need == &s.id {
                    out.push(Diagnostic { pos, message: format!("step {:?} needs itself", s.id) });
                }
            }
        }
        if let Err(cycle) = self.order() {
            let pos = cycle.first().and_then(|id| self.step(id)).map(|s| s.pos).unwrap_or_default();
            out.push(Diagnostic { pos, message: format!("dependency cycle: {}", cycle.join(" → ")) });
        }
        out
    }

    /// Step ids in an order that respects `needs` (file order among ready steps), or one cycle.
    /// Unknown dependencies are ignored here (see [`Playbook::check`]).
    pub fn order(&self) -> Result<Vec<String>, Vec<String>> {
        let ids: BTreeSet<&str> = self.steps.iter().map(|s| s.id.as_str()).collect();
        let mut placed = vec![false; self.steps.len()];
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::new();
        while order.len() < self.steps.len() {
            let next = self.steps.iter().enumerate().find(|(i, s)| {
                !placed[*i]
                    && s.needs.iter().all(|n| done.contains(n.as_str()) || !ids.contains(n.as_str()) || *n == s.id)
            });
            match next {
                Some((i, s)) => {
                    placed[i] = true;
                    done.insert(&s.id);
                    order.push(s.id.clone());
                }
                None => return Err(self.find_cycle(&placed)),
            }
        }
        Ok(order)
    }

    fn find_cycle(&self, placed: &[bool]) -> Vec<String> {
        // Walk backwards through unplaced needs until a step repeats.
        let unplaced =
            |id: &str| self.steps.iter().enumerate().find(|(i, s)| s.id == id && !placed[*i]).map(|(_, s)| s);
        let Some(mut current) = self.steps.iter().enumerate().find(|(i, _)| !placed[*i]).map(|(_, s)| s) else {
            return Vec::new();
        };
        let mut path: Vec<String> = Vec::new();
        loop {
            if let Some(i) = path.iter().position(|p| *p == current.id) {
                let mut cycle = path[i..].to_vec();
                cycle.push(current.id.clone());
                return cycle;
            }
            path.push(current.id.clone());
            match current.needs.iter().find_map(|n| unplaced(n)) {
                Some(s) => current = s,
                None => return path,
            }
        }
    }

    /// Earliest finish of every step (estimates along the longest chain of needs), and the
    /// critical path: the chain that ends last.
    pub fn schedule(&self) -> Result<Schedule, Vec<String>> {
        let order = self.order()?;
        let mut finish: BTreeMap<String, SignedDuration> = BTreeMap::new();
        let mut via: BTreeMap<String, Option<String>> = BTreeMap::new();
        for id in &order {
            let Some(s) = self.step(id) else { continue };
            let (start, from) = s
                .needs
                .iter()
                .filter_map(|n| finish.get(n).map(|f| (*f, n.clone())))
                .max_by_key(|(f, _)| *f)
                .map_or((SignedDuration::ZERO, None), |(f, n)| (f, Some(n)));
            finish.insert(id.clone(), start + s.estimate);
            via.insert(id.clone(), from);
        }
        let mut path = Vec::new();
        let mut cursor = finish.iter().max_by_key(|(_, f)| **f).map(|(id, _)| id.clone());
        let total = cursor.as_ref().and_then(|c| finish.get(c)).copied().unwrap_or(SignedDuration::ZERO);
        while let Some(id) = cursor {
            cursor = via.get(&id).cloned().flatten();
            path.push(id);
        }
        path.reverse();
        Ok(Schedule { order, finish, critical_path: path, total })
    }

    /// Estimated time left: the longest chain through steps not yet done.
    pub fn remaining(&self, done: &BTreeSet<String>) -> SignedDuration {
        let Ok(order) = self.order() else { return SignedDuration::ZERO };
        let mut finish: BTreeMap<&str, SignedDuration> = BTreeMap::new();
        for id in &order {
            let Some(s) = self.step(id) else { continue };
            let start =
                s.needs.iter().filter_map(|n| finish.get(n.as_str())).max().copied().unwrap_or(SignedDuration::ZERO);
            let own = if done.contains(id) { SignedDuration::ZERO } else { s.estimate };
            finish.insert(id, start + own);
        }
        finish.values().max().copied().unwrap_or(SignedDuration::ZERO)
    }
}

/// The output of [`Playbook::schedule`].
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub order: Vec<String>,
    pub finish: BTreeMap<String, SignedDuration>,
    pub critical_path: Vec<String>,
    pub total: SignedDuration,
}

/// What the measured durations of a step say of its estimate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calibration {
    pub step: String,
    pub estimate: SignedDuration,
    /// How many runs measured it.
    pub samples: usize,
    /// The median of the measured durations.
    pub measured: Option<SignedDuration>,
    /// The new estimate (the median, to the minute above, one minute at least), when there are
    /// enough samples.
    pub proposed: Option<SignedDuration>,
}

/// Proposes an estimate for each step of `book` from `measured` (seconds per step id, one per
/// finished run): the median, so one slow drill does not move it alone, rounded up to the
/// minute. Steps with fewer than `min_samples` measures keep their estimate.
pub fn calibrate(book: &Playbook, measured: &BTreeMap<String, Vec<i64>>, min_samples: usize) -> Vec<Calibration> {
    book.steps
        .iter()
        .map(|s| {
            let mut m: Vec<i64> = measured.get(&s.id).cloned().unwrap_or_default();
            m.retain(|v| *v >= 0);
            m.sort_unstable();
            let median = match m.len() {
                0 => None,
                n if n % 2 == 1 => Some(m[n / 2]),
                n => Some((m[n / 2 - 1] + m[n / 2]) / 2),
            };
            let measured = median.map(SignedDuration::from_secs);
            let proposed = median
                .filter(|_| m.len() >= min_samples.max(1))
                .map(|secs| SignedDuration::from_mins(((secs + 59) / 60).max(1)));
            Calibration { step: s.id.clone(), estimate: s.estimate, samples: m.len(), measured, proposed }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_task_may_go_back_to_the_engine_another_manual_step_may_not() {
        for kind in [StepKind::DnsPublish, StepKind::DnsRemove] {
            assert!(StepState::WaitingManual.may_be_retried(kind) && StepState::Failed.may_be_retried(kind));
        }
        assert!(!StepState::WaitingManual.may_be_retried(StepKind::Manual));
        assert!(!StepState::Pending.may_be_retried(StepKind::DnsPublish));
        assert!(StepState::Failed.may_be_retried(StepKind::Manual));
    }

    fn step(id: &str, kind: StepKind, needs: &[&str], mins: i64) -> Step {
        Step {
            id: id.into(),
            kind,
            title: id.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            estimate: SignedDuration::from_mins(mins),
            budget: SignedDuration::from_mins(30),
            attempts: 3,
            params: BTreeMap::new(),
            instructions: (kind == StepKind::Manual).then(|| "Faire".into()),
            checklist: Vec::new(),
            pos: Pos::default(),
            needs_pos: Vec::new(),
        }
    }

    fn book(steps: Vec<Step>) -> Playbook {
        Playbook { name: "t".into(), description: String::new(), steps }
    }

    #[test]
    fn calibration_takes_the_median_rounded_up_and_waits_for_enough_samples() {
        let b = book(vec![
            step("laptops", StepKind::Manual, &[], 240),
            step("domain", StepKind::M365Domain, &[], 10),
            step("team", StepKind::M365Team, &[], 5),
        ]);
        let measured = BTreeMap::from([
            // One slow drill among fast ones does not move the median.
            ("laptops".to_owned(), vec![3 * 3600, 2 * 3600 + 30, 20 * 3600, 2 * 3600 + 10 * 60]),
            ("domain".to_owned(), vec![4, 2, 3]),
            ("team".to_owned(), vec![600, -5]),
        ]);
        let c = calibrate(&b, &measured, 3);
        assert_eq!(c[0].samples, 4);
        assert_eq!(c[0].measured, Some(SignedDuration::from_secs((2 * 3600 + 10 * 60 + 3 * 3600) / 2)));
        assert_eq!(c[0].proposed, Some(SignedDuration::from_mins(155)));
        // Seconds round up to a minute.
        assert_eq!(c[1].proposed, Some(SignedDuration::from_mins(1)));
        // A negative measure is not one; one sample is not enough.
        assert_eq!((c[2].samples, c[2].proposed), (1, None));
        assert_eq!(c[2].estimate, SignedDuration::from_mins(5));
        assert!(calibrate(&b, &BTreeMap::new(), 3).iter().all(|c| c.samples == 0 && c.proposed.is_none()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(SignedDuration::from_mins(90)));
        assert_eq!(parse_duration("2d"), Some(SignedDuration::from_hours(48)));
        assert_eq!(parse_duration("45s"), Some(SignedDuration::from_secs(45)));
        for bad in ["", "h", "10", "1x", "-1h", "99999999999999999999h", "500d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(SignedDuration::from_mins(90)), "1h30m");
        assert_eq!(format_duration(SignedDuration::ZERO), "0s");
    }

    #[test]
    fn critical_path_and_remaining() {
        let b = book(vec![
            step("a", StepKind::M365Domain, &[], 10),
            step("b", StepKind::M365Accounts, &["a"], 20),
            step("c", StepKind::Manual, &["a"], 240),
            step("d", StepKind::CrisisReady, &["b", "c"], 0),
        ]);
        assert!(b.check().is_empty(), "{:?}", b.check());
        let s = b.schedule().unwrap();
        assert_eq!(s.critical_path, ["a", "c", "d"]);
        assert_eq!(s.total, SignedDuration::from_mins(250));
        let done: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
        assert_eq!(b.remaining(&done), SignedDuration::from_mins(20));
    }

    #[test]
    fn every_problem_is_reported() {
        let mut bad = step("Bad Id", StepKind::Notify, &["ghost", "Bad Id"], 1);
        bad.instructions = Some("x".into());
        let mut manual = step("m", StepKind::Manual, &["y"], 1);
        manual.instructions = None;
        let b = book(vec![
            bad,
            manual,
            step("y", StepKind::Manual, &["m"], 1),
            step("x", StepKind::DocsRender, &[], 1),
            step("x", StepKind::DocsRender, &[], 1),
        ]);
        let msgs: Vec<String> = b.check().into_iter().map(|d| d.message).collect();
        let all = msgs.join("\n");
        for expected in [
            "must be 1-64 characters",
            "needs parameter \"audience\"",
            "instructions and checklist are for manual steps only",
            "manual step \"m\" needs instructions",
            "duplicate step id \"x\"",
            "needs unknown step \"ghost\"",
            "needs itself",
            "dependency cycle: m → y → m",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in StepKind::ALL {
            assert_eq!(StepKind::parse(k.as_str()), Some(k));
        }
        for s in StepState::ALL {
            assert_eq!(StepState::parse(s.as_str()), Some(s));
        }
        assert_eq!(StepKind::parse("m365.nope"), None);
    }
}
