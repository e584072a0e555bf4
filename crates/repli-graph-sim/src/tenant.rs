//! The in-memory tenant and Graph's semantics over it: one `handle` entry point serves both
//! top-level requests and the inner requests of a `$batch`.

use crate::schema;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One request as the tenant sees it (path relative to `/v1.0`).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub eventual: bool,
    pub body: Option<Value>,
}

/// Status, headers and JSON body of an answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply { status, headers: Vec::new(), body: Some(body) }
    }
    fn empty(status: u16) -> Self {
        Reply { status, headers: Vec::new(), body: None }
    }
}

/// Graph's error envelope.
pub fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {"request-id": "00000000-0000-0000-0000-000000000000"}}}),
    )
}

fn not_found(what: &str) -> Reply {
    error(
        404,
        "Request_ResourceNotFound",
        &format!("Resource '{what}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn bad(message: &str) -> Reply {
    error(400, "Request_BadRequest", message)
}

#[derive(Debug)]
struct Domain {
    id: String,
    verified: bool,
    /// A verified root; a subdomain of one is verified at creation.
    root: bool,
    services: Vec<String>,
    txt: String,
    created: Instant,
    /// A `forceDelete` under way: the domain goes away at this instant.
    deleting_until: Option<Instant>,
}

#[derive(Debug)]
struct User {
    id: String,
    upn: String,
    props: Map<String, Value>,
    licenses: Vec<String>,
    revocations: u32,
    created: Instant,
}

#[derive(Debug)]
struct Group {
    id: String,
    nickname: String,
    props: Map<String, Value>,
    owners: Vec<String>,
    members: Vec<String>,
    created: Instant,
}

#[derive(Debug)]
struct Channel {
    id: String,
    name: String,
    description: Option<String>,
}

#[derive(Debug)]
struct Team {
    ready_at: Instant,
    channels: Vec<Channel>,
}

#[derive(Debug)]
struct Meeting {
    id: String,
    organizer: String,
    external_id: String,
    subject: String,
}

#[derive(Debug)]
struct Sku {
    id: String,
    part: String,
    enabled: u32,
}

/// How many objects of each kind a tenant holds (`counts` in `GET /_sim/state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub domains: usize,
    pub users: usize,
    pub groups: usize,
    pub teams: usize,
    pub channels: usize,
    pub online_meetings: usize,
    pub licenses_assigned: usize,
    pub enabled_users: usize,
}

/// One published DNS record (the simulator doubles as the crisis zone's authority).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DnsRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub value: String,
}

/// Tenant settings the simulator was started with.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub base_url: String,
    pub consistency: Duration,
    pub team_delay: Duration,
    pub team_not_found_for: Duration,
    pub licences: u32,
    pub skus: Vec<String>,
    /// Largest page served whatever `$top` asks (Graph: 999 for users).
    pub max_page: usize,
    /// Verifying a verified domain answers 200 (off: Graph's 400).
    pub lenient_verify: bool,
}

/// The whole simulated tenant.
#[derive(Debug)]
pub struct Tenant {
    pub config: TenantConfig,
    rng: fastrand::Rng,
    default_domain: String,
    domains: Vec<Domain>,
    users: Vec<User>,
    /// Soft-deleted users (directory-deleteditems): kept 30 days, they still hold their UPN's
    /// domain.
    deleted: Vec<User>,
    groups: Vec<Group>,
    teams: BTreeMap<String, Team>,
    meetings: Vec<Meeting>,
    skus: Vec<Sku>,
    pub dns: BTreeMap<String, Vec<DnsRecord>>,
}

/// Relationships bound in one request: a group created with owners and members together
/// (group-post-groups), or members added in one PATCH (group-post-members).
const MAX_BINDS: usize = 20;

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Graph's password rule for cloud accounts: 8–256 characters, three of four classes.
fn complex_enough(password: &str) -> bool {
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    (8..=256).contains(&password.chars().count()) && classes.iter().filter(|c| **c).count() >= 3
}

fn bind_ids(value: &Value) -> Result<Vec<String>, Reply> {
    let Value::Array(items) = value else { return Err(bad("An odata.bind annotation must be an array of URLs.")) };
    if items.len() > MAX_BINDS {
        return Err(bad("A maximum of 20 members can be added in a single request."));
    }
    items
        .iter()
        .map(|item| {
            let id = item
                .as_str()
                .and_then(|url| url.trim_end_matches('/').rsplit('/').next())
                .map(|id| id.trim_start_matches("directoryObjects/").to_string())
                .ok_or_else(|| bad("Invalid odata.bind URL."))?;
            // Binds name directory objects by id (group-post-groups, group-post-members: the
            // examples use `directoryObjects/{id}`); a UPN there is not an object identifier.
            if id.contains('@') {
                return Err(bad(&format!("Invalid object identifier '{id}'.")));
            }
            Ok(id)
        })
        .collect()
}

fn odata_list(base: &str, set: &str, items: Vec<Value>) -> Value {
    json!({"@odata.context": format!("{base}/$metadata#{set}"), "value": items})
}

impl Tenant {
    pub fn new(config: TenantConfig, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let skus = config
            .skus
            .iter()
            .map(|part| Sku { id: guid(&mut rng), part: part.clone(), enabled: config.licences })
            .collect();
        Tenant {
            config,
            rng,
            default_domain: "amp-secours.onmicrosoft.com".into(),
            domains: Vec::new(),
            users: Vec::new(),
            deleted: Vec::new(),
            groups: Vec::new(),
            teams: BTreeMap::new(),
            meetings: Vec::new(),
            skus,
            dns: BTreeMap::new(),
        }
    }

    fn visible(&self, created: Instant, now: Instant) -> bool {
        now.saturating_duration_since(created) >= self.config.consistency
    }

    fn guid(&mut self) -> String {
        guid(&mut self.rng)
    }

    /// The user principal name of the user `key` (an object id or a UPN), when visible.
    pub fn user_upn(&self, key: &str, now: Instant) -> Option<String> {
        self.user_index(key, now).map(|i| self.users[i].upn.clone())
    }

