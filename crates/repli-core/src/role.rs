//! Roles and the one policy table: which role may do what. Scoping a DGS to their own commune
//! is checked alongside, by [`Actor::may_see_commune`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::insee::InseeCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Users, tokens, configuration.
    Admin,
    /// The metropole's operations team.
    Ops,
    /// A commune's directeur général des services, bound to one INSEE code.
    Dgs,
    /// Read-only, every commune.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Admin, Self::Ops, Self::Dgs, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Ops => "ops",
            Self::Dgs => "dgs",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role (expected admin, ops, dgs or auditor)")]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(UnknownRole)
    }
}

/// Everything the API lets someone do. Each route maps to exactly one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read one's own account (`/me`), sign out.
    OwnAccount,
    /// Create users, issue and revoke tokens.
    ManageUsers,
    /// Read the list of communes and their convention status.
    ReadCommunes,
    /// Read crises (a DGS: their own commune's only).
    ReadCrises,
    /// Request a kit (a DGS for their commune; ops on behalf of a DGS who phoned).
    RequestCrisis,
    /// Cancel a crisis that has not been provisioned (a DGS: their own).
    CancelCrisis,
    /// Activate, reject, drive provisioning, delivery and hand-back.
    OperateCrisis,
    /// Read the audit log.
    ReadAudit,
    /// Write to a crisis's main courante and its legal facts (a DGS: their own).
    WriteCrisisLog,
    /// Read the SLA compliance report.
    ReadSlaReport,
    /// Read the equipment pool and item histories.
    ReadInventory,
    /// Import, lend, take back, wipe, write off equipment.
    ManageInventory,
    /// Scrape the supervision metrics (counts only: no name, no commune).
    ReadMetrics,
    /// Start an exercise (a drill marked EXERCICE) for one or several communes.
    RunExercises,
    /// Read the exercises and their injects.
    ReadExercises,
    /// Download the data hand-back's archive: the commune's own mail and files (a DGS: their
    /// own). Auditors check its manifest's hash in the audit log, not the mail itself.
    DownloadHandback,
}

impl Permission {
    /// The policy table.
    /// The permission's name in the API's documents (`operate_crisis`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OwnAccount => "own_account",
            Self::ManageUsers => "manage_users",
            Self::ReadCommunes => "read_communes",
            Self::ReadCrises => "read_crises",
            Self::RequestCrisis => "request_crisis",
            Self::CancelCrisis => "cancel_crisis",
            Self::OperateCrisis => "operate_crisis",
            Self::ReadAudit => "read_audit",
            Self::WriteCrisisLog => "write_crisis_log",
            Self::ReadSlaReport => "read_sla_report",
            Self::ReadInventory => "read_inventory",
            Self::ManageInventory => "manage_inventory",
            Self::ReadMetrics => "read_metrics",
            Self::RunExercises => "run_exercises",
            Self::ReadExercises => "read_exercises",
            Self::DownloadHandback => "download_handback",
        }
    }

    pub fn allowed(self, role: Role) -> bool {
        use Permission as P;
        use Role as R;
        // Least privilege: the admin manages accounts and sees no crisis; auditors read
        // everything and change nothing; only ops operate.
        match self {
            P::OwnAccount | P::ReadCommunes => true,
            P::ManageUsers => role == R::Admin,
            P::ReadCrises => matches!(role, R::Ops | R::Dgs | R::Auditor),
            P::RequestCrisis | P::CancelCrisis | P::WriteCrisisLog => {
                matches!(role, R::Ops | R::Dgs)
            }
            P::OperateCrisis => role == R::Ops,
            P::ReadAudit => role == R::Auditor,
            P::ReadSlaReport | P::ReadInventory => matches!(role, R::Ops | R::Auditor),
            P::ManageInventory => role == R::Ops,
            // The service's operators: counts, no personal data.
            P::ReadMetrics => matches!(role, R::Ops | R::Admin),
            // Drills are run by ops; auditors review them like any crisis.
            P::RunExercises => role == R::Ops,
            P::ReadExercises => matches!(role, R::Ops | R::Auditor),
            P::DownloadHandback => matches!(role, R::Ops | R::Dgs),
        }
    }
}

/// How an actor proved who they are; recorded in every audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// An API token (CLI, scripts).
    Token,
    /// A web session opened with a password.
    Password,
    /// Someone with access to the daemon's host and database (e.g. `replid user add`).
    Local,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Password => "password",
            Self::Local => "local",
        }
    }
}

/// Who is acting: an authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    /// Set for a DGS only: the commune they speak for.
    pub commune: Option<InseeCode>,
    pub auth: AuthMethod,
}

impl Actor {
    pub fn may(&self, p: Permission) -> bool {
        p.allowed(self.role)
    }

    /// A DGS sees only their own commune; every other role sees all.
    pub fn may_see_commune(&self, insee: &InseeCode) -> bool {
        match self.role {
            Role::Dgs => self.commune.as_ref() == Some(insee),
            Role::Admin | Role::Ops | Role::Auditor => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role, commune: Option<&str>) -> Actor {
        Actor {
            user_id: 1,
            name: "x".into(),
            role,
            commune: commune.map(|c| InseeCode::parse(c).unwrap()),
            auth: AuthMethod::Token,
        }
    }

    #[test]
    fn auditors_never_write() {
        for p in [Permission::RequestCrisis, Permission::CancelCrisis, Permission::OperateCrisis] {
            assert!(!p.allowed(Role::Auditor));
        }
    }

    #[test]
    fn admins_manage_accounts_only() {
        for p in [Permission::ReadCrises, Permission::RequestCrisis, Permission::OperateCrisis, Permission::ReadAudit] {
            assert!(!p.allowed(Role::Admin), "{p:?}");
        }
        assert!(Permission::ManageUsers.allowed(Role::Admin));
        assert!(Role::ALL.iter().filter(|r| Permission::ManageUsers.allowed(**r)).count() == 1);
    }

    #[test]
    fn only_ops_operate() {
        for r in Role::ALL {
            assert_eq!(Permission::OperateCrisis.allowed(r), r == Role::Ops, "{r}");
        }
    }

    #[test]
    fn dgs_is_scoped() {
        let a = actor(Role::Dgs, Some("13005"));
        assert!(a.may_see_commune(&InseeCode::parse("13005").unwrap()));
        assert!(!a.may_see_commune(&InseeCode::parse("13001").unwrap()));
        assert!(actor(Role::Auditor, None).may_see_commune(&InseeCode::parse("13001").unwrap()));
        // A DGS record without a commune sees nothing.
        assert!(!actor(Role::Dgs, None).may_see_commune(&InseeCode::parse("13001").unwrap()));
    }

    #[test]
    fn role_strings_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
