//! The playbook engine inside the daemon: Microsoft 365 provider (real client; against an
//! embedded simulator unless configured for a tenant), DNS publisher, playbooks, and the
//! [`Host`] through which steps reach the rest of replid.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use repli_core::run::{Audience, Outputs, PlaybookName, StepRecord};
use repli_core::{CrisisId, ItemKind, fr};
use repli_engine::context::Context;
use repli_engine::{Engine, EngineConfig, Host};
use repli_graph_sim::{SimConfig, Simulator};
use repli_m365::{
    BoxFut, ClientCertificate, Credential, DnsPublisher, GraphConfig, GraphProvider, HttpDnsPublisher, M365, ManualDns,
    Rfc2136Config, Rfc2136Dns, Secret,
};

use crate::Services;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, DnsMode, M365Mode};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("playbooks:\n{0}")]
    Playbooks(String),
    #[error("Microsoft 365: {0}")]
    M365(#[from] repli_m365::Error),
    #[error("cannot start the embedded Graph simulator: {0}")]
    Simulator(std::io::Error),
    #[error("cannot read the Graph client secret or certificate: {0}")]
    Secret(String),
    #[error("cannot read the DNS TSIG key: {0}")]
    TsigKey(String),
}

/// The Microsoft 365 side: provider, DNS publisher, and the embedded simulator when used.
pub struct M365Setup {
    pub provider: Arc<dyn M365>,
    pub dns: Arc<dyn DnsPublisher>,
    /// Kept alive for the daemon's lifetime (mode = "simulator").
    pub simulator: Option<Simulator>,
    /// The preflight's canary organiser (configured, or seeded in the embedded simulator).
    pub organizer: Option<String>,
}

impl std::fmt::Debug for M365Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("M365Setup")
            .field("simulator", &self.simulator.as_ref().map(Simulator::base_url))
            .finish_non_exhaustive()
    }
}

fn credential(config: &Config) -> Result<Credential, SetupError> {
    let m = &config.m365;
    if let (Some(cert), Some(key)) = (&m.client_certificate_file, &m.client_key_file) {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| SetupError::Secret(format!("{}: {e}", p.display())))
        };
        let key = Secret::new(read(key)?);
        let certificate = ClientCertificate::from_pem(&key, &read(cert)?)?;
        return Ok(Credential::Certificate(certificate));
    }
    client_secret(config).map(Credential::Secret)
}

fn client_secret(config: &Config) -> Result<Secret, SetupError> {
    crate::config::secret(config.m365.client_secret_file.as_deref(), "REPLI_GRAPH_CLIENT_SECRET")
        .map_err(SetupError::Secret)?
        .map(Secret::new)
        .ok_or_else(|| SetupError::Secret("set m365.client_secret_file or REPLI_GRAPH_CLIENT_SECRET".into()))
}

/// The RFC 2136 adapter from `[dns]`; the key from its file or REPLI_DNS_TSIG_SECRET.
pub fn rfc2136(config: &Config) -> Result<Rfc2136Dns, SetupError> {
    let d = &config.dns;
    let text = crate::config::secret(d.key_file.as_deref(), "REPLI_DNS_TSIG_SECRET")
        .map_err(SetupError::TsigKey)?
        .ok_or_else(|| SetupError::TsigKey("set dns.key_file or REPLI_DNS_TSIG_SECRET".into()))?;
    let key = tsig_secret(&text).ok_or_else(|| {
        SetupError::TsigKey("neither a base64 secret nor a BIND key block with `secret \"…\";`".into())
    })?;
    Ok(Rfc2136Dns::new(Rfc2136Config {
        primary: d.primary,
        zone: d.zone.clone(),
        key_name: d.key_name.clone(),
        key,
        algorithm: d.algorithm.clone(),
        servers: d.servers.clone(),
        propagation_timeout: std::time::Duration::from_secs(u64::from(d.propagation_timeout_seconds)),
    })?)
}

/// The secret of a TSIG key file: BIND's `key "name" { algorithm …; secret "…"; };` (what
/// `tsig-keygen` writes) or the bare base64 secret.
fn tsig_secret(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let b64 = match text.find("secret") {
        Some(i) => text[i..].split('"').nth(1)?,
        None => text.trim(),
    };
    base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
}

/// Builds the provider from the configuration (starting the embedded simulator if asked).
pub async fn m365_setup(config: &Config) -> Result<M365Setup, SetupError> {
    setup_for(config, false).await
}