    fn user_index(&self, key: &str, now: Instant) -> Option<usize> {
        // Case-insensitive as Graph is, without allocating per user: a 1,000-agent kit makes
        // this a million comparisons, which the benchmark would otherwise measure instead of
        // the client.
        self.users.iter().position(|u| {
            (u.id.eq_ignore_ascii_case(key) || u.upn.eq_ignore_ascii_case(key)) && self.visible(u.created, now)
        })
    }

    /// The user (`users`, by id or UPN) or group (`groups`, by id) a content path names, if it
    /// exists and is visible.
    pub fn owner(&self, set: &str, key: &str, now: Instant) -> Option<crate::content::Owner> {
        match set {
            "users" => self
                .user_index(key, now)
                .map(|i| crate::content::Owner::User { id: self.users[i].id.clone(), upn: self.users[i].upn.clone() }),
            "groups" => {
                self.group_index(key, now).map(|i| crate::content::Owner::Group { id: self.groups[i].id.clone() })
            }
            _ => None,
        }
    }

    fn group_index(&self, id: &str, now: Instant) -> Option<usize> {
        self.groups.iter().position(|g| g.id == id && self.visible(g.created, now))
    }

    fn domain_index(&self, id: &str, now: Instant) -> Option<usize> {
        let id = lower(id);
        self.domains.iter().position(|d| d.id == id && self.visible(d.created, now))
    }

    /// A root domain an administrator added and verified by hand: its subdomains are verified
    /// at creation.
    pub fn seed_verified_domain(&mut self, name: &str) {
        let txt = format!("MS=ms{}", self.rng.u32(10_000_000..100_000_000));
        self.domains.push(Domain {
            id: lower(name),
            verified: true,
            root: true,
            services: vec!["Email".into()],
            txt,
            created: Instant::now() - self.config.consistency,
            deleting_until: None,
        });
    }

    /// A user an administrator made by hand on the initial domain (a designated meeting
    /// organiser, say); returns its id.
    pub fn seed_user(&mut self, local_part: &str) -> String {
        let id = self.guid();
        let mut props = Map::new();
        props.insert("displayName".into(), json!(local_part));
        props.insert("accountEnabled".into(), json!(true));
        let upn = format!("{local_part}@{}", self.default_domain);
        self.users.push(User {
            id: id.clone(),
            upn,
            props,
            licenses: Vec::new(),
            revocations: 0,
            created: Instant::now() - self.config.consistency,
        });
        id
    }

    fn is_usable_domain(&self, domain: &str) -> bool {
        let domain = lower(domain);
        domain == self.default_domain || self.domains.iter().any(|d| d.id == domain && d.verified)
    }

    fn user_json(&self, u: &User) -> Value {
        let mut map = u.props.clone();
        map.remove("passwordProfile");
        map.insert("id".into(), json!(u.id));
        map.insert("userPrincipalName".into(), json!(u.upn));
        map.insert(
            "assignedLicenses".into(),
            Value::Array(u.licenses.iter().map(|s| json!({"skuId": s, "disabledPlans": []})).collect()),
        );
        map.entry("userType").or_insert(json!("Member"));
        map.entry("onPremisesSyncEnabled").or_insert(Value::Null);
        Value::Object(map)
    }

    fn group_json(&self, g: &Group) -> Value {
        let mut map = g.props.clone();
        map.insert("id".into(), json!(g.id));
        map.insert("mail".into(), json!(format!("{}@{}", g.nickname, self.default_domain)));
        Value::Object(map)
    }

    fn domain_json(&self, d: &Domain) -> Value {
        json!({
            "@odata.context": format!("{}/$metadata#domains/$entity", self.config.base_url),
            "id": d.id, "authenticationType": "Managed", "isVerified": d.verified, "isDefault": false,
            "isInitial": false, "isRoot": d.root, "isAdminManaged": true, "supportedServices": d.services,
            "passwordValidityPeriodInDays": 2147483647, "passwordNotificationWindowInDays": 14,
        })
    }

    /// How many objects of each kind the tenant holds (includes objects not yet visible).
    /// Leaves exactly `free` units of each SKU unassigned (an exercise's « licences manquantes »,
    /// or licences bought back): units enabled = units consumed + `free`.
    pub fn set_free_licences(&mut self, free: u32) {
        for sku in &mut self.skus {
            let consumed = self.users.iter().filter(|u| u.licenses.contains(&sku.id)).count() as u32;
            sku.enabled = consumed.saturating_add(free);
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            domains: self.domains.len(),
            users: self.users.len(),
            groups: self.groups.len(),
            teams: self.teams.len(),
            channels: self.teams.values().map(|t| t.channels.len()).sum(),
            online_meetings: self.meetings.len(),
            licenses_assigned: self.users.iter().map(|u| u.licenses.len()).sum(),
            enabled_users: self.users.iter().filter(|u| u.props.get("accountEnabled") != Some(&json!(false))).count(),
        }
    }

    /// Objects and counts per kind, for `GET /_sim/state` (includes objects not yet visible).
    pub fn snapshot(&self) -> Value {
        json!({
            "counts": self.counts(),
            "domains": self.domains.iter().map(|d| json!({"id": d.id, "isVerified": d.verified, "supportedServices": d.services})).collect::<Vec<_>>(),
            "users": self.users.iter().map(|u| json!({
                "id": u.id, "userPrincipalName": u.upn, "accountEnabled": u.props.get("accountEnabled"),
                "usageLocation": u.props.get("usageLocation"), "licenses": u.licenses.len(), "revocations": u.revocations,
            })).collect::<Vec<_>>(),
            "groups": self.groups.iter().map(|g| json!({
                "id": g.id, "mailNickname": g.nickname, "owners": g.owners.len(), "members": g.members.len(),
                "team": self.teams.get(&g.id).map(|t| t.channels.iter().map(|c| c.name.clone()).collect::<Vec<_>>()),
            })).collect::<Vec<_>>(),
            "onlineMeetings": self.meetings.iter().map(|m| json!({"id": m.id, "externalId": m.external_id, "subject": m.subject})).collect::<Vec<_>>(),
            "dns": self.dns,
        })
    }

