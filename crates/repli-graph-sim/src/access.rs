//! Who may call what: the application permissions and directory roles granted to the app, put
//! in its access token, and checked on every Graph request the way Graph does (403
//! `Authorization_RequestDenied`). Each route's rule names the documentation page it comes
//! from; where a page is unclear the rule is the stricter reading.

use serde::{Deserialize, Serialize};

/// The application permissions Repli needs, no more (docs/M365.md explains each).
pub const LEAST_PRIVILEGE: [&str; 11] = [
    "Application.Read.All",
    "RoleManagement.Read.Directory",
    "Domain.ReadWrite.All",
    "User.ReadWrite.All",
    "User.RevokeSessions.All",
    "User.DeleteRestore.All",
    "Group.ReadWrite.All",
    "Organization.Read.All",
    "OnlineMeetings.ReadWrite.All",
    "Mail.Read",
    "Files.Read.All",
];

/// The directory role an app needs to reset passwords app-only (user-update, passwordProfile).
pub const USER_ADMINISTRATOR: &str = "User Administrator";
/// Its role template id, as access tokens carry it in `wids`.
pub const USER_ADMINISTRATOR_TEMPLATE: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";

/// Microsoft Graph's application id, the same in every tenant.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The simulated tenant's object id of Microsoft Graph's service principal.
pub const GRAPH_SP_ID: &str = "6d1d3ea1-5b0b-4a6e-9c4e-000000000003";

/// Every permission a rule below names: Microsoft Graph's app roles as the simulator lists them.
pub const KNOWN_PERMISSIONS: &[&str] = &[
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Channel.Create",
    "Channel.ReadBasic.All",
    "ChannelMessage.Read.All",
    "ChannelMessage.Read.Group",
    "ChannelSettings.Read.All",
    "ChannelSettings.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Domain.Read.All",
    "Domain.ReadWrite.All",
    "Files.Read.All",
    "Files.ReadWrite.All",
    "Group.Create",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "LicenseAssignment.Read.All",
    "Mail.Read",
    "Mail.ReadBasic.All",
    "Mail.ReadWrite",
    "LicenseAssignment.ReadWrite.All",
    "OnlineMeetings.ReadWrite.All",
    "Organization.Read.All",
    "Organization.ReadWrite.All",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Team.ReadBasic.All",
    "TeamSettings.Read.All",
    "TeamSettings.ReadWrite.All",
    "Teamwork.Migrate.All",
    "User.DeleteRestore.All",
    "User.Read.All",
    "User.ReadWrite.All",
    "User.RevokeSessions.All",
];

/// A stable GUID-shaped id for `name` (the simulator's app role and object ids; a client must
/// read them from Graph, never assume them).
pub fn role_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h: String = Sha256::digest(name.to_ascii_lowercase().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The object id of the service principal of the app `app_id` in the simulated tenant.
pub fn sp_id(app_id: &str) -> String {
    role_id(&format!("service-principal-{app_id}"))
}

/// What the tenant's administrator granted the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Application permissions with admin consent (the token's `roles`).
    pub app_roles: Vec<String>,
    /// Directory roles assigned to the app's service principal, tenant-wide (`wids`).
    pub directory_roles: Vec<String>,
    /// Directory roles assigned to the app on an administrative unit: they apply to the unit's
    /// members only and are not in the token's `wids` (admin-units-assign-roles).
    pub unit_roles: Vec<UnitRole>,
    /// Microsoft approved the app for Teams' protected APIs (teams-protected-apis: a request
    /// form, reviewed by Microsoft): channel messages answer only then. Not in a token, never
    /// on a new tenant.
    pub teams_protected_apis: bool,
}

/// A directory role scoped to an administrative unit (`directoryScopeId`
/// `/administrativeUnits/{unit}` of a unifiedRoleAssignment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitRole {
    pub role: String,
    /// The administrative unit's object id.
    pub unit: String,
}

/// An administrative unit with dynamic membership whose rule is
/// `user.userPrincipalName -endsWith "<upn_suffix>"` (admin-units-members-dynamic): every user
/// whose UPN ends so is a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUnit {
    pub id: String,
    pub upn_suffix: String,
}

impl AdminUnit {
    /// Whether the user `upn` is a member.
    pub fn contains(&self, upn: &str) -> bool {
        upn.to_ascii_lowercase().ends_with(&self.upn_suffix.to_ascii_lowercase())
    }
}

