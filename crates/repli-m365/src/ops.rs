//! The Microsoft 365 operations, each idempotent: look up by a deterministic key, create what
//! is missing, and treat "already exists" (a crashed earlier run, or replication lag) as found.

use crate::client::{Graph, GraphConfig, Item, OWNER_UNLICENSED, Opts, Reply};
use crate::wire::{self, DnsRecordData, DomainDnsRecord};
use crate::{
    Account, AgentSpec, BoxFut, CallStats, DnsRecord, DomainRemoval, DomainState, Error, ExportInventory, ExportItem,
    Fetched, Grant, IsolationCheck, IsolationReport, ItemSink, M365, MeetingInfo, MeetingSpec, PreflightReport,
    PreflightSpec, Result, Secret, TeamInfo, TeamSpec, WindDown, generate_password,
};
use graph_rs_sdk::ODataQuery;
use graph_rs_sdk::http::{BodyRead, Method};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// Graph's limit of `@odata.bind` references in one create or update.
const BIND_LIMIT: usize = 20;

/// One configured SKU as the tenant has it.
#[derive(Debug, Clone)]
pub(crate) struct SkuUnits {
    pub part: String,
    pub id: String,
    pub available: u32,
    pub enabled_state: String,
}

/// [`M365`] over graph-rs-sdk.
#[derive(Debug)]
pub struct GraphProvider {
    graph: Graph,
    /// The configured SKUs' ids, once read (ids never change; units are read fresh).
    sku_ids: std::sync::OnceLock<Vec<String>>,
}

fn retry_404() -> Opts {
    Opts { retry_not_found: true, ..Opts::default() }
}

fn exists_error(e: &Error) -> bool {
    matches!(e, Error::Graph { status: 400 | 409, message, .. }
        if message.contains("already exist") || message.contains("same value for property"))
}

/// Graph's 400 to `POST /domains/{id}/verify` on a verified domain (domain-verify: "only
/// applies to an unverified domain").
fn already_verified(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already verified")
        || m.contains("only applies to an unverified domain")
        || m.contains("only applies to unverified domain")
}

/// Graph's 400 when the verification record is not found (yet) in the domain's DNS.
fn record_not_seen(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("verification failed") || (m.contains("record") && m.contains("not found"))
}

fn quote(value: &str) -> String {
    value.replace('\'', "''")
}

/// A record in zone-file form; `None` for a type Repli does not publish (`Unavailable`) or a
/// record whose nullable data is missing.
fn record_from_graph(r: DomainDnsRecord) -> Option<DnsRecord> {
    let label = r.label.trim_end_matches('.').to_ascii_lowercase();
    let (kind, name, value) = match r.data {
        DnsRecordData::Txt { text } => ("TXT", label, text),
        DnsRecordData::Mx { mail_exchange, preference } => {
            ("MX", label, format!("{} {}.", preference.unwrap_or(0), mail_exchange.trim_end_matches('.')))
        }
        DnsRecordData::CName { canonical_name } => {
            ("CNAME", label, format!("{}.", canonical_name?.trim_end_matches('.')))
        }
        DnsRecordData::Srv { service, protocol, priority, weight, port, name_target } => {
            // The owner is `_service._protocol.<label>`; a label that already carries them
            // (`_sip._tls.example.fr`) is not prefixed twice.
            let prefix =
                format!("{}.{}.", service?.trim_matches('.'), protocol?.trim_matches('.')).to_ascii_lowercase();
            let name = if label.starts_with(&prefix) { label } else { format!("{prefix}{label}") };
            let target = name_target?;
            (
                "SRV",
                name,
                format!(
                    "{} {} {} {}.",
                    priority.unwrap_or(0),
                    weight.unwrap_or(0),
                    port.unwrap_or(0),
                    target.trim_end_matches('.')
                ),
            )
        }
        DnsRecordData::Other => return None,
    };
    Some(DnsRecord {
        name,
        kind: kind.to_string(),
        ttl: r.ttl,
        value,
        service: r.supported_service,
        optional: r.is_optional,
    })
}

/// One error naming every item that failed, or `Ok`.
fn partial_failure(op: &str, failures: Vec<String>) -> Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::Graph { op: op.into(), status: 400, code: "partialFailure".into(), message: failures.join("; ") })
}

/// The items of a run that failed, except those whose status is `tolerated`.
fn failed_items(results: &BTreeMap<String, Reply>, tolerated: Option<u16>) -> Vec<String> {
    results
        .iter()
        .filter(|(_, r)| !r.ok() && Some(r.status) != tolerated)
        .map(|(id, r)| format!("{id}: {}", r.message()))
        .collect()
}

impl GraphProvider {
    /// Checks the endpoints (https to Microsoft, or http to a loopback simulator only).
    pub fn new(config: GraphConfig) -> Result<Self> {
        Ok(GraphProvider { graph: Graph::new(config)?, sku_ids: std::sync::OnceLock::new() })
    }

    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    pub(crate) async fn get_domain(&self, name: &str, opts: Opts) -> Result<wire::Domain> {
        let reply = self.graph.call("domain.get", opts, |c| c.domain(name).get_domain()).await?;
        wire::decode("domain.get", "GET /domains/{id}", reply.body)
    }

    /// A directory object's reference for `@odata.bind` / `@odata.id`, on the configured
    /// Graph endpoint (national clouds included).
    fn object_ref(&self, id: &str) -> String {
        format!("{}/directoryObjects/{id}", self.graph.config.graph_url)
    }