    /// Serves one Graph request.
    pub fn handle(&mut self, req: &Req, now: Instant) -> Reply {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let body = req.body.clone().unwrap_or(Value::Null);
        // A forced deletion that has run its course is over (domain-forcedelete: asynchronous).
        self.domains.retain(|d| d.deleting_until.is_none_or(|t| now < t));
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["subscribedSkus"]) => self.list_skus(),
            ("GET", ["domains"]) => {
                let items =
                    self.domains.iter().filter(|d| self.visible(d.created, now)).map(|d| self.domain_json(d)).collect();
                Reply::json(200, odata_list(&self.config.base_url, "domains", items))
            }
            ("POST", ["domains"]) => self.create_domain(&body, now),
            ("GET", ["domains", id]) => match self.domain_index(id, now) {
                Some(i) => Reply::json(200, self.domain_json(&self.domains[i])),
                None => not_found(id),
            },
            ("GET", ["directory", "deletedItems", "microsoft.graph.user"]) => {
                let items: Vec<&User> = self.deleted.iter().collect();
                self.page(
                    req,
                    "directory/deletedItems/microsoft.graph.user",
                    items,
                    |u| json!({"id": u.id, "userPrincipalName": u.upn, "displayName": u.props.get("displayName")}),
                )
            }
            ("DELETE", ["directory", "deletedItems", id]) => match self.deleted.iter().position(|u| u.id == *id) {
                Some(i) => {
                    self.deleted.remove(i);
                    Reply::empty(204)
                }
                None => not_found(id),
            },
            ("PATCH", ["domains", id]) => self.update_domain(id, &body, now),
            ("DELETE", ["domains", id]) => self.delete_domain(id, now),
            ("GET", ["domains", id, "verificationDnsRecords"]) => self.verification_records(id, now),
            ("GET", ["domains", id, "serviceConfigurationRecords"]) => self.service_records(id, now),
            ("GET", ["domains", id, "domainNameReferences"]) => self.domain_references(id, now),
            ("POST", ["domains", id, "verify"]) => self.verify_domain(id, &body, now),
            ("POST", ["domains", id, "forceDelete"]) => self.force_delete_domain(id, &body, now),
            ("GET", ["users"]) => self.list_users(req, now),
            ("POST", ["users"]) => self.create_user(&body, now),
            ("GET", ["users", id]) => match self.user_index(id, now) {
                Some(i) => {
                    let mut v = self.user_json(&self.users[i]);
                    if let Value::Object(m) = &mut v {
                        m.insert(
                            "@odata.context".into(),
                            json!(format!("{}/$metadata#users/$entity", self.config.base_url)),
                        );
                    }
                    Reply::json(200, v)
                }
                None => not_found(id),
            },
            ("PATCH", ["users", id]) => self.update_user(id, &body, now),
            ("DELETE", ["users", id]) => match self.user_index(id, now) {
                Some(i) => {
                    let removed = self.users.remove(i);
                    for g in &mut self.groups {
                        g.members.retain(|m| *m != removed.id);
                        g.owners.retain(|m| *m != removed.id);
                    }
                    // user-delete: the user goes to deleted items for 30 days, not away.
                    self.deleted.push(removed);
                    Reply::empty(204)
                }
                None => not_found(id),
            },
            ("POST", ["users", id, "assignLicense"]) => self.assign_license(id, &body, now),
            ("POST", ["users", id, "revokeSignInSessions"]) => match self.user_index(id, now) {
                Some(i) => {
                    self.users[i].revocations += 1;
                    Reply::json(
                        200,
                        json!({"@odata.context": format!("{}/$metadata#Edm.Boolean", self.config.base_url), "value": true}),
                    )
                }
                None => not_found(id),
            },
            ("POST", ["users", id, "onlineMeetings", "createOrGet"]) => self.create_or_get_meeting(id, &body, now),
            // onlinemeeting-delete: 204; a meeting of another organiser, or none, is 404.
            ("DELETE", ["users", user, "onlineMeetings", meeting]) => {
                let Some(u) = self.user_index(user, now) else { return not_found(user) };
                let organizer = self.users[u].id.clone();
                match self.meetings.iter().position(|m| m.id == *meeting && m.organizer == organizer) {
                    Some(i) => {
                        self.meetings.remove(i);
                        Reply::empty(204)
                    }
                    None => not_found(meeting),
                }
            }
            ("GET", ["groups"]) => self.list_groups(req, now),
            ("POST", ["groups"]) => self.create_group(&body, now),
            ("GET", ["groups", id]) => match self.group_index(id, now) {
                Some(i) => Reply::json(200, self.group_json(&self.groups[i])),
                None => not_found(id),
            },
            ("PATCH", ["groups", id]) => self.update_group(id, &body, now),
            ("DELETE", ["groups", id]) => match self.group_index(id, now) {
                Some(i) => {
                    let g = self.groups.remove(i);
                    self.teams.remove(&g.id);
                    Reply::empty(204)
                }
                None => not_found(id),
            },
            ("GET", ["groups", id, "members"]) => match self.group_index(id, now) {
                Some(i) => {
                    let by_id: std::collections::HashMap<&str, &User> =
                        self.users.iter().map(|u| (u.id.as_str(), u)).collect();
                    let items: Vec<&User> =
                        self.groups[i].members.iter().filter_map(|m| by_id.get(m.as_str()).copied()).collect();
                    // group-list-members: "When a group contains more than 100 members, Microsoft
                    // Graph returns a @odata.nextLink" ($top up to 999, as every directory list).
                    self.page(req, &format!("groups/{id}/members"), items, |u| {
                        let mut v = self.user_json(u);
                        if let Value::Object(map) = &mut v {
                            map.insert("@odata.type".into(), json!("#microsoft.graph.user"));
                        }
                        v
                    })
                }
                None => not_found(id),
            },
            ("PUT", ["groups", id, "team"]) => self.create_team(id, &body, now),
            ("POST", ["groups", id, "members", "$ref"]) => self.add_member_ref(id, &body, now),
            ("GET", ["groups", id, "team"]) => self.get_team(id, now),
            ("GET", ["groups", id, "drive"]) => match self.group_index(id, now) {
                Some(i) => {
                    let nick = self.groups[i].nickname.clone();
                    Reply::json(
                        200,
                        json!({
                            "@odata.context": format!("{}/$metadata#drives/$entity", self.config.base_url),
                            "id": format!("b!{}", self.groups[i].id.replace('-', "")), "driveType": "documentLibrary",
                            "name": "Documents", "webUrl": format!("https://ampsecours.sharepoint.com/sites/{nick}/Shared%20Documents"),
                        }),
                    )
                }
                None => not_found(id),
            },
            ("GET", ["teams", id, "channels"]) => self.list_channels(id, now),
            ("POST", ["teams", id, "channels"]) => self.create_channel(id, &body, now),
            _ => error(
                400,
                "BadRequest",
                &format!("Resource not found for the segment '{}'.", segments.first().unwrap_or(&"")),
            ),
        }
    }

    fn list_skus(&self) -> Reply {
        let consumed = |sku: &Sku| self.users.iter().filter(|u| u.licenses.contains(&sku.id)).count();
        let items = self
            .skus
            .iter()
            .map(|s| json!({
                "id": format!("tenant_{}", s.id), "skuId": s.id, "skuPartNumber": s.part, "capabilityStatus": "Enabled",
                "appliesTo": "User", "consumedUnits": consumed(s),
                "prepaidUnits": {"enabled": s.enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
            }))
            .collect();
        Reply::json(200, odata_list(&self.config.base_url, "subscribedSkus", items))
    }

    fn create_domain(&mut self, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("domain", body) {
            return bad(&m);
        }
        let Some(id) = body.get("id").and_then(Value::as_str).map(lower) else {
            return bad("Property 'id' is required.");
        };
        let valid = id.len() <= 253
            && id.contains('.')
            && id
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return bad(&format!("Invalid domain name '{id}'."));
        }
        if self.domains.iter().any(|d| d.id == id) {
            return error(409, "Request_BadRequest", "Domain already exists.");
        }
        let txt = format!("MS=ms{}", self.rng.u32(10_000_000..100_000_000));
        // A subdomain of a verified root is verified at once (domain resource: isRoot; "Add a
        // subdomain": no verification step).
        let parent_verified = self.domains.iter().any(|d| d.verified && d.root && id.ends_with(&format!(".{}", d.id)));
        self.domains.push(Domain {
            id,
            verified: parent_verified,
            root: !parent_verified,
            services: Vec::new(),
            txt,
            created: now,
            deleting_until: None,
        });
        let Some(d) = self.domains.last() else { return error(500, "generalException", "unreachable") };
        Reply::json(201, self.domain_json(d))
    }

    fn update_domain(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("domain", body) {
            return bad(&m);
        }
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        if let Some(services) = body.get("supportedServices") {
            if !self.domains[i].verified {
                return bad("Domain must be verified before services can be enabled.");
            }
            let Some(list) = services.as_array() else { return bad("supportedServices must be an array.") };
            let known =
                ["Email", "OfficeCommunicationsOnline", "Intune", "Sharepoint", "EmailInternalRelayOnly", "Yammer"];
            let mut out = Vec::new();
            for s in list {
                match s.as_str() {
                    Some(s) if known.contains(&s) => out.push(s.to_string()),
                    _ => return bad(&format!("Invalid supported service {s}.")),
                }
            }
            self.domains[i].services = out;
        }
        Reply::empty(204)
    }

    fn references(&self, domain: &str) -> Vec<Value> {
        let suffix = format!("@{domain}");
        self.users
            .iter()
            .filter(|u| lower(&u.upn).ends_with(&suffix))
            .map(|u| json!({"@odata.type": "#microsoft.graph.user", "id": u.id, "userPrincipalName": u.upn}))
            .collect()
    }

    fn delete_domain(&mut self, id: &str, now: Instant) -> Reply {
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        let refs = self.references(&self.domains[i].id);
        if !refs.is_empty() {
            return bad(&format!(
                "Domain '{}' cannot be deleted because it is referenced by {} object(s). Remove the references or use forceDelete.",
                self.domains[i].id,
                refs.len()
            ));
        }
        // Soft-deleted users still hold the domain until they are deleted for good (domain-delete:
        // "any resources or objects still dependent on the domain").
        let suffix = format!("@{}", self.domains[i].id);
        let held = self.deleted.iter().filter(|u| lower(&u.upn).ends_with(&suffix)).count();
        if held > 0 {
            return bad(&format!(
                "Unable to remove this domain: {held} deleted user(s) still use it. Delete them permanently from deleted items first."
            ));
        }
        self.domains.remove(i);
        Reply::empty(204)
    }

    fn force_delete_domain(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate_action("domain.forceDelete", body) {
            return bad(&m);
        }
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        // domain-forcedelete: "Prior to calling forceDelete, you must update or remove any
        // references to Exchange as the provisioning service": read strictly, the domain may
        // no longer list Email among its supported services.
        if self.domains[i].services.iter().any(|s| s == "Email") {
            return bad(&format!(
                "Domain '{}' is still used by Exchange as a provisioning service: remove the Email service before forceDelete.",
                self.domains[i].id
            ));
        }
        let domain = self.domains[i].id.clone();
        let disable = body.get("disableUserAccounts").and_then(Value::as_bool).unwrap_or(true);
        let suffix = format!("@{domain}");
        let refs = self.users.iter().filter(|u| lower(&u.upn).ends_with(&suffix)).count();
        if refs > 1000 {
            return bad("forceDelete renames at most 1,000 references.");
        }
        let default = self.default_domain.clone();
        for u in self.users.iter_mut().chain(self.deleted.iter_mut()) {
            if lower(&u.upn).ends_with(&suffix) {
                let local = u.upn.split('@').next().unwrap_or("user").to_string();
                u.upn = format!("{local}@{default}");
                if disable {
                    u.props.insert("accountEnabled".into(), json!(false));
                }
            }
        }
        // Asynchronous (domain-forcedelete): the domain stays readable until the operation ends.
        self.domains[i].deleting_until = Some(now + self.config.team_delay);
        Reply::empty(204)
    }

    fn verification_records(&self, id: &str, now: Instant) -> Reply {
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        let d = &self.domains[i];
        let items = vec![
            json!({"@odata.type": "#microsoft.graph.domainDnsTxtRecord", "id": "aceff52c-06a5-447f-ac5f-256ad243cc5c",
                   "isOptional": false, "label": d.id, "recordType": "Txt", "supportedService": "Email", "ttl": 3600, "text": d.txt}),
            json!({"@odata.type": "#microsoft.graph.domainDnsMxRecord", "id": "5fbde38c-0865-497f-82b1-126f596bcee9",
                   "isOptional": false, "label": d.id, "recordType": "Mx", "supportedService": "Email", "ttl": 3600,
                   "mailExchange": format!("{}.msv1.invalid", d.txt.trim_start_matches("MS=")), "preference": 32767}),
        ];
        Reply::json(
            200,
            odata_list(&self.config.base_url, &format!("domains('{}')/verificationDnsRecords", d.id), items),
        )
    }

    fn service_records(&self, id: &str, now: Instant) -> Reply {
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        let d = &self.domains[i];
        let mut items = Vec::new();
        let dashed = d.id.replace('.', "-");
        if d.services.iter().any(|s| s == "Email") {
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsMxRecord", "id": "mx", "isOptional": false, "label": d.id,
                "recordType": "Mx", "supportedService": "Email", "ttl": 3600, "mailExchange": format!("{dashed}.mail.protection.outlook.com"), "preference": 0}));
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsTxtRecord", "id": "spf", "isOptional": false, "label": d.id,
                "recordType": "Txt", "supportedService": "Email", "ttl": 3600, "text": "v=spf1 include:spf.protection.outlook.com -all"}));
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsCnameRecord", "id": "autodiscover", "isOptional": false,
                "label": format!("autodiscover.{}", d.id), "recordType": "CName", "supportedService": "Email", "ttl": 3600, "canonicalName": "autodiscover.outlook.com"}));
        }
        if d.services.iter().any(|s| s == "OfficeCommunicationsOnline") {
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsCnameRecord", "id": "sip", "isOptional": false,
                "label": format!("sip.{}", d.id), "recordType": "CName", "supportedService": "OfficeCommunicationsOnline", "ttl": 3600, "canonicalName": "sipdir.online.lync.com"}));
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsCnameRecord", "id": "lyncdiscover", "isOptional": false,
                "label": format!("lyncdiscover.{}", d.id), "recordType": "CName", "supportedService": "OfficeCommunicationsOnline", "ttl": 3600, "canonicalName": "webdir.online.lync.com"}));
            // Microsoft's documented Teams records: the owner of an SRV record is
            // `_service._protocol.<label>`, so its label is the domain itself.
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsSrvRecord", "id": "sip-tls", "isOptional": false,
                "label": d.id, "recordType": "Srv", "supportedService": "OfficeCommunicationsOnline", "ttl": 3600,
                "nameTarget": "sipdir.online.lync.com", "port": 443, "priority": 100, "protocol": "_tls", "service": "_sip", "weight": 1}));
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsSrvRecord", "id": "sipfed", "isOptional": false,
                "label": d.id, "recordType": "Srv", "supportedService": "OfficeCommunicationsOnline", "ttl": 3600,
                "nameTarget": "sipfed.online.lync.com", "port": 5061, "priority": 100, "protocol": "_tcp", "service": "_sipfederationtls", "weight": 1}));
        }
        if d.services.iter().any(|s| s == "Intune") {
            // Optional: device registration works without them (isOptional true).
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsCnameRecord", "id": "enterpriseregistration", "isOptional": true,
                "label": format!("enterpriseregistration.{}", d.id), "recordType": "CName", "supportedService": "Intune", "ttl": 3600, "canonicalName": "enterpriseregistration.windows.net"}));
            items.push(json!({"@odata.type": "#microsoft.graph.domainDnsCnameRecord", "id": "enterpriseenrollment", "isOptional": true,
                "label": format!("enterpriseenrollment.{}", d.id), "recordType": "CName", "supportedService": "Intune", "ttl": 3600, "canonicalName": "enterpriseenrollment-s.manage.microsoft.com"}));
        }
        Reply::json(
            200,
            odata_list(&self.config.base_url, &format!("domains('{}')/serviceConfigurationRecords", d.id), items),
        )
    }

    fn domain_references(&self, id: &str, now: Instant) -> Reply {
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        let refs = self.references(&self.domains[i].id);
        Reply::json(200, odata_list(&self.config.base_url, "directoryObjects", refs))
    }

    fn verify_domain(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate_action("domain.verify", body) {
            return bad(&m);
        }
        let Some(i) = self.domain_index(id, now) else { return not_found(id) };
        let d = &self.domains[i];
        // domain-verify: "Only applies to an unverified domain." A verified domain (a subdomain
        // of a verified root is one from its creation) is refused with 400.
        if d.verified && self.config.lenient_verify {
            return Reply::json(200, self.domain_json(d));
        }
        if d.verified {
            return bad(&format!(
                "Domain '{}' is already verified: this operation only applies to an unverified domain.",
                d.id
            ));
        }
        let published = self.dns.values().flatten().any(|r| {
            r.kind.eq_ignore_ascii_case("TXT") && lower(r.name.trim_end_matches('.')) == d.id && r.value == d.txt
        });
        if !published {
            return bad(&format!("Domain verification failed: the TXT record '{}' was not found at {}.", d.txt, d.id));
        }
        self.domains[i].verified = true;
        Reply::json(200, self.domain_json(&self.domains[i]))
    }

    fn list_users(&self, req: &Req, now: Instant) -> Reply {
        let filter = req.query.get("$filter").map(String::as_str).unwrap_or("");
        let matcher: Box<dyn Fn(&User) -> bool> = if filter.is_empty() {
            Box::new(|_| true)
        } else if let Some(v) = parse_eq(filter, "userPrincipalName") {
            Box::new(move |u: &User| lower(&u.upn) == lower(&v))
        } else if let Some(v) = parse_endswith(filter, "userPrincipalName") {
            if !req.eventual || req.query.get("$count").map(String::as_str) != Some("true") {
                return error(
                    400,
                    "Request_UnsupportedQuery",
                    "Operator 'endsWith' is not supported because the required parameters might be missing. Try adding $count with a value of true and the ConsistencyLevel header with a value of eventual.",
                );
            }
            Box::new(move |u: &User| lower(&u.upn).ends_with(&lower(&v)))
        } else {
            return error(400, "Request_UnsupportedQuery", "Unsupported Query.");
        };
        let items: Vec<&User> = self.users.iter().filter(|u| self.visible(u.created, now) && matcher(u)).collect();
        self.page(req, "users", items, |u| self.user_json(u))
    }

    /// One page of `items`, each rendered (only those of the page: a 1,000-account listing
    /// renders 999, not 1,000 twice) with the properties `$select` names, as Graph answers.
    fn page<T>(&self, req: &Req, set: &str, items: Vec<T>, render: impl Fn(T) -> Value) -> Reply {
        let top = match req.query.get("$top").map(|t| t.parse::<usize>()) {
            None => 100.min(self.config.max_page.max(1)),
            Some(Ok(t)) if (1..=999).contains(&t) => t.min(self.config.max_page.max(1)),
            Some(_) => return bad("Invalid page size specified: must be between 1 and 999."),
        };
        let skip = match req.query.get("$skiptoken").map(|t| t.parse::<usize>()) {
            None => 0,
            Some(Ok(s)) => s,
            Some(Err(_)) => return bad("Invalid $skiptoken."),
        };
        let total = items.len();
        let select: Option<Vec<&str>> = req.query.get("$select").map(|s| s.split(',').map(str::trim).collect());
        let page: Vec<Value> = items
            .into_iter()
            .skip(skip)
            .take(top)
            .map(|item| match (render(item), &select) {
                (Value::Object(map), Some(names)) => Value::Object(
                    map.into_iter().filter(|(k, _)| k.starts_with("@odata.") || names.contains(&k.as_str())).collect(),
                ),
                (v, _) => v,
            })
            .collect();
        let mut out = json!({"@odata.context": format!("{}/$metadata#{set}", self.config.base_url), "value": page});
        if req.query.get("$count").map(String::as_str) == Some("true") {
            out["@odata.count"] = json!(total);
        }
        if skip + top < total {
            let mut query: Vec<String> = req
                .query
                .iter()
                .filter(|(k, _)| k.as_str() != "$skiptoken")
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            query.push(format!("$skiptoken={}", skip + top));
            out["@odata.nextLink"] = json!(format!("{}/{set}?{}", self.config.base_url, query.join("&")));
        }
        Reply::json(200, out)
    }

    fn create_user(&mut self, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("user", body) {
            return bad(&m);
        }
        for required in ["accountEnabled", "displayName", "mailNickname", "passwordProfile", "userPrincipalName"] {
            if body.get(required).is_none_or(Value::is_null) {
                return bad(&format!("Invalid value specified for property '{required}' of resource 'User'."));
            }
        }
        let upn = body.get("userPrincipalName").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some((local, domain)) = upn.split_once('@') else {
            return bad("Invalid value specified for property 'userPrincipalName' of resource 'User'.");
        };
        if local.is_empty() || local.len() > 64 || local.contains(['@', ' ', '"']) {
            return bad("Invalid value specified for property 'userPrincipalName' of resource 'User'.");
        }
        if !self.is_usable_domain(domain) {
            return bad(
                "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
            );
        }
        let password = body.pointer("/passwordProfile/password").and_then(Value::as_str).unwrap_or_default();
        if !complex_enough(password) {
            return bad(
                "The specified password does not comply with password complexity requirements. Please provide a different password.",
            );
        }
        if self.users.iter().any(|u| u.upn.eq_ignore_ascii_case(&upn)) {
            return bad("Another object with the same value for property userPrincipalName already exists.");
        }
        let Value::Object(props) = body.clone() else { return bad("Invalid body.") };
        let user = User { id: self.guid(), upn, props, licenses: Vec::new(), revocations: 0, created: now };
        let mut v = self.user_json(&user);
        if let Value::Object(m) = &mut v {
            m.insert("@odata.context".into(), json!(format!("{}/$metadata#users/$entity", self.config.base_url)));
        }
        self.users.push(user);
        Reply::json(201, v)
    }

    fn update_user(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("user", body) {
            return bad(&m);
        }
        let Some(i) = self.user_index(id, now) else { return not_found(id) };
        if let Some(password) = body.pointer("/passwordProfile/password").and_then(Value::as_str)
            && !complex_enough(password)
        {
            return bad(
                "The specified password does not comply with password complexity requirements. Please provide a different password.",
            );
        }
        if let Value::Object(map) = body {
            for (k, v) in map {
                if k == "userPrincipalName" || k == "id" {
                    continue;
                }
                self.users[i].props.insert(k.clone(), v.clone());
            }
        }
        Reply::empty(204)
    }

    fn assign_license(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate_action("user.assignLicense", body) {
            return bad(&m);
        }
        let Some(i) = self.user_index(id, now) else { return not_found(id) };
        let add: Vec<String> = body
            .get("addLicenses")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|l| l.get("skuId").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        let remove: Vec<String> = body
            .get("removeLicenses")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if body.get("addLicenses").is_none() || body.get("removeLicenses").is_none() {
            return bad("Both addLicenses and removeLicenses are required.");
        }
        if !add.is_empty() && self.users[i].props.get("usageLocation").and_then(Value::as_str).is_none_or(str::is_empty)
        {
            return bad("License assignment cannot be done for user with invalid usage location.");
        }
        for sku_id in &add {
            let Some(sku) = self.skus.iter().find(|s| &s.id == sku_id) else {
                return bad(&format!("License {sku_id} does not correspond to a valid company License."));
            };
            let consumed = self.users.iter().filter(|u| u.licenses.contains(sku_id)).count() as u32;
            if !self.users[i].licenses.contains(sku_id) && consumed >= sku.enabled {
                return bad(&format!("Subscription {} does not have any available licenses.", sku.part));
            }
        }
        let user = &mut self.users[i];
        user.licenses.retain(|l| !remove.contains(l));
        for sku in add {
            if !user.licenses.contains(&sku) {
                user.licenses.push(sku);
            }
        }
        let v = self.user_json(&self.users[i]);
        Reply::json(200, v)
    }

    fn create_or_get_meeting(&mut self, organizer: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate_action("onlineMeeting.createOrGet", body) {
            return bad(&m);
        }
        // App-only createOrGet names the organiser by object id (onlinemeeting-createorget);
        // by UPN, Graph answers 404 (msgraph-sdk-dotnet#1215), which a client must not retry.
        if organizer.contains('@') {
            return not_found(organizer);
        }
        let Some(i) = self.user_index(organizer, now) else { return not_found(organizer) };
        let Some(external_id) = body.get("externalId").and_then(Value::as_str) else {
            return bad("externalId is required.");
        };
        let organizer_id = self.users[i].id.clone();
        let subject = body.get("subject").and_then(Value::as_str).unwrap_or_default().to_string();
        let (status, m) =
            match self.meetings.iter().position(|m| m.organizer == organizer_id && m.external_id == external_id) {
                Some(j) => (200, j),
                None => {
                    let id = self.guid();
                    self.meetings.push(Meeting {
                        id,
                        organizer: organizer_id,
                        external_id: external_id.to_string(),
                        subject,
                    });
                    (201, self.meetings.len() - 1)
                }
            };
        let m = &self.meetings[m];
        Reply::json(
            status,
            json!({
                "@odata.context": format!("{}/$metadata#users('{organizer}')/onlineMeetings/$entity", self.config.base_url),
                "id": m.id, "externalId": m.external_id, "subject": m.subject,
                "joinWebUrl": format!("https://teams.microsoft.com/l/meetup-join/19%3ameeting_{}%40thread.v2/0", m.id.replace('-', "")),
            }),
        )
    }

    fn list_groups(&self, req: &Req, now: Instant) -> Reply {
        let filter = req.query.get("$filter").map(String::as_str).unwrap_or("");
        let nickname = if filter.is_empty() {
            None
        } else if let Some(v) = parse_eq(filter, "mailNickname") {
            Some(v)
        } else {
            return error(400, "Request_UnsupportedQuery", "Unsupported Query.");
        };
        let items = self
            .groups
            .iter()
            .filter(|g| {
                self.visible(g.created, now) && nickname.as_ref().is_none_or(|n| lower(n) == lower(&g.nickname))
            })
            .collect::<Vec<_>>();
        self.page(req, "groups", items, |g| self.group_json(g))
    }

    fn resolve_binds(&self, body: &Value, key: &str, now: Instant) -> Result<Vec<String>, Reply> {
        let Some(value) = body.get(key) else { return Ok(Vec::new()) };
        let ids = bind_ids(value)?;
        ids.iter()
            .map(|id| self.user_index(id, now).map(|i| self.users[i].id.clone()).ok_or_else(|| not_found(id)))
            .collect()
    }

    fn create_group(&mut self, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("group", body) {
            return bad(&m);
        }
        for required in ["displayName", "mailEnabled", "mailNickname", "securityEnabled"] {
            if body.get(required).is_none_or(Value::is_null) {
                return bad(&format!("Invalid value specified for property '{required}' of resource 'Group'."));
            }
        }
        let nickname = body.get("mailNickname").and_then(Value::as_str).unwrap_or_default().to_string();
        if nickname.is_empty()
            || nickname.len() > 64
            || !nickname.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad("Invalid value specified for property 'mailNickname' of resource 'Group'.");
        }
        if self.groups.iter().any(|g| lower(&g.nickname) == lower(&nickname)) {
            return bad("Another object with the same value for property proxyAddresses already exists.");
        }
        // Create group (group-post-groups): owners and members bound at creation are at most 20
        // relationships together; the rest are added afterwards.
        let binds = |key: &str| body.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        if binds("owners@odata.bind") + binds("members@odata.bind") > MAX_BINDS {
            return bad(&format!(
                "The total number of owners and members that can be added when creating a group is limited to {MAX_BINDS}."
            ));
        }
        let owners = match self.resolve_binds(body, "owners@odata.bind", now) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let members = match self.resolve_binds(body, "members@odata.bind", now) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let Value::Object(mut props) = body.clone() else { return bad("Invalid body.") };
        props.retain(|k, _| !k.contains('@'));
        let group = Group { id: self.guid(), nickname, props, owners, members, created: now };
        let mut v = self.group_json(&group);
        if let Value::Object(m) = &mut v {
            m.insert("@odata.context".into(), json!(format!("{}/$metadata#groups/$entity", self.config.base_url)));
        }
        self.groups.push(group);
        Reply::json(201, v)
    }

    fn update_group(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("group", body) {
            return bad(&m);
        }
        let Some(i) = self.group_index(id, now) else { return not_found(id) };
        let members = match self.resolve_binds(body, "members@odata.bind", now) {
            Ok(m) => m,
            Err(r) => return r,
        };
        let owners = match self.resolve_binds(body, "owners@odata.bind", now) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let g = &mut self.groups[i];
        for m in members {
            if g.members.contains(&m) {
                return bad(
                    "One or more added object references already exist for the following modified properties: 'members'.",
                );
            }
            g.members.push(m);
        }
        for o in owners {
            if !g.owners.contains(&o) {
                g.owners.push(o);
            }
        }
        if let Value::Object(map) = body {
            for (k, v) in map {
                if !k.contains('@') && k != "mailNickname" {
                    g.props.insert(k.clone(), v.clone());
                }
            }
        }
        Reply::empty(204)
    }

    fn create_team(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("team", body) {
            return bad(&m);
        }
        let Some(i) = self.group_index(id, now) else { return not_found(id) };
        let g = &self.groups[i];
        // team-put-teams: a group created less than 15 minutes ago may answer 404 (replication);
        // Microsoft advises retrying 10 s apart.
        if now.saturating_duration_since(g.created) < self.config.team_not_found_for {
            return error(
                404,
                "NotFound",
                "Failed to execute Templates backend request CreateTeamFromGroupWithTemplateRequest. Group not found.",
            );
        }
        if !g.props.get("groupTypes").and_then(Value::as_array).is_some_and(|t| t.iter().any(|x| x == "Unified")) {
            return bad("A team can only be created from a Microsoft 365 group (groupTypes Unified).");
        }
        if g.owners.is_empty() {
            return bad("The group must have at least one owner to create a team with application permissions.");
        }
        // A Team's owner must hold a licence that includes Teams, even app-only: Graph answers
        // 403 GetApplicableSkuCategoriesForUserFailed otherwise (microsoft-graph-docs#10353
        // "team owner requirements", msgraph-sdk-powershell#3035). team-put-teams does not say
        // it; the simulator is stricter than the page: a SKU includes Teams unless its part
        // number says `no_Teams` (the EEA suites).
        let teams_skus: Vec<&str> = self
            .skus
            .iter()
            .filter(|s| !s.part.to_ascii_lowercase().contains("no_teams"))
            .map(|s| s.id.as_str())
            .collect();
        let unlicensed = g.owners.iter().find(|o| {
            self.users
                .iter()
                .find(|u| &u.id == *o)
                .is_none_or(|u| !u.licenses.iter().any(|l| teams_skus.contains(&l.as_str())))
        });
        if let Some(owner) = unlicensed {
            return error(
                403,
                "Forbidden",
                &format!(
                    "Failed to execute Templates backend request CreateTeamFromGroupWithTemplateRequest. Error code: 'GetApplicableSkuCategoriesForUserFailed' for owner {owner}."
                ),
            );
        }
        let group_id = g.id.clone();
        if self.teams.contains_key(&group_id) {
            return error(409, "Conflict", "A team already exists for this group.");
        }
        let general = self.guid();
        self.teams.insert(
            group_id.clone(),
            Team {
                // Its channels answer once the Team's back end has caught up.
                ready_at: now + self.config.team_delay,
                channels: vec![Channel {
                    id: format!("19:{}@thread.tacv2", general.replace('-', "")),
                    name: "General".into(),
                    description: None,
                }],
            },
        );
        // team-put-teams: 201 Created with the team.
        Reply::json(
            201,
            json!({
                "@odata.context": format!("{}/$metadata#teams/$entity", self.config.base_url), "id": group_id,
                "isArchived": false, "webUrl": format!("https://teams.microsoft.com/l/team/19%3a{}%40thread.tacv2/conversations", group_id.replace('-', "")),
            }),
        )
    }

    /// group-post-members: one directory object by `@odata.id`; 204, 400 when already a member,
    /// 404 when the object does not exist.
    fn add_member_ref(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        let Some(i) = self.group_index(id, now) else { return not_found(id) };
        let Some(url) = body.get("@odata.id").and_then(Value::as_str) else {
            return bad("The request body must carry '@odata.id'.");
        };
        let ids = match bind_ids(&json!([url])) {
            Ok(ids) => ids,
            Err(r) => return r,
        };
        let Some(member) = ids.first().and_then(|m| self.user_index(m, now)).map(|u| self.users[u].id.clone()) else {
            return not_found(ids.first().map_or("", String::as_str));
        };
        if self.groups[i].members.contains(&member) {
            return bad(
                "One or more added object references already exist for the following modified properties: 'members'.",
            );
        }
        self.groups[i].members.push(member);
        Reply::empty(204)
    }

    fn team_ready(&self, group_id: &str, now: Instant) -> bool {
        self.teams.get(group_id).is_some_and(|t| now >= t.ready_at)
    }

    fn get_team(&self, id: &str, now: Instant) -> Reply {
        if self.group_index(id, now).is_none() || !self.team_ready(id, now) {
            return error(404, "NotFound", "No team found with Group Id");
        }
        Reply::json(
            200,
            json!({
                "@odata.context": format!("{}/$metadata#teams/$entity", self.config.base_url), "id": id,
                "isArchived": false, "webUrl": format!("https://teams.microsoft.com/l/team/19%3a{}%40thread.tacv2/conversations", id.replace('-', "")),
            }),
        )
    }

    fn list_channels(&self, id: &str, now: Instant) -> Reply {
        if !self.team_ready(id, now) {
            return error(404, "NotFound", "No team found with Group Id");
        }
        let items = self.teams.get(id).map(|t| {
            t.channels.iter().map(|c| json!({"id": c.id, "displayName": c.name, "description": c.description, "membershipType": "standard"})).collect()
        });
        Reply::json(
            200,
            odata_list(&self.config.base_url, &format!("teams('{id}')/channels"), items.unwrap_or_default()),
        )
    }

    fn create_channel(&mut self, id: &str, body: &Value, now: Instant) -> Reply {
        if let Err(m) = schema::validate("channel", body) {
            return bad(&m);
        }
        if !self.team_ready(id, now) {
            return error(404, "NotFound", "No team found with Group Id");
        }
        let Some(name) = body.get("displayName").and_then(Value::as_str).map(str::to_string) else {
            return bad("displayName is required.");
        };
        if name.is_empty()
            || name.chars().count() > 50
            || name.contains(['~', '#', '%', '&', '*', '{', '}', '+', '/', '\\', ':', '<', '>', '?', '|', '\'', '"'])
        {
            return bad("Channel name contains invalid characters or is too long.");
        }
        let description = body.get("description").and_then(Value::as_str).map(str::to_string);
        let cid = format!("19:{}@thread.tacv2", self.guid().replace('-', ""));
        let Some(team) = self.teams.get_mut(id) else { return not_found(id) };
        if team.channels.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
            return bad("Channel name already existed, please use other name.");
        }
        team.channels.push(Channel { id: cid.clone(), name: name.clone(), description: description.clone() });
        Reply::json(
            201,
            json!({"@odata.context": format!("{}/$metadata#teams('{id}')/channels/$entity", self.config.base_url),
            "id": cid, "displayName": name, "description": description, "membershipType": "standard"}),
        )
    }
}

pub(crate) fn parse_eq(filter: &str, property: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix(property)?.trim_start().strip_prefix("eq")?.trim();
    let inner = rest.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

fn parse_endswith(filter: &str, property: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix("endswith(")?.strip_prefix(property)?.trim_start().strip_prefix(',')?.trim();
    let inner = rest.strip_suffix(')')?.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'$' | b'(' | b')' | b',' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A random GUID in Graph's 8-4-4-4-12 form.
pub fn guid(rng: &mut fastrand::Rng) -> String {
    let a = rng.u128(..);
    let h = format!("{a:032x}");
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}