/// A Teams application access policy granted to the app (New-CsApplicationAccessPolicy, then
/// Grant-CsApplicationAccessPolicy): for one user (`-Identity <object id>`) or for every user of
/// the tenant (`-Global`). It is not in the token: Teams checks it on each meeting call, and a
/// change "can take up to 30 minutes to take effect in Microsoft Graph REST API calls"
/// (cloud-communication-online-meeting-application-access-policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyGrant {
    /// `Grant-CsApplicationAccessPolicy -PolicyName P -Global`: every user, present and future.
    Global,
    /// `Grant-CsApplicationAccessPolicy -PolicyName P -Identity <id>`: that user only.
    User(String),
}

impl PolicyGrant {
    /// Whether this grant covers the organiser `user` (an object id).
    pub fn covers(&self, user: &str) -> bool {
        match self {
            PolicyGrant::Global => true,
            PolicyGrant::User(u) => u.eq_ignore_ascii_case(user),
        }
    }
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            app_roles: LEAST_PRIVILEGE.iter().map(|s| (*s).to_string()).collect(),
            directory_roles: vec![USER_ADMINISTRATOR.to_string()],
            unit_roles: Vec::new(),
            teams_protected_apis: false,
        }
    }
}

impl Grants {
    /// Directory role template ids, as in a token's `wids`.
    pub fn wids(&self) -> Vec<&'static str> {
        self.directory_roles
            .iter()
            .filter(|r| r.eq_ignore_ascii_case(USER_ADMINISTRATOR))
            .map(|_| USER_ADMINISTRATOR_TEMPLATE)
            .collect()
    }
}

/// What one call needs: any one of `any` (the page's application row), and a directory role
/// when the page asks for one.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub any: &'static [&'static str],
    pub role: Option<&'static str>,
}

const DOMAIN_READ: &[&str] = &["Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All"];
const DOMAIN_WRITE: &[&str] = &["Domain.ReadWrite.All"];
const USER_READ: &[&str] = &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
const USER_WRITE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
const GROUP_READ: &[&str] =
    &["GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"];
const GROUP_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
const SP_READ: &[&str] = &["Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"];