async fn setup_for(config: &Config, exercises: bool) -> Result<M365Setup, SetupError> {
    let m = &config.m365;
    let (mut graph, simulator, organizer) = match m.mode {
        M365Mode::Simulator => {
            // What the métropole's administrators did once on the tenant: a Teams application
            // access policy granted with -Global (the kits' organisers are fresh accounts, which a
            // per-user grant cannot name in advance).
            let skus = SimConfig {
                skus: m.sku_part_numbers.clone(),
                meeting_policies: vec![repli_graph_sim::PolicyGrant::Global],
                ..SimConfig::default()
            };
            let sim = Simulator::start("127.0.0.1:0", skus).await.map_err(SetupError::Simulator)?;
            if exercises {
                tracing::info!(url = %sim.graph_url(), "exercises provision Microsoft 365 in their own embedded Graph simulator");
            } else {
                tracing::warn!(url = %sim.graph_url(), "SIMULATION: Microsoft 365 is provisioned in an embedded Graph simulator, not a tenant");
            }
            // What the métropole's administrators did once: the kits' root domain verified. No
            // standing organiser: each kit's first account organises its visio, and the
            // preflight proves the -Global policy with a canary account.
            if let Some(root) = repli_core::m365::root_domain(&m.domain_pattern) {
                sim.seed_verified_domain(&root);
            }
            let g =
                GraphConfig::new(&sim.graph_url(), sim.base_url(), "simulation", "repli", Secret::new("simulation"));
            (g, Some(sim), None)
        }
        M365Mode::Graph => (
            GraphConfig::new(&m.graph_url, &m.login_url, &m.tenant_id, &m.client_id, credential(config)?),
            None,
            m.preflight_organizer.clone(),
        ),
    };
    graph.sku_part_numbers = m.sku_part_numbers.clone();
    // A standing organiser named by ops organises every kit's visio (docs/M365.md).
    graph.meeting_organizer = organizer.clone();
    graph.admin_unit = m.admin_unit.clone();
    graph.budget = std::time::Duration::from_secs(u64::from(m.budget_seconds));
    let provider: Arc<dyn M365> = Arc::new(GraphProvider::new(graph)?);
    let dns: Arc<dyn DnsPublisher> = match (m.dns, &simulator, &m.dns_url) {
        (DnsMode::Manual, _, _) => Arc::new(ManualDns),
        (DnsMode::Simulator, Some(sim), _) => Arc::new(HttpDnsPublisher::new(sim.base_url())),
        (DnsMode::Simulator, None, Some(url)) => Arc::new(HttpDnsPublisher::new(url)),
        (DnsMode::Simulator, None, None) => Arc::new(ManualDns),
        (DnsMode::Rfc2136, _, _) => Arc::new(rfc2136(config)?),
    };
    Ok(M365Setup { provider, dns, simulator, organizer })
}

/// The tenant whose Graph pace is kept (`graph_pace`): the configured tenant id, or the
/// embedded simulator's.
pub fn pace_tenant(config: &Config) -> String {
    match config.m365.mode {
        M365Mode::Simulator => "simulation".to_owned(),
        M365Mode::Graph => config.m365.tenant_id.clone(),
    }
}

/// Where exercises provision: their own embedded simulator (with its zone API), or the exercise
/// tenant of `[exercise.m365]`. Never the real tenant, never the real zone.
pub async fn exercise_setup(config: &Config) -> Result<M365Setup, SetupError> {
    let mut c = config.clone();
    c.m365 = match (config.exercise.target, &config.exercise.m365) {
        (crate::config::ExerciseTarget::Tenant, Some(m)) => m.clone(),
        _ => crate::config::M365Config {
            mode: M365Mode::Simulator,
            dns: DnsMode::Simulator,
            dns_url: None,
            ..config.m365.clone()
        },
    };
    setup_for(&c, true).await
}

/// The domain pattern of a crisis's backup domain: an exercise on an exercise tenant uses that
/// tenant's.
pub fn domain_pattern(config: &Config, exercise: bool) -> &str {
    match (exercise, config.exercise.target, &config.exercise.m365) {
        (true, crate::config::ExerciseTarget::Tenant, Some(m)) => &m.domain_pattern,
        _ => &config.m365.domain_pattern,
    }
}

/// The engine's view of the application: the services, not the engine (no cycle).
#[derive(Debug)]
pub struct DaemonHost {
    services: Services,
}

impl DaemonHost {
    pub fn new(services: Services) -> Self {
        DaemonHost { services }
    }
}

/// The astreinte as a playbook's text names it: with its configured contacts, or by its name
/// alone while they are placeholders (a DGS is never given « numéro à configurer »).
pub fn astreinte_named(config: &Config) -> String {
    match config.documents.astreinte_contacts() {
        Some(c) => format!("l'astreinte de la métropole ({c})"),
        None => "l'astreinte de la métropole".to_owned(),
    }
}

