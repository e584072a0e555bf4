//! The whole automated provisioning of a kit, in dependency order with independent parts in
//! parallel. The engine runs the same operations one playbook step at a time; this function
//! serves the benchmark and is the reference for the critical path.

use crate::{
    Account, AgentSpec, DnsPublisher, DnsRecord, DomainState, IsolationReport, M365, MeetingInfo, MeetingSpec, Result,
    TeamInfo, TeamSpec, zone_fragment,
};
use serde::{Deserialize, Serialize};

/// What to provision for one crisis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KitSpec {
    pub crisis_id: String,
    pub commune: String,
    pub domain: String,
    pub agents: Vec<AgentSpec>,
    pub channels: Vec<(String, String)>,
    pub meeting_start: String,
    pub meeting_end: String,
}

/// What the provisioning produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kit {
    pub domain: DomainState,
    pub records: Vec<DnsRecord>,
    pub zone: String,
    pub dns_published: bool,
    pub accounts: Vec<Account>,
    pub team: TeamInfo,
    pub meeting: MeetingInfo,
    pub isolation: IsolationReport,
}

impl KitSpec {
    /// The group's deterministic mailNickname.
    pub fn nickname(&self) -> String {
        format!("crise-{}", self.crisis_id.to_ascii_lowercase())
    }

    pub fn team_spec(&self, accounts: &[Account]) -> TeamSpec {
        TeamSpec {
            nickname: self.nickname(),
            display_name: format!("Cellule de crise — {}", self.commune),
            description: format!("Espace de secours de la commune de {} (crise {})", self.commune, self.crisis_id),
            owners: accounts.iter().take(1).map(|a| a.id.clone()).collect(),
            members: accounts.iter().map(|a| a.id.clone()).collect(),
            channels: self.channels.clone(),
        }
    }

    pub fn meeting_spec(&self, accounts: &[Account]) -> Option<MeetingSpec> {
        accounts.first().map(|organizer| MeetingSpec {
            organizer: organizer.id.clone(),
            external_id: format!("repli-{}", self.crisis_id),
            subject: format!("Point de situation quotidien — cellule de crise de {}", self.commune),
            start: self.meeting_start.clone(),
            end: self.meeting_end.clone(),
        })
    }
}

/// Sequential Graph round trips on the longest path of [`provision`] with no faults: token;
/// domain create, its records; verify; then services (patch, records) alongside accounts
/// (listing ∥ SKUs, a wave of creates); then group create; Team put (∥ members beyond 19; 201
/// as documented, no operation to poll); Team ∥ channel creates; isolation checks (domain ∥
/// accounts ∥ members). Licences (SKUs, a wave of assignments: Graph runs a batch fully
/// parallel or fully sequential, never create→licence pairs) and then the meeting (its
/// organiser needs Teams) run alongside the Team, one round trip shorter. Batches go in one
/// wave up to `DEFAULT_CONCURRENCY` × 20 requests; the isolation's listings of the accounts and
/// of the group's members are read a page after the other, at most [`MAX_PAGE`] per page
/// (Graph's rule for directory objects), so beyond 999 agents each further page is a round trip.
pub fn critical_path_calls(agents: usize) -> u32 {
    let pages = u32::try_from(agents.div_ceil(MAX_PAGE).max(1)).unwrap_or(u32::MAX);
    (1 + 2 + 1 + 2 + 1 + 1 + 1 + 1) + (pages - 1)
}

/// The largest page Graph serves of a directory listing (`$top` from 1 to 999).
pub const MAX_PAGE: usize = 999;

/// Provisions the whole kit.
pub async fn provision(m365: &dyn M365, dns: &dyn DnsPublisher, spec: &KitSpec) -> Result<Kit> {
    let domain = m365.ensure_domain(&spec.domain).await?;
    let comment = format!("Repli — zone de secours de {} (crise {})", spec.commune, spec.crisis_id);
    let mut published = dns.publish(&spec.domain, &domain.verification).await?;
    m365.verify_domain(&spec.domain, Some(&domain)).await?;
    let services = async {
        let services = m365.enable_services(&spec.domain).await?;
        let mut records = domain.verification.clone();
        records.extend(services);
        let done = dns.publish(&spec.domain, &records).await?;
        Ok::<_, crate::Error>((records, done))
    };
    let ((records, dns_done), accounts) = tokio::try_join!(services, m365.ensure_accounts(&spec.domain, &spec.agents))?;
    published &= dns_done;
    let team_spec = spec.team_spec(&accounts);
    let meeting_spec =
        spec.meeting_spec(&accounts).ok_or_else(|| crate::Error::Invalid("at least one agent is needed".into()))?;
    let unlicensed: Vec<String> = accounts.iter().filter(|a| !a.licensed).map(|a| a.id.clone()).collect();
    let licensed_then_meeting = async {
        m365.ensure_licences(&unlicensed).await?;
        m365.ensure_meeting(&meeting_spec).await
    };
    let team_then_isolation = async {
        let team = m365.ensure_team(&team_spec).await?;
        let isolation = m365.isolation_report(&spec.domain, &team.group_id, None).await?;
        Ok((team, isolation))
    };
    // The Team's chain is polled first: its requests reach the throttle gate before the
    // licence wave's, which nothing but the meeting waits on.
    let ((team, isolation), meeting) = tokio::try_join!(team_then_isolation, licensed_then_meeting)?;
    let accounts = accounts.into_iter().map(|a| Account { licensed: true, ..a }).collect();
    let domain = DomainState { verified: true, ..domain };
    Ok(Kit {
        zone: zone_fragment(&spec.domain, &comment, &records),
        domain,
        records,
        dns_published: published,
        accounts,
        team,
        meeting,
        isolation,
    })
}