    /// The configured SKUs as the tenant has them: (part number, id, free units).
    pub(crate) async fn skus(&self) -> Result<Vec<SkuUnits>> {
        let skus: Vec<wire::SubscribedSku> =
            self.graph.list_all("subscribedSkus", "GET /subscribedSkus", "/subscribedSkus", false).await?;
        let units: Vec<SkuUnits> = self
            .graph
            .config
            .sku_part_numbers
            .iter()
            .map(|part| {
                let sku = skus
                    .iter()
                    .find(|s| s.sku_part_number.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(part)))
                    .ok_or_else(|| Error::SkuNotFound(part.clone()))?;
                let enabled = sku.prepaid_units.as_ref().and_then(|u| u.enabled).unwrap_or(0);
                let consumed = sku.consumed_units.unwrap_or(0);
                let id = sku.sku_id.clone().ok_or_else(|| Error::SkuNotFound(part.clone()))?;
                Ok(SkuUnits {
                    part: part.clone(),
                    id,
                    available: u32::try_from(enabled.saturating_sub(consumed)).unwrap_or(u32::MAX),
                    enabled_state: sku.capability_status.clone().unwrap_or_else(|| "Enabled".to_string()),
                })
            })
            .collect::<Result<_>>()?;
        let _ = self.sku_ids.set(units.iter().map(|s| s.id.clone()).collect());
        Ok(units)
    }

    /// The configured SKUs' ids: read once (by [`GraphProvider::skus`]), then remembered.
    async fn sku_ids(&self) -> Result<Vec<String>> {
        match self.sku_ids.get() {
            Some(ids) => Ok(ids.clone()),
            None => Ok(self.skus().await?.into_iter().map(|s| s.id).collect()),
        }
    }

    /// Soft-deleted users of `domain` deleted for good: they would hold the domain (and the
    /// agents' names) for 30 days otherwise. Returns how many.
    async fn purge_deleted(&self, domain: &str) -> Result<usize> {
        let suffix = format!("@{}", domain.to_ascii_lowercase());
        let deleted: Vec<wire::DirectoryObject> = self
            .graph
            .list_all(
                "accounts.purge",
                "GET /directory/deletedItems/microsoft.graph.user",
                "/directory/deletedItems/microsoft.graph.user?$top=999",
                false,
            )
            .await?;
        let ours = deleted
            .iter()
            .filter(|u| u.user_principal_name.as_deref().is_some_and(|p| p.to_ascii_lowercase().ends_with(&suffix)))
            .map(|u| u.id.as_str());
        self.delete_each("accounts.purge", "/directory/deletedItems", ours).await
    }

    /// `DELETE {collection}/{id}` for each object id, batched; 404 (gone already: an earlier
    /// run) counts as done. Returns how many were asked.
    async fn delete_each<'v>(&self, op: &str, collection: &str, ids: impl Iterator<Item = &'v str>) -> Result<usize> {
        let units: Vec<Item> = ids
            .enumerate()
            .map(|(i, id)| Item {
                id: format!("x{i}"),
                method: Method::DELETE,
                url: format!("{collection}/{id}"),
                body: None,
            })
            .collect();
        let count = units.len();
        let results = self.graph.run_items(op, units, Opts::default()).await?;
        partial_failure(op, failed_items(&results, Some(404)))?;
        Ok(count)
    }

    pub(crate) async fn users_of(&self, domain: &str) -> Result<Vec<wire::User>> {
        let url = format!(
            "/users?$filter=endswith(userPrincipalName,'@{}')&$count=true&$top=999&$select=id,userPrincipalName,displayName,assignedLicenses,accountEnabled,userType,onPremisesSyncEnabled,usageLocation",
            quote(domain)
        );
        self.graph.list_all("users.list", "GET /users?$filter=endswith(userPrincipalName,…)", &url, true).await
    }

    pub(crate) async fn find_group(&self, nickname: &str) -> Result<Option<wire::Group>> {
        let filter = format!("mailNickname eq '{}'", quote(nickname));
        let reply = self
            .graph
            .call("group.lookup", Opts::default(), |c| c.groups().list_group().filter(&[filter.as_str()]))
            .await?;
        let page: wire::Page<wire::Group> =
            wire::decode("group.lookup", "GET /groups?$filter=mailNickname eq '…'", reply.body)?;
        Ok(page.value.into_iter().next())
    }

    /// Finds a group that must exist (created by us, maybe not replicated yet).
    async fn await_group(&self, nickname: &str) -> Result<wire::Group> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            if let Some(g) = self.find_group(nickname).await? {
                return Ok(g);
            }
            if started.elapsed() + wait > self.graph.config.budget {
                return Err(Error::Budget {
                    op: "group.lookup".into(),
                    attempts: 0,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last: format!("group {nickname} not visible yet"),
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Creates the Team on the group (PUT, asynchronous) and polls the operation to its end;
    /// true when this call created it.
    async fn ensure_team_on(&self, group_id: &str) -> Result<bool> {
        let body = json!({
            "memberSettings": {"allowCreateUpdateChannels": true, "allowDeleteChannels": false},
            "messagingSettings": {"allowUserEditMessages": true, "allowUserDeleteMessages": false},
            "funSettings": {"allowGiphy": false},
        });
        // graph-rs-sdk's update_team sends PATCH; creating a Team from a group is a PUT.
        let started = Instant::now();
        let mut attempt = 0;
        let put = loop {
            let put = self
                .graph
                .call_raw("team.create", Opts::default(), (1, 1), |c| match BodyRead::from_serialize(&body) {
                    Ok(b) => c.custom(Method::PUT, Some(b)).extend_path(&["groups", group_id, "team"]),
                    Err(_) => c.custom(Method::PUT, None).extend_path(&["groups", group_id, "team"]),
                })
                .await?;
            attempt += 1;
            // team-put-teams: for up to 15 minutes after the group's creation the PUT may answer
            // 404 (replication); Microsoft advises retrying 10 seconds apart. Its own budget
            // (`team_lag_budget`), not the operation's: past it, a typed Budget error.
            if put.status == 404 {
                let interval = self.graph.config.team_retry_interval;
                if started.elapsed() + interval > self.graph.config.team_lag_budget {
                    return Err(Error::Budget {
                        op: "team.create".into(),
                        attempts: attempt,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        last: format!(
                            "404 {}: Teams does not know the group yet (team-put-teams: up to 15 minutes after its creation)",
                            put.message()
                        ),
                    });
                }
                tracing::debug!(attempt, "team.create: group not replicated to Teams yet");
                tokio::time::sleep(interval).await;
                continue;
            }
            // The owner was licensed a moment ago and Teams may not see it yet: waited out like
            // replication lag, within the budget; past it, the step names the missing licence.
            let wait = self.graph.backoff(attempt);
            if put.status == 403
                && put.message().contains(OWNER_UNLICENSED)
                && started.elapsed() + wait < self.graph.config.budget
            {
                tokio::time::sleep(wait).await;
                continue;
            }
            break put;
        };
        match (put.status, put.location.clone()) {
            (202, Some(location)) => {
                let started = Instant::now();
                let mut wait = Duration::from_millis(150);
                loop {
                    // The SDK's job_status() polls without the token; poll through our layer.
                    let reply = self
                        .graph
                        .call("team.operation", retry_404(), |c| Graph::custom(c, Method::GET, &location, None))
                        .await?;
                    let op: wire::TeamsAsyncOperation =
                        wire::decode("team.operation", "GET /teams/{id}/operations/{id}", reply.body)?;
                    match op.status.as_str() {
                        "succeeded" => return Ok(true),
                        "failed" => {
                            let error = op.error.unwrap_or(wire::OperationError { code: None, message: None });
                            return Err(Error::Graph {
                                op: "team.create".into(),
                                status: 500,
                                code: error.code.unwrap_or_else(|| "teamCreationFailed".into()),
                                message: error.message.unwrap_or_else(|| "Team creation failed".into()),
                            });
                        }
                        _ => {}
                    }
                    if started.elapsed() + wait > self.graph.config.budget {
                        return Err(Error::Budget {
                            op: "team.create".into(),
                            attempts: 0,
                            elapsed_ms: started.elapsed().as_millis() as u64,
                            last: "Team still being created".into(),
                        });
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 3 / 2).min(Duration::from_secs(5));
                }
            }
            (200..=299, _) => Ok(true),
            // A Team exists or is being created (a crashed run's PUT): wait until it answers.
            (409, _) => {
                self.graph
                    .call("team.get", retry_404(), |c| {
                        Graph::custom(c, Method::GET, &format!("/groups/{group_id}/team"), None)
                    })
                    .await?;
                Ok(false)
            }
            _ => Err(put.into_error("team.create")),
        }
    }

    async fn add_members(&self, group_id: &str, members: &[String]) -> Result<()> {
        let patches = members.chunks(BIND_LIMIT).map(|chunk| {
            let body = json!({"members@odata.bind": chunk.iter().map(|m| self.object_ref(m)).collect::<Vec<_>>()});
            async move { self.graph.call("group.members", retry_404(), |c| c.group(group_id).update_group(&body)).await }
        });
        for r in futures_util::future::join_all(patches).await {
            match r {
                Ok(_) => {}
                // One of the chunk was already a member (a crashed run's PATCH).
                Err(e) if exists_error(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl M365 for GraphProvider {
    fn stats(&self) -> CallStats {
        self.graph.stats()
    }

    fn pace(&self) -> crate::GraphPace {
        self.graph.pace()
    }

    fn recall_pace(&self, pace: crate::GraphPace) {
        self.graph.recall_pace(pace);
    }

    fn export_inventory<'a>(&'a self, domain: &'a str, nickname: &'a str) -> BoxFut<'a, Result<ExportInventory>> {
        Box::pin(self.export_list(domain, nickname).instrument(tracing::info_span!("m365.export.list", domain)))
    }

    fn fetch_item<'a>(
        &'a self,
        item: &'a ExportItem,
        max_bytes: u64,
        sink: &'a mut dyn ItemSink,
    ) -> BoxFut<'a, Result<Fetched>> {
        Box::pin(self.export_fetch(item, max_bytes, sink))
    }

    fn preflight<'a>(&'a self, spec: &'a PreflightSpec) -> BoxFut<'a, PreflightReport> {
        Box::pin(self.run_preflight(spec).instrument(tracing::info_span!("m365.preflight")))
    }

    fn ensure_domain<'a>(&'a self, name: &'a str) -> BoxFut<'a, Result<DomainState>> {
        let span = tracing::info_span!("m365.domain", domain = name);
        Box::pin(
            async move {
                // Domain names are unique: the create is the lookup (Graph refuses a duplicate,
                // and the refusal sends us to read the existing one), with no race in between.
                let (created, domain) = match self
                    .graph
                    .call("domain.create", Opts::default(), |c| c.domains().create_domain(&json!({"id": name})))
                    .await
                {
                    Ok(r) => (true, wire::decode::<wire::Domain>("domain.create", "POST /domains", r.body)?),
                    Err(e) if exists_error(&e) => (false, self.get_domain(name, retry_404()).await?),
                    Err(e) => return Err(e),
                };
                let records = self
                    .graph
                    .call("domain.verificationDnsRecords", retry_404(), |c| {
                        c.domain(name).list_verification_dns_records()
                    })
                    .await?;
                let records: wire::Page<DomainDnsRecord> = wire::decode(
                    "domain.verificationDnsRecords",
                    "GET /domains/{id}/verificationDnsRecords",
                    records.body,
                )?;
                Ok(DomainState {
                    name: name.to_string(),
                    verified: domain.is_verified,
                    services: domain.supported_services,
                    verification: records.value.into_iter().filter_map(record_from_graph).collect(),
                    created,
                })
            }
            .instrument(span),
        )
    }

    fn verify_domain<'a>(&'a self, name: &'a str, seen: Option<&'a DomainState>) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            // domain-verify "only applies to an unverified domain": read isVerified first (a
            // subdomain of a verified root is verified from its creation), unless the create
            // or read of this same run has just answered it — one round trip fewer on the
            // kit's critical path. Verified in between by someone else, the 400 below is done.
            let verified = match seen {
                Some(d) if d.name.eq_ignore_ascii_case(name) => d.verified,
                _ => self.get_domain(name, retry_404()).await?.is_verified,
            };
            if verified {
                return Ok(());
            }
            match self.graph.call("domain.verify", retry_404(), |c| c.domain(name).verify()).await {
                Ok(r) => {
                    let domain: wire::Domain = wire::decode("domain.verify", "POST /domains/{id}/verify", r.body)?;
                    if domain.is_verified {
                        return Ok(());
                    }
                    Err(Error::NotYetVisible {
                        op: "domain.verify".into(),
                        detail: format!("{name} is not verified yet (its TXT record is not seen yet)"),
                    })
                }
                // Verified in between (another run, or Graph on its own): done.
                Err(Error::Graph { status: 400, message, .. }) if already_verified(&message) => Ok(()),
                // The record is not seen yet: DNS propagation, retried by the step.
                Err(Error::Graph { status: 400, message, .. }) if record_not_seen(&message) => {
                    Err(Error::NotYetVisible { op: "domain.verify".into(), detail: message })
                }
                // Any other refusal is permanent (a 4xx is returned as an error, not retried).
                Err(e) => Err(e),
            }
        })
    }

    fn enable_services<'a>(&'a self, name: &'a str) -> BoxFut<'a, Result<Vec<DnsRecord>>> {
        Box::pin(async move {
            // Setting the same services again changes nothing: no read needed first.
            let body = json!({"supportedServices": ["Email", "OfficeCommunicationsOnline"]});
            self.graph.call("domain.services", retry_404(), |c| c.domain(name).update_domain(&body)).await?;
            let records: Vec<DomainDnsRecord> = self
                .graph
                .list_all(
                    "domain.serviceConfigurationRecords",
                    "GET /domains/{id}/serviceConfigurationRecords",
                    &format!("/domains/{name}/serviceConfigurationRecords"),
                    false,
                )
                .await?;
            Ok(records.into_iter().filter_map(record_from_graph).collect())
        })
    }

    fn ensure_accounts<'a>(&'a self, domain: &'a str, agents: &'a [AgentSpec]) -> BoxFut<'a, Result<Vec<Account>>> {
        let span = tracing::info_span!("m365.accounts", domain, agents = agents.len());
        Box::pin(
            async move {
                let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
                let logins = repli_core::text::account_logins(&names);
                let (existing, skus) = tokio::try_join!(self.users_of(domain), self.skus())?;
                let by_upn: BTreeMap<String, &wire::User> = existing
                    .iter()
                    .filter_map(|u| u.user_principal_name.as_deref().map(|p| (p.to_ascii_lowercase(), u)))
                    .collect();
                let holds =
                    |u: &wire::User, sku: &str| u.assigned_licenses.iter().any(|l| l.sku_id.as_deref() == Some(sku));
                let has_licence = |u: &wire::User| skus.iter().all(|s| holds(u, &s.id));
                // Every SKU must have a unit for every account that lacks it, before anything is made.
                for sku in &skus {
                    let needing = logins
                        .iter()
                        .filter(|l| by_upn.get(&format!("{l}@{domain}")).is_none_or(|u| !holds(u, &sku.id)))
                        .count() as u32;
                    if needing > sku.available {
                        return Err(Error::LicencesExhausted {
                            sku: sku.part.clone(),
                            needed: needing,
                            available: sku.available,
                            missing: needing - sku.available,
                        });
                    }
                }
                // One fully parallel wave (Graph refuses a batch mixing dependsOn chains and
                // independent requests): the missing accounts. Licences are a wave of their own
                // (`ensure_licences`), which runs while the Team is made.
                let mut creates = Vec::new();
                for (i, (login, agent)) in logins.iter().zip(agents).enumerate() {
                    let upn = format!("{login}@{domain}");
                    if by_upn.contains_key(&upn) {
                        continue;
                    }
                    let password = generate_password()?;
                    creates.push(Item {
                        id: format!("c{i}"),
                        method: Method::POST,
                        url: "/users".into(),
                        body: Some(json!({
                            "accountEnabled": true,
                            "displayName": agent.name,
                            "mailNickname": login,
                            "userPrincipalName": upn,
                            "department": agent.service,
                            "usageLocation": "FR",
                            "preferredLanguage": "fr-FR",
                            "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": password.expose()},
                        })),
                    });
                }
                let created = self.graph.run_items("accounts.create", creates, retry_404()).await?;
                let mut failures = Vec::new();
                let mut out = Vec::new();
                for (i, (login, agent)) in logins.iter().zip(agents).enumerate() {
                    let upn = format!("{login}@{domain}");
                    let found = by_upn.get(&upn);
                    let create = created.get(&format!("c{i}"));
                    let create_ok =
                        create.is_none_or(|r| r.ok() || (r.status == 400 && r.message().contains("already exists")));
                    if !create_ok {
                        failures.push(format!("{upn}: {}", create.map(Reply::message).unwrap_or_default()));
                        continue;
                    }
                    let created_id = match create.filter(|r| r.ok()) {
                        Some(r) => Some(
                            wire::decode::<wire::DirectoryObject>("accounts.create", "POST /users", r.body.clone())?.id,
                        ),
                        None => None,
                    };
                    let id = created_id.or_else(|| found.map(|u| u.id.clone())).unwrap_or_default();
                    out.push(Account {
                        upn,
                        id,
                        display_name: agent.name.clone(),
                        service: agent.service.clone(),
                        created: create.is_some_and(Reply::ok),
                        licensed: found.is_some_and(|u| has_licence(u)),
                    });
                }
                partial_failure("accounts.create", failures)?;
                // A create that answered "already exists" (an earlier run made it, replication
                // hid it from the listing) has no id yet: read it.
                for account in out.iter_mut().filter(|a| a.id.is_empty()) {
                    let url = format!("/users/{}?$select=id", account.upn);
                    let reply = self
                        .graph
                        .call("accounts.read", retry_404(), |c| Graph::custom(c, Method::GET, &url, None))
                        .await?;
                    let user: wire::DirectoryObject =
                        wire::decode("accounts.read", "GET /users/{upn}?$select=id", reply.body)?;
                    account.id = user.id;
                }
                Ok(out)
            }
            .instrument(span),
        )
    }

    fn ensure_licences<'a>(&'a self, account_ids: &'a [String]) -> BoxFut<'a, Result<()>> {
        let span = tracing::info_span!("m365.licences", accounts = account_ids.len());
        Box::pin(
            async move {
                let skus = self.sku_ids().await?;
                let body = json!({
                    "addLicenses": skus.iter().map(|id| json!({"skuId": id, "disabledPlans": []})).collect::<Vec<_>>(),
                    "removeLicenses": [],
                });
                let items = account_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| Item {
                        id: format!("l{i}"),
                        method: Method::POST,
                        url: format!("/users/{id}/assignLicense"),
                        body: Some(body.clone()),
                    })
                    .collect();
                // A licence for an account just created may meet a 404 until it replicates.
                let assigned = self.graph.run_items("accounts.licence", items, retry_404()).await?;
                let failures: Vec<String> = account_ids
                    .iter()
                    .enumerate()
                    .filter_map(|(i, id)| {
                        assigned.get(&format!("l{i}")).filter(|r| !r.ok()).map(|r| format!("{id}: {}", r.message()))
                    })
                    .collect();
                partial_failure("accounts.licence", failures)
            }
            .instrument(span),
        )
    }

    fn ensure_team<'a>(&'a self, spec: &'a TeamSpec) -> BoxFut<'a, Result<TeamInfo>> {
        let span = tracing::info_span!("m365.team", group = %spec.nickname);
        Box::pin(
            async move {
                if spec.owners.is_empty() {
                    return Err(Error::Invalid("a Team needs at least one owner".into()));
                }
                // Create group: at most 20 relationships, owners and members together.
                let owners: Vec<String> = spec.owners.iter().take(BIND_LIMIT).map(|u| self.object_ref(u)).collect();
                let at_creation = BIND_LIMIT - owners.len();
                let first: Vec<String> = spec.members.iter().take(at_creation).map(|u| self.object_ref(u)).collect();
                let body = json!({
                    "displayName": spec.display_name, "description": spec.description, "mailNickname": spec.nickname,
                    "mailEnabled": true, "securityEnabled": false, "groupTypes": ["Unified"], "visibility": "Private",
                    "owners@odata.bind": owners, "members@odata.bind": first,
                });
                // A Microsoft 365 group's address (from mailNickname) is unique: the create is
                // the lookup, and "already exists" leads to the existing group.
                let group = async {
                    match self.graph.call("group.create", retry_404(), |c| c.groups().create_group(&body)).await {
                        Ok(r) => Ok((wire::decode::<wire::Group>("group.create", "POST /groups", r.body)?, true)),
                        Err(e) if exists_error(&e) => Ok((self.await_group(&spec.nickname).await?, false)),
                        Err(e) => Err(e),
                    }
                };
                // Graph refuses a Team whose owner holds no Teams licence (403, even app-only:
                // microsoft-graph-docs#10353, msgraph-sdk-powershell#3035); the owners get the
                // kit's licences while the group is made, the other accounts in the licences step.
                let ((group, created), ()) = tokio::try_join!(group, self.ensure_licences(&spec.owners))?;
                let group_id = group.id.clone();
                let missing: Vec<String> = if created {
                    spec.members.iter().skip(at_creation).cloned().collect()
                } else {
                    let present: BTreeSet<String> = self
                        .graph
                        .list_all::<wire::DirectoryObject>(
                            "group.members",
                            "GET /groups/{id}/members",
                            &format!("/groups/{group_id}/members?$select=id,userPrincipalName&$top=999"),
                            false,
                        )
                        .await?
                        .into_iter()
                        .flat_map(|m| [Some(m.id), m.user_principal_name])
                        .flatten()
                        .map(|s| s.to_ascii_lowercase())
                        .collect();
                    spec.members.iter().filter(|m| !present.contains(&m.to_ascii_lowercase())).cloned().collect()
                };
                // Members beyond the create's 20 go in while the Team is being made.
                let (members, team_created) =
                    tokio::join!(self.add_members(&group_id, &missing), self.ensure_team_on(&group_id));
                members?;
                let team_created = team_created?;
                // A Team made by this call has only « General »; otherwise, list what exists.
                let existing: BTreeSet<String> = if team_created {
                    BTreeSet::from(["general".to_string()])
                } else {
                    self.graph
                        .list_all::<wire::Channel>(
                            "team.channels",
                            "GET /teams/{id}/channels",
                            &format!("/teams/{group_id}/channels"),
                            false,
                        )
                        .await?
                        .into_iter()
                        .map(|c| c.display_name.to_lowercase())
                        .collect()
                };
                let creates = spec.channels.iter().filter(|(name, _)| !existing.contains(&name.to_lowercase())).map(
                    |(name, description)| {
                        let body =
                            json!({"displayName": name, "description": description, "membershipType": "standard"});
                        let gid = group_id.clone();
                        async move {
                            match self
                                .graph
                                .call("team.channel", retry_404(), |c| c.team(&gid).channels().create_channels(&body))
                                .await
                            {
                                Err(e) if exists_error(&e) => Ok(()),
                                other => other.map(|_| ()),
                            }
                        }
                    },
                );
                let team_url = format!("/groups/{group_id}/team");
                // No read of the group's drive: it needs Files.Read.All or Sites.Read.All (every
                // file of the tenant) for a link the Team's « Fichiers » tab already gives.
                let (team, created_channels) = tokio::join!(
                    self.graph.call("team.get", retry_404(), |c| Graph::custom(c, Method::GET, &team_url, None)),
                    futures_util::future::join_all(creates),
                );
                for r in created_channels {
                    r?;
                }
                let team: wire::Team = wire::decode("team.get", "GET /groups/{id}/team", team?.body)?;
                let mut channels = vec!["General".to_string()];
                channels.extend(spec.channels.iter().map(|(n, _)| n.clone()));
                Ok(TeamInfo {
                    group_id,
                    mail: group.mail.unwrap_or_default(),
                    web_url: team.web_url.unwrap_or_default(),
                    channels,
                    created: created || team_created,
                })
            }
            .instrument(span),
        )
    }

    fn ensure_meeting<'a>(&'a self, spec: &'a MeetingSpec) -> BoxFut<'a, Result<MeetingInfo>> {
        Box::pin(async move {
            let body = json!({"externalId": spec.external_id, "subject": spec.subject, "startDateTime": spec.start, "endDateTime": spec.end});
            // A standing organiser named by ops (covered by the access policy) organises every
            // kit's meeting; otherwise the kit's first account does, which needs `-Global`.
            let organizer = self.graph.config.meeting_organizer.as_deref().unwrap_or(&spec.organizer);
            let reply = self
                .graph
                .call("meeting.createOrGet", retry_404(), |c| c.user(organizer).online_meetings().create_or_get(&body))
                .await?;
            let meeting: wire::OnlineMeeting =
                wire::decode("meeting.createOrGet", "POST /users/{id}/onlineMeetings/createOrGet", reply.body)?;
            Ok(MeetingInfo { id: meeting.id, join_url: meeting.join_web_url.unwrap_or_default() })
        })
    }

    fn reset_passwords<'a>(&'a self, upns: &'a [String]) -> BoxFut<'a, Result<Vec<(String, Secret)>>> {
        Box::pin(async move {
            let mut passwords: Vec<(String, Secret)> = Vec::new();
            let mut seen = BTreeSet::new();
            for upn in upns {
                // Distinct by construction; the check makes "no reused password" a fact.
                let mut p = generate_password()?;
                while !seen.insert(p.expose().to_string()) {
                    p = generate_password()?;
                }
                passwords.push((upn.clone(), p));
            }
            let units = passwords
                .iter()
                .enumerate()
                .map(|(i, (upn, p))| Item {
                    id: format!("p{i}"),
                    method: Method::PATCH,
                    url: format!("/users/{upn}"),
                    body: Some(
                        json!({"passwordProfile": {"forceChangePasswordNextSignIn": true, "password": p.expose()}}),
                    ),
                })
                .collect();
            // A role scoped to an administrative unit covers its members only: a refusal then
            // says which unit the account must be in.
            let scoped = |e: Error| match (e, &self.graph.config.admin_unit) {
                (Error::Forbidden { op, code, message, missing: Grant::Role(role) }, Some(unit)) => {
                    Error::Forbidden { op, code, message, missing: Grant::UnitRole { role, unit: unit.clone() } }
                }
                (e, _) => e,
            };
            let results = self.graph.run_items("accounts.password", units, retry_404()).await.map_err(scoped)?;
            partial_failure("accounts.password", failed_items(&results, None)).map_err(scoped)?;
            Ok(passwords)
        })
    }

    fn remove_meetings<'a>(&'a self, domain: &'a str, external_id: &'a str) -> BoxFut<'a, Result<u32>> {
        Box::pin(async move {
            // Graph lists no meetings by externalId; createOrGet with it answers the kit's
            // meeting (200) or makes one (201), deleted at once either way
            // (onlinemeeting-createorget, onlinemeeting-delete). The organiser is the standing
            // one, or else any account of the domain (the kit's first account organised it).
            let organizers: Vec<String> = match &self.graph.config.meeting_organizer {
                Some(o) => vec![o.clone()],
                None => self.users_of(domain).await?.into_iter().map(|u| u.id).collect(),
            };
            let body = json!({"externalId": external_id, "subject": "Repli — visio de la cellule de crise"});
            let find: Vec<Item> = organizers
                .iter()
                .enumerate()
                .map(|(i, o)| Item {
                    id: format!("m{i}"),
                    method: Method::POST,
                    url: format!("/users/{o}/onlineMeetings/createOrGet"),
                    body: Some(body.clone()),
                })
                .collect();
            let found = self.graph.run_items("meeting.find", find, retry_404()).await?;
            partial_failure("meeting.find", failed_items(&found, None))?;
            let mut existed = 0u32;
            let mut delete = Vec::new();
            for (i, o) in organizers.iter().enumerate() {
                let Some(reply) = found.get(&format!("m{i}")) else { continue };
                let meeting: wire::OnlineMeeting =
                    wire::decode("meeting.find", "POST /users/{id}/onlineMeetings/createOrGet", reply.body.clone())?;
                existed += u32::from(reply.status == 200);
                delete.push(Item {
                    id: format!("d{i}"),
                    method: Method::DELETE,
                    url: format!("/users/{o}/onlineMeetings/{}", meeting.id),
                    body: None,
                });
            }
            let deleted = self.graph.run_items("meeting.delete", delete, Opts::default()).await?;
            partial_failure("meeting.delete", failed_items(&deleted, Some(404)))?;
            Ok(existed)
        })
    }

    fn wind_down_accounts<'a>(&'a self, domain: &'a str) -> BoxFut<'a, Result<WindDown>> {
        Box::pin(async move {
            let users = self.users_of(domain).await?;
            // Three fully parallel waves: sign-in blocked first, then the sessions revoked, then
            // the licences freed.
            let mut disable = Vec::new();
            let mut revoke = Vec::new();
            let mut free = Vec::new();
            let mut licences = 0u32;
            for (i, u) in users.iter().enumerate() {
                let id = &u.id;
                disable.push(Item {
                    id: format!("d{i}"),
                    method: Method::PATCH,
                    url: format!("/users/{id}"),
                    body: Some(json!({"accountEnabled": false})),
                });
                revoke.push(Item {
                    id: format!("s{i}"),
                    method: Method::POST,
                    url: format!("/users/{id}/revokeSignInSessions"),
                    body: None,
                });
                let skus: Vec<&str> = u.assigned_licenses.iter().filter_map(|l| l.sku_id.as_deref()).collect();
                if !skus.is_empty() {
                    licences += skus.len() as u32;
                    free.push(Item {
                        id: format!("r{i}"),
                        method: Method::POST,
                        url: format!("/users/{id}/assignLicense"),
                        body: Some(json!({"addLicenses": [], "removeLicenses": skus})),
                    });
                }
            }
            for (op, wave) in [("accounts.disable", disable), ("accounts.revoke", revoke), ("accounts.unlicense", free)]
            {
                let results = self.graph.run_items(op, wave, Opts::default()).await?;
                partial_failure(op, failed_items(&results, None))?;
            }
            Ok(WindDown {
                accounts: users.iter().filter_map(|u| u.user_principal_name.clone()).collect(),
                licences_removed: licences,
                meetings_removed: 0,
            })
        })
    }

    fn delete_accounts<'a>(&'a self, domain: &'a str) -> BoxFut<'a, Result<usize>> {
        Box::pin(async move {
            let users = self.users_of(domain).await?;
            let count = self.delete_each("accounts.delete", "/users", users.iter().map(|u| u.id.as_str())).await?;
            // Deleted users wait 30 days in deleted items with the agents' names: gone for good.
            self.purge_deleted(domain).await?;
            Ok(count)
        })
    }

    fn delete_group<'a>(&'a self, nickname: &'a str) -> BoxFut<'a, Result<bool>> {
        Box::pin(async move {
            let Some(group) = self.find_group(nickname).await? else { return Ok(false) };
            let id = group.id;
            match self.graph.call("group.delete", Opts::default(), |c| c.group(&id).delete_group()).await {
                Ok(_) | Err(Error::Graph { status: 404, .. }) => Ok(true),
                Err(e) => Err(e),
            }
        })
    }

    fn remove_domain<'a>(&'a self, name: &'a str, force: bool) -> BoxFut<'a, Result<DomainRemoval>> {
        Box::pin(async move {
            match self.get_domain(name, Opts::default()).await {
                Err(Error::Graph { status: 404, .. }) => return Ok(DomainRemoval::AlreadyAbsent),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            let refs: Vec<wire::DirectoryObject> = self
                .graph
                .list_all(
                    "domain.references",
                    "GET /domains/{id}/domainNameReferences",
                    &format!("/domains/{name}/domainNameReferences"),
                    false,
                )
                .await?;
            if refs.is_empty() {
                // Soft-deleted accounts still hold the domain: delete them for good first.
                self.purge_deleted(name).await?;
                self.graph.call("domain.delete", Opts::default(), |c| c.domain(name).delete_domain()).await?;
                return Ok(DomainRemoval::Deleted);
            }
            if !force {
                let references = refs.into_iter().map(|r| r.user_principal_name.unwrap_or(r.id)).collect();
                return Err(Error::DomainReferenced { domain: name.to_string(), references });
            }
            // domain-forcedelete: references to Exchange as the provisioning service must be
            // removed first; the page also refuses more than 1,000 objects to rename.
            if refs.len() > 1000 {
                return Err(Error::DomainReferenced {
                    domain: name.to_string(),
                    references: vec![format!("{} objects (forceDelete renames at most 1,000)", refs.len())],
                });
            }
            let services = json!({"supportedServices": []});
            self.graph.call("domain.services", Opts::default(), |c| c.domain(name).update_domain(&services)).await?;
            let body = json!({"disableUserAccounts": true});
            self.graph.call("domain.forceDelete", Opts::default(), |c| c.domain(name).force_delete(&body)).await?;
            // forceDelete is a long-running operation (domain-forcedelete): done when the
            // domain answers 404.
            let started = Instant::now();
            let mut wait = Duration::from_millis(200);
            loop {
                match self.get_domain(name, Opts::default()).await {
                    Err(Error::Graph { status: 404, .. }) => break,
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                if started.elapsed() + wait > self.graph.config.budget {
                    return Err(Error::Budget {
                        op: "domain.forceDelete".into(),
                        attempts: 0,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        last: format!("{name} is still being deleted"),
                    });
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Ok(DomainRemoval::ForceDeleted { renamed: refs.len() })
        })
    }

    fn isolation_report<'a>(
        &'a self,
        domain: &'a str,
        group_id: &'a str,
        commune_domain: Option<&'a str>,
    ) -> BoxFut<'a, Result<IsolationReport>> {
        Box::pin(async move {
            let members_url = format!("/groups/{group_id}/members?$select=id,userPrincipalName,userType&$top=999");
            let (d, users, members) = tokio::try_join!(
                self.get_domain(domain, retry_404()),
                self.users_of(domain),
                self.graph.list_all::<wire::DirectoryObject>(
                    "group.members",
                    "GET /groups/{id}/members",
                    &members_url,
                    false
                ),
            )?;
            let mut checks = Vec::new();
            let auth = d.authentication_type.as_str();
            checks.push(IsolationCheck {
                check: "Domaine de secours géré dans le cloud, sans fédération".into(),
                ok: auth.eq_ignore_ascii_case("Managed"),
                detail: format!("{domain} : authentification {auth}"),
            });
            let synced: Vec<&str> = users
                .iter()
                .filter(|u| u.on_premises_sync_enabled == Some(true))
                .filter_map(|u| u.user_principal_name.as_deref())
                .collect();
            checks.push(IsolationCheck {
                check: "Comptes créés dans le cloud, aucun synchronisé depuis un annuaire local".into(),
                ok: synced.is_empty(),
                detail: if synced.is_empty() {
                    format!("{} compte(s), tous cloud", users.len())
                } else {
                    format!("synchronisés : {}", synced.join(", "))
                },
            });
            let guests: Vec<&str> = users
                .iter()
                .filter(|u| u.user_type.as_deref().is_some_and(|t| t != "Member"))
                .filter_map(|u| u.user_principal_name.as_deref())
                .collect();
            checks.push(IsolationCheck {
                check: "Aucun compte invité".into(),
                ok: guests.is_empty(),
                detail: if guests.is_empty() { "aucun".into() } else { guests.join(", ") },
            });
            let suffix = format!("@{}", domain.to_ascii_lowercase());
            let outsiders: Vec<String> = members
                .iter()
                .filter(|m| {
                    let upn = m.user_principal_name.as_deref().unwrap_or("").to_ascii_lowercase();
                    !upn.ends_with(&suffix) || m.user_type.as_deref().is_some_and(|t| t != "Member")
                })
                .map(|m| m.user_principal_name.clone().unwrap_or_else(|| m.id.clone()))
                .collect();
            checks.push(IsolationCheck {
                check: "Espace collaboratif réservé aux comptes du domaine de secours".into(),
                ok: !members.is_empty() && outsiders.is_empty(),
                detail: if outsiders.is_empty() {
                    format!("{} membre(s), tous sur le domaine de secours", members.len())
                } else {
                    format!("membres extérieurs : {}", outsiders.join(", "))
                },
            });
            if let Some(commune) = commune_domain {
                let suffix = format!("@{}", commune.to_ascii_lowercase());
                let leaked: Vec<&str> = users
                    .iter()
                    .filter_map(|u| u.user_principal_name.as_deref())
                    .filter(|u| u.to_ascii_lowercase().ends_with(&suffix))
                    .collect();
                checks.push(IsolationCheck {
                    check: "Aucun compte du domaine de la commune".into(),
                    ok: leaked.is_empty() && !domain.eq_ignore_ascii_case(commune),
                    detail: format!("domaine de la commune {commune} : {} compte(s)", leaked.len()),
                });
            }
            checks.push(IsolationCheck {
                check: "Mots de passe à usage unique, distincts, jamais conservés".into(),
                ok: true,
                detail: "tirés par compte (CSPRNG, 16 caractères), distincts vérifiés à l'émission, changement imposé à la première connexion".into(),
            });
            let ok = checks.iter().all(|c| c.ok);
            Ok(IsolationReport { domain: domain.to_string(), ok, checks })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn record(body: Value) -> Option<DnsRecord> {
        record_from_graph(wire::decode("op", "GET /domains/{id}/serviceConfigurationRecords", body).unwrap())
    }

    #[test]
    fn graph_records_in_zone_form() {
        let base = |kind: &str, extra: Value| {
            let mut r =
                json!({"label": "Crise.Example.fr.", "supportedService": "Email", "ttl": 3600, "recordType": kind});
            if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
                r.extend(extra.clone());
            }
            r
        };
        let txt = record(base("Txt", json!({"text": "MS=ms123"}))).unwrap();
        assert_eq!(
            txt,
            DnsRecord {
                name: "crise.example.fr".into(),
                kind: "TXT".into(),
                ttl: 3600,
                value: "MS=ms123".into(),
                service: "Email".into(),
                optional: false,
            }
        );
        let mx = record(base(
            "Mx",
            json!({"mailExchange": "crise-example-fr.mail.protection.outlook.com", "preference": 0}),
        ));
        assert_eq!(
            mx.map(|r| (r.kind, r.value)),
            Some(("MX".into(), "0 crise-example-fr.mail.protection.outlook.com.".into()))
        );
        let cname = record(base("CName", json!({"canonicalName": "autodiscover.outlook.com"})));
        assert_eq!(cname.map(|r| (r.kind, r.value)), Some(("CNAME".into(), "autodiscover.outlook.com.".into())));
        let srv = record(base(
            "Srv",
            json!({"service": "_sipfederationtls", "protocol": "_tcp", "port": 5061, "priority": 100, "weight": 1, "nameTarget": "sipfed.online.lync.com"}),
        ))
        .unwrap();
        assert_eq!(
            (srv.name.as_str(), srv.kind.as_str(), srv.value.as_str()),
            ("_sipfederationtls._tcp.crise.example.fr", "SRV", "100 1 5061 sipfed.online.lync.com.")
        );
        // A label that already names the service and protocol is not prefixed twice; a
        // trailing dot on a target is not doubled; `isOptional` is kept.
        let sip = record(base(
            "Srv",
            json!({"label": "_sip._tls.crise.example.fr", "service": "_sip", "protocol": "_tls", "port": 443, "priority": 100, "weight": 1, "nameTarget": "sipdir.online.lync.com.", "isOptional": true}),
        ))
        .unwrap();
        assert_eq!(
            (sip.name.as_str(), sip.value.as_str(), sip.optional),
            ("_sip._tls.crise.example.fr", "100 1 443 sipdir.online.lync.com.", true)
        );
        // A CNAME without its (nullable) target and an Unavailable record are not published.
        assert_eq!(record(base("CName", json!({"canonicalName": null}))), None);
        assert_eq!(record(base("Unavailable", json!({"description": "x"}))), None);
    }
}