/// The template context of a crisis.
pub async fn context_of(st: &Services, id: &CrisisId) -> Result<Context, String> {
    let r = st.store.crisis(id).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("crise {id} introuvable"))?;
    let needs = st.store.needs(Some(id.as_str())).await.map_err(|e| e.to_string())?;
    // A negative or oversized count is a corrupt row, not « 0 portables » in a title.
    let wanted = |k: ItemKind| -> Result<u32, String> {
        needs
            .iter()
            .filter(|n| n.kind == k)
            .map(|n| u32::try_from(n.wanted).map_err(|_| format!("crise {id} : besoin {k} invalide ({})", n.wanted)))
            .sum()
    };
    let pattern = domain_pattern(&st.config, r.exercise.is_some());
    let domain = repli_m365::backup_domain(pattern, &r.commune_name, r.commune.as_str()).map_err(|e| e.to_string())?;
    Ok(Context {
        crisis_id: r.id.to_string(),
        commune: r.commune_name.clone(),
        de_commune: repli_core::fr::de(&r.commune_name),
        insee: r.commune.to_string(),
        domain,
        agents: r.agents,
        laptops: wanted(ItemKind::Laptop)?,
        phones: wanted(ItemKind::Phone)?,
        routers: wanted(ItemKind::Router)?,
        sims: wanted(ItemKind::Sim)?,
        printers: wanted(ItemKind::Printer)?,
        delivery_address: r.delivery_address.clone().unwrap_or_else(|| "à préciser".into()),
        contact_name: r.contact_name.clone(),
        contact_phone: fr::phone(&r.contact_phone),
        due: fr::datetime(r.due_at, st.calendar.time_zone()),
        astreinte: astreinte_named(&st.config),
        exercise: r.exercise.is_some(),
    })
}

impl Host for DaemonHost {
    fn now(&self) -> Timestamp {
        self.services.clock.now()
    }

    fn wall(&self) -> Timestamp {
        SystemClock.now()
    }

    fn context<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Context, String>> {
        Box::pin(async move { context_of(&self.services, crisis).await })
    }

    fn export_handback<'a>(
        &'a self,
        crisis: &'a CrisisId,
        domain: &'a str,
        nickname: &'a str,
        m365: &'a dyn repli_core::m365::M365,
    ) -> BoxFut<'a, Result<repli_core::run::Exported, repli_engine::ExportFailed>> {
        Box::pin(async move {
            let options = crate::handback::ExportOptions::default();
            match crate::handback::export(&self.services, crisis, domain, nickname, m365, &options).await {
                Ok((exported, _)) => Ok(exported),
                Err(e) => {
                    let transient = e.is_transient();
                    let message = match &e {
                        crate::handback::HandbackError::M365(m) => crate::handback::m365_fr(m),
                        e => e.to_string(),
                    };
                    tracing::warn!(crisis = %crisis, transient, error = %message, "hand-back export not complete");
                    Err(repli_engine::ExportFailed { message, transient })
                }
            }
        })
    }

    fn render_documents<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, Result<Vec<String>, String>> {
        Box::pin(async move { crate::documents::archive(&self.services, crisis).await })
    }

    fn notify<'a>(
        &'a self,
        crisis: &'a CrisisId,
        audience: Audience,
        message: &'a str,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let st = &self.services;
            let r = st
                .store
                .crisis(crisis)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("crise {crisis} introuvable"))?;
            let now = st.clock.now();
            match audience {
                Audience::Dgs => {
                    let key = format!("playbook:{}:dgs:{}", r.id, short_hash(message));
                    crate::notify::to_dgs(st, &r, &key, message, now).await.map_err(|e| e.to_string())?;
                }
                Audience::Ops => {
                    let key = format!("playbook:{}:ops:{}", r.id, short_hash(message));
                    let subject = format!("Crise {} ({})", r.id, r.commune_name);
                    crate::notify::to_ops(st, &r, &key, &subject, message, now).await.map_err(|e| e.to_string())?;
                }
            }
            // Sent now rather than at the next maintenance round, beside the run: the step waits
            // a few seconds at most (a slow channel never holds the playbook); what is not sent
            // by then goes on in its task, and failures are retried by the maintenance round.
            let task = crate::notify::deliver_soon(st);
            if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
                tracing::info!(crisis = %r.id, "notification still being delivered; the playbook goes on");
            }
            Ok(())
        })
    }

    fn changed<'a>(&'a self, crisis: &'a CrisisId) -> BoxFut<'a, ()> {
        Box::pin(async move { crate::crises::tell(&self.services, crisis).await })
    }
}

fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