/// The rule for `method` on `segments` (relative to `/v1.0`), `None` for routes the simulator
/// does not serve. `password` is true when a PATCH of a user carries `passwordProfile`.
pub fn need(method: &str, segments: &[&str], password: bool) -> Option<Need> {
    let any = |any: &'static [&'static str]| Some(Need { any, role: None });
    match (method, segments) {
        // subscribedsku-list
        ("GET", ["subscribedSkus"]) => any(&[
            "LicenseAssignment.Read.All",
            "Mail.Read",
            "Mail.ReadBasic.All",
            "Mail.ReadWrite",
            "Organization.Read.All",
            "Directory.Read.All",
            "Organization.ReadWrite.All",
            "Directory.ReadWrite.All",
        ]),
        // domain-get, domain-list, domain-list-verificationdnsrecords,
        // domain-list-serviceconfigurationrecords
        ("GET", ["domains", ..]) if segments.last() != Some(&"domainNameReferences") => any(DOMAIN_READ),
        // domain-list-domainnamereferences: Domain.ReadWrite.All only.
        ("GET", ["domains", _, "domainNameReferences"]) => any(DOMAIN_WRITE),
        // domain-verify
        ("POST", ["domains", _, "verify"]) => any(&["Directory.Read.All", "Domain.ReadWrite.All"]),
        // domain-post-domains, domain-update, domain-delete, domain-forcedelete
        ("POST" | "PATCH" | "DELETE", ["domains", ..]) => any(DOMAIN_WRITE),
        // user-list, user-get
        ("GET", ["users"] | ["users", _]) => any(USER_READ),
        // user-update: passwordProfile app-only needs User.ReadWrite.All and at least the User
        // Administrator role.
        ("PATCH", ["users", _]) if password => {
            Some(Need { any: &["User.ReadWrite.All"], role: Some(USER_ADMINISTRATOR) })
        }
        // user-post-users, user-update, user-revokesigninsessions
        ("POST", ["users"]) | ("PATCH", ["users", _]) => any(USER_WRITE),
        // user-revokesigninsessions: application, User.RevokeSessions.All, nothing higher listed
        // (an older version named Directory.ReadWrite.All; User.ReadWrite.All was never on it).
        // The current page is the stricter reading: nothing else is taken as enough.
        ("POST", ["users", _, "revokeSignInSessions"]) => any(&["User.RevokeSessions.All"]),
        // user-assignlicense
        ("POST", ["users", _, "assignLicense"]) => {
            any(&["LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"])
        }
        // user-delete (app-only: User.ReadWrite.All)
        ("DELETE", ["users", _]) => any(&["User.DeleteRestore.All", "User.ReadWrite.All"]),
        // directory-deleteditems-list, -delete (users): User.DeleteRestore.All; stricter than the
        // older page, which allowed no app-only permanent deletion at all.
        ("GET", ["directory", "deletedItems", ..]) => any(&["User.DeleteRestore.All", "User.ReadWrite.All"]),
        ("DELETE", ["directory", "deletedItems", _]) => any(&["User.DeleteRestore.All"]),
        // onlinemeeting-createorget (plus an application access policy, checked by the tenant)
        ("POST", ["users", _, "onlineMeetings", "createOrGet"]) => any(&["OnlineMeetings.ReadWrite.All"]),
        // onlinemeeting-delete (plus the access policy)
        ("DELETE", ["users", _, "onlineMeetings", _]) => any(&["OnlineMeetings.ReadWrite.All"]),
        // serviceprincipal-list (`$filter=appId eq '…'`): who the app is, and Microsoft Graph's
        // app roles (permission names by id).
        ("GET", ["servicePrincipals"]) => any(SP_READ),
        // serviceprincipal-list-approleassignments: what the app was granted (application
        // permissions).
        ("GET", ["servicePrincipals", _, "appRoleAssignments"]) => {
            any(&["Application.Read.All", "Directory.Read.All", "Application.ReadWrite.All", "Directory.ReadWrite.All"])
        }
        // rbacapplication-list-roleassignments (directory provider): its directory roles, whatever
        // their scope (tenant or administrative unit).
        ("GET", ["roleManagement", "directory", "roleAssignments"]) => any(&[
            "RoleManagement.Read.Directory",
            "Directory.Read.All",
            "RoleManagement.ReadWrite.Directory",
            "Directory.ReadWrite.All",
        ]),
        // group-list, group-get, group-list-members
        ("GET", ["groups"] | ["groups", _] | ["groups", _, "members"]) => any(GROUP_READ),
        // group-post-groups
        ("POST", ["groups"]) => any(&["Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"]),
        // group-post-members
        ("POST", ["groups", _, "members", "$ref"]) => {
            any(&["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"])
        }
        // group-update, group-delete (app-only: Group.ReadWrite.All)
        ("PATCH", ["groups", _]) => any(GROUP_WRITE),
        ("DELETE", ["groups", _]) => any(&["Group.ReadWrite.All"]),
        // team-put-teams
        ("PUT", ["groups", _, "team"]) => any(GROUP_WRITE),
        // team-get
        ("GET", ["groups", _, "team"]) => any(&[
            "Team.ReadBasic.All",
            "TeamSettings.Read.All",
            "TeamSettings.ReadWrite.All",
            "Group.Read.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ]),
        // user-list-mailfolders, mailfolder-list-childfolders, user-list-messages: the
        // messages' headers (Mail.ReadBasic.All is enough to list them).
        ("GET", ["users", _, "mailFolders", ..]) => any(&["Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"]),
        // message-get with $value (outlook-get-mime-message): the body, so not ReadBasic.
        ("GET", ["users", _, "messages", _, "$value"]) => any(&["Mail.Read", "Mail.ReadWrite"]),
        // drive-get, driveitem-delta, driveitem-get-content (an account's or a group's drive)
        ("GET", ["users", _, "drive", ..] | ["groups", _, "drive", ..] | ["drives", ..]) => {
            any(&["Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All"])
        }
        // channel-list-messages, chatmessage-list-replies (application: ChannelMessage.Read.Group,
        // resource-specific consent; then ChannelMessage.Read.All, Group.Read.All,
        // Group.ReadWrite.All). They are also protected APIs (teams-protected-apis): without
        // Microsoft's approval (`Grants::teams_protected_apis`) they answer 403 whatever the
        // permissions (`Shared::permitted`).
        ("GET", ["teams", _, "channels", _, "messages", ..]) => {
            any(&["ChannelMessage.Read.Group", "ChannelMessage.Read.All", "Group.Read.All", "Group.ReadWrite.All"])
        }
        // channel-list
        ("GET", ["teams", _, "channels"]) => any(&[
            "Channel.ReadBasic.All",
            "ChannelSettings.Read.All",
            "ChannelSettings.ReadWrite.All",
            "Group.Read.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ]),
        // channel-post
        ("POST", ["teams", _, "channels"]) => {
            any(&["Channel.Create", "Teamwork.Migrate.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"])
        }
        _ => None,
    }
}

/// Whether `grants` satisfy `need`, on a target that is a member of the administrative units
/// for which `in_unit` answers true (a role scoped to a unit covers its members only).
pub fn allows(grants: &Grants, need: &Need, in_unit: impl Fn(&str) -> bool) -> bool {
    let has = |p: &str| grants.app_roles.iter().any(|r| r.eq_ignore_ascii_case(p));
    need.any.iter().any(|p| has(p))
        && need.role.is_none_or(|role| {
            grants.directory_roles.iter().any(|r| r.eq_ignore_ascii_case(role))
                || grants.unit_roles.iter().any(|u| u.role.eq_ignore_ascii_case(role) && in_unit(&u.unit))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_covers_every_call_repli_makes() {
        let g = Grants::default();
        for (m, path, pw) in [
            ("POST", "domains", false),
            ("POST", "domains/x/verify", false),
            ("GET", "domains/x/domainNameReferences", false),
            ("PATCH", "users/x", true),
            ("POST", "users/x/assignLicense", false),
            ("POST", "users/x/revokeSignInSessions", false),
            ("DELETE", "directory/deletedItems/x", false),
            ("PUT", "groups/x/team", false),
            ("POST", "teams/x/channels", false),
            ("POST", "users/x/onlineMeetings/createOrGet", false),
            ("DELETE", "users/x/onlineMeetings/y", false),
            ("GET", "subscribedSkus", false),
            ("GET", "servicePrincipals", false),
            ("GET", "servicePrincipals/x/appRoleAssignments", false),
            ("GET", "roleManagement/directory/roleAssignments", false),
            ("GET", "users/x/mailFolders", false),
            ("GET", "users/x/mailFolders/f/childFolders", false),
            ("GET", "users/x/mailFolders/f/messages", false),
            ("GET", "users/x/messages/m/$value", false),
            ("GET", "users/x/drive/root/delta", false),
            ("GET", "groups/x/drive/root/delta", false),
            ("GET", "drives/d/items/i/content", false),
        ] {
            let segments: Vec<&str> = path.split('/').collect();
            let n = need(m, &segments, pw).unwrap_or_else(|| panic!("no rule for {m} {path}"));
            assert!(allows(&g, &n, |_| false), "{m} {path}");
        }
        // user-revokesigninsessions names User.RevokeSessions.All; User.ReadWrite.All is not on it.
        let revoke = need("POST", &["users", "x", "revokeSignInSessions"], false).unwrap();
        let no_revoke = Grants { app_roles: vec!["User.ReadWrite.All".into()], ..Grants::default() };
        assert!(!allows(&no_revoke, &revoke, |_| false));
        // Mail.ReadBasic.All lists messages but does not read their MIME.
        let basic = Grants { app_roles: vec!["Mail.ReadBasic.All".into()], ..Grants::default() };
        assert!(allows(&basic, &need("GET", &["users", "x", "mailFolders"], false).unwrap(), |_| false));
        assert!(!allows(&basic, &need("GET", &["users", "x", "messages", "m", "$value"], false).unwrap(), |_| false));
        let no_role = Grants { directory_roles: vec![], ..Grants::default() };
        let reset = need("PATCH", &["users", "x"], true).unwrap();
        assert!(!allows(&no_role, &reset, |_| true));
        assert!(allows(&no_role, &need("PATCH", &["users", "x"], false).unwrap(), |_| false));
        // A role on an administrative unit covers that unit's members, and only them.
        let scoped =
            Grants { unit_roles: vec![UnitRole { role: USER_ADMINISTRATOR.into(), unit: "au-1".into() }], ..no_role };
        assert!(allows(&scoped, &reset, |unit| unit == "au-1"));
        assert!(!allows(&scoped, &reset, |unit| unit == "au-2"));
        assert!(!allows(&scoped, &reset, |_| false));
    }
}