/// Builds the engine for a daemon.
pub fn engine(
    config: &Config,
    store: Arc<dyn repli_core::run::RunStore>,
    m365: &M365Setup,
    exercise: &M365Setup,
    host: Arc<DaemonHost>,
    playbooks: BTreeMap<PlaybookName, repli_core::Playbook>,
    wake: Arc<tokio::sync::Notify>,
) -> Arc<Engine> {
    let mut nonce = [0u8; 6];
    let _ = getrandom::fill(&mut nonce);
    let owner = format!("replid-{}-{}", std::process::id(), hex::encode(nonce));
    let cfg = EngineConfig {
        concurrency: config.engine.concurrency as usize,
        lease: jiff::SignedDuration::from_secs(i64::from(config.engine.lease_seconds)),
        tick: std::time::Duration::from_millis(500),
        owner,
        channels: config.m365.channels.iter().map(|c| (c.clone(), String::new())).collect(),
        zone: zone_policy(config),
        dns_retry_budget: jiff::SignedDuration::from_mins(i64::from(config.dns.retry_budget_minutes)),
    };
    Arc::new(
        Engine::new(store, m365.provider.clone(), m365.dns.clone(), host, playbooks, cfg, wake)
            .with_exercise_target(exercise.provider.clone(), exercise.dns.clone()),
    )
}

/// What a crisis zone holds besides Graph's required records, from `[dns]`: the engine
/// publishes it, `repli dns check` expects it.
pub fn zone_policy(config: &Config) -> repli_core::m365::ZonePolicy {
    repli_core::m365::ZonePolicy {
        dmarc: (!config.dns.dmarc_policy.is_empty())
            .then(|| (config.dns.dmarc_policy.clone(), config.dns.dmarc_rua.clone())),
        optional: config.dns.optional_records,
    }
}

/// What a crisis's runs produced, as the documents need it (read once per rendering).
#[derive(Debug, Default)]
pub struct Provisioned {
    /// The workspace, once the domain and the Team exist.
    pub m365: Option<repli_docs::M365>,
    /// The accounts created (no passwords).
    pub accounts: Vec<repli_docs::Account>,
    /// The accounts the hand-back's wind-down disabled.
    pub disabled: Vec<String>,
    /// The last BIND fragment a `dns.publish` step published (or handed to ops).
    pub zone: Option<String>,
}

/// Reads the outputs of the crisis's activation and hand-back runs.
pub async fn provisioned(st: &Services, r: &repli_store::CrisisRecord) -> Result<Provisioned, repli_store::StoreError> {
    let mut activation: Vec<StepRecord> = Vec::new();
    let mut handback: Vec<StepRecord> = Vec::new();
    for run in st.store.runs_of(&r.id).await? {
        let steps = st.store.steps(run.id).await?;
        match run.playbook {
            PlaybookName::Activation => activation = steps,
            PlaybookName::Handback => handback = steps,
        }
    }
    Ok(Provisioned::of(&r.commune_name, &Outputs::of(&activation), &Outputs::of(&handback)))
}

impl Provisioned {
    /// What the documents need from the runs' typed outputs.
    pub fn of(commune_name: &str, activation: &Outputs, handback: &Outputs) -> Self {
        let accounts = activation
            .accounts()
            .map(|o| {
                o.accounts
                    .iter()
                    .map(|a| repli_docs::Account {
                        name: a.name.clone(),
                        service: a.service.clone(),
                        login: a.upn.clone(),
                        password: String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let m365 = match (activation.domain(), activation.workspace()) {
            (Some(d), Some(t)) => Some(repli_docs::M365 {
                domain: d.domain.clone(),
                team: format!("Cellule de crise — {commune_name}"),
                channels: t.channels.clone(),
                team_url: t.web_url.clone(),
                meeting_url: activation.meeting().map(|m| m.join_url.clone()).unwrap_or_default(),
            }),
            _ => None,
        };
        let disabled = handback.wind_down().map(|w| w.accounts.clone()).unwrap_or_default();
        let zone = activation.last_published().map(|p| p.zone.clone());
        Provisioned { m365, accounts, disabled, zone }
    }
}

#[cfg(test)]
mod dns_tests {
    use super::tsig_secret;

    #[test]
    fn a_tsig_key_is_read_from_bind_syntax_or_bare_base64() {
        let bind = "key \"repli\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWtleS1vZi0zMi1ieXRlcy0xMjM0NTY3OA==\";\n};\n";
        assert_eq!(tsig_secret(bind).unwrap(), b"secret-key-of-32-bytes-12345678");
        assert_eq!(tsig_secret("c2VjcmV0\n").unwrap(), b"secret");
        assert!(tsig_secret("secret \"not base64!\"").is_none());
        assert!(tsig_secret("").is_some_and(|k| k.is_empty()));
    }
}
