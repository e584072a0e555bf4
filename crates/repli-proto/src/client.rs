//! The typed client over reqwest.

use std::time::Duration;

use repli_core::{CrisisAction, CrisisId};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use repli_core::audit::{AuditBundle, AuditEntry};

use crate::api::{
    ActionRequest, AuditPage, AuditQuery, AuditVerifyView, CommuneView, CreatedUser, CrisisQuery, CrisisRequest,
    CrisisView, Health, HistoryEntry, HistoryPage, HistoryQuery, LegalDoneRequest, LegalFactsRequest, LogEntryRequest,
    LogEntryView, Me, NewUserRequest, NotificationView, PasswordRequest, Problem, RevokeView, SlaReportLine,
    SuspendRequest, TokenRequest, TokenView, UserView,
};
use crate::api::{
    AgentView, AgentsRequest, CheckinRequest, ImportRequest, ImportView, InventoryStatusLine, ItemDetail, ItemView,
    LendRequest, LoanView, WipeRequest, WriteOffRequest,
};
use crate::api::{
    CampaignView, ExerciseRequest, ExerciseView, RetexView, StepActionRequest, StepView, StepsView, TaskDoneRequest,
    TaskView,
};
use crate::{API_PREFIX, IDEMPOTENCY_HEADER};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// replid answered with an error document.
    #[error("{} ({})", .problem.detail, .problem.code)]
    Api { status: StatusCode, problem: Box<Problem> },
    /// replid answered with an error that is not a problem document.
    #[error("HTTP {status} : {body}")]
    Http { status: StatusCode, body: String },
    /// One sentence, in French (a DGS may read it): where, and the root cause only — the
    /// transport error is kept for programs but not chained, so the cause is not repeated.
    #[error("replid injoignable à {url} : {}", transport_cause(.cause))]
    Transport { url: String, cause: reqwest::Error },
    #[error("réponse inattendue de replid : {0}")]
    Decode(String),
    #[error("adresse de serveur invalide « {0} »")]
    Url(String),
    /// A local file could not be written (a download's destination).
    #[error("{0}")]
    Local(String),
}

/// The root cause of a transport failure, in French when it is a common one.
fn transport_cause(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let text = root.to_string();
    let lower = text.to_lowercase();
    if e.is_timeout() || lower.contains("timed out") {
        "délai dépassé (replid ne répond pas)".into()
    } else if lower.contains("connection refused") {
        "connexion refusée (replid est-il démarré, à cette adresse ?)".into()
    } else if lower.contains("dns") || lower.contains("failed to lookup") || lower.contains("name or service not known")
    {
        "nom de serveur inconnu".into()
    } else if lower.contains("certificate") || lower.contains("tls") {
        format!("certificat TLS refusé ({text}) : voir --ca-cert")
    } else {
        text
    }
}

impl ClientError {
    /// The HTTP status, when replid answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } | Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem document, when replid sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// A client for one replid, acting with one token.
#[derive(Debug, Clone)]
pub struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// `base` is the daemon's root URL, e.g. `http://127.0.0.1:8640`.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca(base, token, None)
    }

    /// Like [`Client::new`], also trusting the PEM certificate(s) in `ca_pem` (a daemon with
    /// a certificate from the métropole's own authority, or self-signed).
    pub fn with_ca(base: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        let mut base = reqwest::Url::parse(base).map_err(|_| ClientError::Url(base.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::Url(base.to_string()));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("repli/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Decode(format!("CA certificate: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| ClientError::Transport { url: base.to_string(), cause: e })?;
        Ok(Self { base, http, token })
    }

    /// The same daemon, another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self { base: self.base.clone(), http: self.http.clone(), token: Some(token.into()) }
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let url = self.base.join(path.trim_start_matches('/')).map_err(|_| ClientError::Url(path.to_owned()))?;
        let mut rb = self.http.request(method, url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        Ok(rb)
    }

    /// A text body (documents); errors as for JSON calls.
    async fn send_text(&self, rb: RequestBuilder) -> Result<String, ClientError> {
        let url = self.base.to_string();
        let resp = rb.send().await.map_err(|cause| ClientError::Transport { url, cause })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|cause| ClientError::Transport { url: self.base.to_string(), cause })?;
        if status.is_success() {
            return Ok(text);
        }
        match serde_json::from_str::<Problem>(&text) {
            Ok(problem) => Err(ClientError::Api { status, problem: Box::new(problem) }),
            Err(_) => Err(ClientError::Http { status, body: text.chars().take(500).collect() }),
        }
    }

    async fn send<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ClientError> {
        let url = self.base.to_string();
        let resp = rb.send().await.map_err(|cause| ClientError::Transport { url, cause })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|cause| ClientError::Transport { url: self.base.to_string(), cause })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err(ClientError::Api { status, problem: Box::new(problem) }),
            Err(_) => {
                Err(ClientError::Http { status, body: String::from_utf8_lossy(&bytes).chars().take(500).collect() })
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.request(Method::GET, path)?).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.request(Method::POST, path)?.json(body)).await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get(&format!("{API_PREFIX}/me")).await
    }

    pub async fn communes(&self) -> Result<Vec<CommuneView>, ClientError> {
        self.get(&format!("{API_PREFIX}/communes")).await
    }

    pub async fn commune(&self, insee: &str) -> Result<CommuneView, ClientError> {
        // INSEE codes are validated server-side; encode whatever was typed.
        let seg = urlencode(insee);
        self.get(&format!("{API_PREFIX}/communes/{seg}")).await
    }

    /// Requests a kit. With an idempotency key, retrying after a lost answer cannot create a
    /// second crisis.
    pub async fn request_crisis(
        &self,
        req: &CrisisRequest,
        idempotency_key: Option<&str>,
    ) -> Result<CrisisView, ClientError> {
        let mut rb = self.request(Method::POST, &format!("{API_PREFIX}/crises"))?.json(req);
        if let Some(k) = idempotency_key {
            rb = rb.header(IDEMPOTENCY_HEADER, k);
        }
        self.send(rb).await
    }

    pub async fn crises(&self, q: &CrisisQuery) -> Result<Vec<CrisisView>, ClientError> {
        self.send(self.request(Method::GET, &format!("{API_PREFIX}/crises"))?.query(q)).await
    }

    pub async fn crisis(&self, id: &str) -> Result<CrisisView, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}", urlencode(id))).await
    }

    /// A page of a crisis's history (the crisis document carries the most recent entries).
    pub async fn crisis_history(&self, id: &str, q: &HistoryQuery) -> Result<HistoryPage, ClientError> {
        self.send(self.request(Method::GET, &format!("{API_PREFIX}/crises/{}/history", urlencode(id)))?.query(q)).await
    }

    /// A crisis's whole history, oldest first, following the pages.
    pub async fn crisis_history_all(&self, id: &str) -> Result<Vec<HistoryEntry>, ClientError> {
        let mut q = HistoryQuery { before: None, limit: Some(1000) };
        let mut pages = Vec::new();
        loop {
            let page = self.crisis_history(id, &q).await?;
            pages.push(page.entries);
            match page.next_before {
                Some(b) => q.before = Some(b),
                None => break,
            }
        }
        Ok(pages.into_iter().rev().flatten().collect())
    }

    pub async fn act(
        &self,
        id: &CrisisId,
        action: CrisisAction,
        reason: Option<&str>,
    ) -> Result<CrisisView, ClientError> {
        let body = ActionRequest { reason: reason.map(str::to_owned) };
        self.post(&format!("{API_PREFIX}/crises/{id}/actions/{action}"), &body).await
    }

    /// The names of the crisis's documents the caller may read.
    pub async fn documents(&self, id: &str) -> Result<Vec<String>, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/documents", urlencode(id))).await
    }

    /// One document (HTML or Markdown). The credential sheets: ops only, once.
    pub async fn document(&self, id: &str, file: &str) -> Result<String, ClientError> {
        let path = format!("{API_PREFIX}/crises/{}/documents/{}", urlencode(id), urlencode(file));
        self.send_text(self.request(Method::GET, &path)?).await
    }

    /// Downloads the data hand-back's archive (zip) into `out`, streamed to disk; a partial
    /// file left by an earlier attempt is resumed (`Range`), and a transfer cut halfway is
    /// resumed up to 5 times. Returns the file's size.
    pub async fn handback_archive(&self, id: &str, out: &std::path::Path) -> Result<u64, ClientError> {
        use std::io::Write;
        let path = format!("{API_PREFIX}/crises/{}/handback.zip", urlencode(id));
        let local = |e: std::io::Error| ClientError::Local(format!("{} : {e}", out.display()));
        let mut cuts = 0;
        loop {
            let have = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
            let mut rb = self.request(Method::GET, &path)?.timeout(Duration::from_secs(24 * 3600));
            if have > 0 {
                rb = rb.header(reqwest::header::RANGE, format!("bytes={have}-"));
            }
            let url = self.base.to_string();
            let mut resp = rb.send().await.map_err(|cause| ClientError::Transport { url: url.clone(), cause })?;
            let status = resp.status();
            if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
                // Already whole (or the file on disk is not this archive's start): start over.
                let total = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .and_then(|v| v.parse::<u64>().ok());
                if total == Some(have) {
                    return Ok(have);
                }
                std::fs::remove_file(out).map_err(local)?;
                continue;
            }
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                return Err(match serde_json::from_str::<Problem>(&text) {
                    Ok(problem) => ClientError::Api { status, problem: Box::new(problem) },
                    Err(_) => ClientError::Http { status, body: text.chars().take(500).collect() },
                });
            }
            // 200: the whole file (the server ignored the range): written from the start.
            let append = status == StatusCode::PARTIAL_CONTENT;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(out)
                .map_err(local)?;
            let cut = loop {
                match resp.chunk().await {
                    Ok(Some(bytes)) => file.write_all(&bytes).map_err(local)?,
                    Ok(None) => break None,
                    Err(cause) => break Some(ClientError::Transport { url: url.clone(), cause }),
                }
            };
            file.sync_all().map_err(local)?;
            match cut {
                None => return std::fs::metadata(out).map(|m| m.len()).map_err(local),
                Some(e) if cuts >= 5 => return Err(e),
                Some(_) => cuts += 1,
            }
        }
    }

    /// Issues the credential sheets of the accounts that have none yet (one download).
    pub async fn issue_sheets(&self, id: &str) -> Result<String, ClientError> {
        let path = format!("{API_PREFIX}/crises/{}/credential-sheets", urlencode(id));
        self.send_text(self.request(Method::POST, &path)?).await
    }

    /// Sets new one-time passwords on every account and returns their sheets.
    pub async fn reissue_sheets(&self, id: &str, reason: &str) -> Result<String, ClientError> {
        let path = format!("{API_PREFIX}/crises/{}/credential-sheets/reissue", urlencode(id));
        let body = crate::api::ReissueRequest { reason: reason.to_owned() };
        self.send_text(self.request(Method::POST, &path)?.json(&body)).await
    }

    /// The playbook runs of a crisis and their steps.
    pub async fn steps(&self, id: &str) -> Result<StepsView, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/steps", urlencode(id))).await
    }

    /// The crisis zone on each authoritative server, against what was published (ops).
    pub async fn dns_check(&self, id: &str) -> Result<crate::api::DnsCheckView, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/dns", urlencode(id))).await
    }

    /// Manual steps waiting for ops, across crises.
    pub async fn tasks(&self) -> Result<Vec<TaskView>, ClientError> {
        self.get(&format!("{API_PREFIX}/tasks")).await
    }

    /// Confirms a manual step.
    pub async fn task_done(&self, id: &str, step: &str, note: Option<&str>) -> Result<StepView, ClientError> {
        self.task_done_unchecked(id, step, note, None).await
    }

    /// Confirms a manual step; for a DNS step the servers do not serve yet, `dns_unchecked`
    /// is the reason to record it anyway.
    pub async fn task_done_unchecked(
        &self,
        id: &str,
        step: &str,
        note: Option<&str>,
        dns_unchecked: Option<&str>,
    ) -> Result<StepView, ClientError> {
        let body = TaskDoneRequest { note: note.map(str::to_owned), dns_unchecked: dns_unchecked.map(str::to_owned) };
        self.post(&format!("{API_PREFIX}/crises/{}/steps/{}/done", urlencode(id), urlencode(step)), &body).await
    }

    /// Sends a failed step back to pending (`retry`) or skips it (`skip`), with a reason.
    pub async fn step_action(&self, id: &str, step: &str, action: &str, reason: &str) -> Result<StepView, ClientError> {
        let body = StepActionRequest { reason: reason.to_owned() };
        self.post(
            &format!("{API_PREFIX}/crises/{}/steps/{}/{}", urlencode(id), urlencode(step), urlencode(action)),
            &body,
        )
        .await
    }

    /// Runs the Microsoft 365 preflight now.
    pub async fn m365_preflight(&self) -> Result<crate::api::PreflightView, ClientError> {
        self.get(&format!("{API_PREFIX}/m365/preflight")).await
    }

    /// The signed head of the audit log, to pin.
    pub async fn audit_head(&self) -> Result<repli_core::Checkpoint, ClientError> {
        self.get(&format!("{API_PREFIX}/audit/head")).await
    }

    pub async fn audit_verify(&self) -> Result<AuditVerifyView, ClientError> {
        self.get(&format!("{API_PREFIX}/audit/verify")).await
    }

    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<AuditPage, ClientError> {
        self.send(self.request(Method::GET, &format!("{API_PREFIX}/audit/entries"))?.query(q)).await
    }

    /// Every entry matching `q`, following the pages.
    pub async fn audit_entries_all(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, ClientError> {
        let mut q = q.clone();
        let mut all = Vec::new();
        loop {
            let page = self.audit_entries(&q).await?;
            all.extend(page.entries);
            match page.next_after {
                Some(a) => q.after = Some(a),
                None => return Ok(all),
            }
        }
    }

    pub async fn audit_bundle(&self) -> Result<AuditBundle, ClientError> {
        self.get(&format!("{API_PREFIX}/audit/bundle")).await
    }

    pub async fn create_user(&self, req: &NewUserRequest) -> Result<CreatedUser, ClientError> {
        self.post(&format!("{API_PREFIX}/users"), req).await
    }

    pub async fn users(&self) -> Result<Vec<UserView>, ClientError> {
        self.get(&format!("{API_PREFIX}/users")).await
    }

    pub async fn issue_token(&self, user_id: i64, req: &TokenRequest) -> Result<TokenView, ClientError> {
        self.post(&format!("{API_PREFIX}/users/{user_id}/tokens"), req).await
    }

    pub async fn revoke_tokens(&self, user_id: i64) -> Result<RevokeView, ClientError> {
        self.send(self.request(Method::DELETE, &format!("{API_PREFIX}/users/{user_id}/tokens"))?).await
    }

    pub async fn set_password(&self, user_id: i64, req: &PasswordRequest) -> Result<UserView, ClientError> {
        self.send(self.request(Method::PUT, &format!("{API_PREFIX}/users/{user_id}/password"))?.json(req)).await
    }

    pub async fn suspend_sla(&self, id: &str, reason: &str) -> Result<CrisisView, ClientError> {
        self.post(
            &format!("{API_PREFIX}/crises/{}/sla/suspend", urlencode(id)),
            &SuspendRequest { reason: reason.to_owned() },
        )
        .await
    }

    pub async fn resume_sla(&self, id: &str) -> Result<CrisisView, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/sla/resume", urlencode(id)), &serde_json::json!({})).await
    }

    pub async fn set_legal_facts(&self, id: &str, req: &LegalFactsRequest) -> Result<CrisisView, ClientError> {
        self.send(self.request(Method::PUT, &format!("{API_PREFIX}/crises/{}/legal", urlencode(id)))?.json(req)).await
    }

    pub async fn legal_done(
        &self,
        id: &str,
        kind: repli_core::LegalKind,
        req: &LegalDoneRequest,
    ) -> Result<CrisisView, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/legal/{}/done", urlencode(id), kind.as_str()), req).await
    }

    pub async fn sla_report(&self) -> Result<Vec<SlaReportLine>, ClientError> {
        self.get(&format!("{API_PREFIX}/sla/report")).await
    }

    pub async fn notifications(&self) -> Result<Vec<NotificationView>, ClientError> {
        self.get(&format!("{API_PREFIX}/notifications")).await
    }

    /// Every open crisis together (ops): SLA clocks, shared stock, waiting list, Graph budget.
    pub async fn campaign(&self) -> Result<CampaignView, ClientError> {
        self.get(&format!("{API_PREFIX}/campaign")).await
    }

    /// Starts an exercise (drill): its communes' crises, requested together.
    pub async fn start_exercise(&self, req: &ExerciseRequest) -> Result<ExerciseView, ClientError> {
        self.post(&format!("{API_PREFIX}/exercises"), req).await
    }

    pub async fn exercises(&self) -> Result<Vec<ExerciseView>, ClientError> {
        self.get(&format!("{API_PREFIX}/exercises")).await
    }

    pub async fn exercise(&self, id: i64) -> Result<ExerciseView, ClientError> {
        self.get(&format!("{API_PREFIX}/exercises/{id}")).await
    }

    /// The after-action report (RETEX) of a crisis.
    pub async fn retex(&self, id: &str) -> Result<RetexView, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/retex", urlencode(id))).await
    }

    /// Sends a failed notification again; answers the queue.
    pub async fn retry_notification(&self, id: i64) -> Result<Vec<NotificationView>, ClientError> {
        self.post(&format!("{API_PREFIX}/notifications/{id}/retry"), &serde_json::json!({})).await
    }

    pub async fn import_inventory(&self, req: &ImportRequest) -> Result<ImportView, ClientError> {
        self.post(&format!("{API_PREFIX}/inventory/import"), req).await
    }

    pub async fn inventory_status(&self) -> Result<Vec<InventoryStatusLine>, ClientError> {
        self.get(&format!("{API_PREFIX}/inventory")).await
    }

    pub async fn inventory_items(&self) -> Result<Vec<ItemView>, ClientError> {
        self.get(&format!("{API_PREFIX}/inventory/items")).await
    }

    pub async fn item(&self, serial: &str) -> Result<ItemDetail, ClientError> {
        self.get(&format!("{API_PREFIX}/inventory/items/{}", urlencode(serial))).await
    }

    pub async fn wipe(&self, serial: &str, req: &WipeRequest) -> Result<ItemDetail, ClientError> {
        self.post(&format!("{API_PREFIX}/inventory/items/{}/wipe", urlencode(serial)), req).await
    }

    /// Records the check that puts a returned router, SIM or printer back in stock.
    pub async fn check_item(&self, serial: &str, req: &crate::api::CheckRequest) -> Result<ItemDetail, ClientError> {
        self.post(&format!("{API_PREFIX}/inventory/items/{}/check", urlencode(serial)), req).await
    }

    pub async fn service_item(
        &self,
        serial: &str,
        req: &crate::api::ServiceRequest,
    ) -> Result<ItemDetail, ClientError> {
        self.post(&format!("{API_PREFIX}/inventory/items/{}/service", urlencode(serial)), req).await
    }

    pub async fn set_agents(&self, id: &str, req: &AgentsRequest) -> Result<Vec<AgentView>, ClientError> {
        self.send(self.request(Method::PUT, &format!("{API_PREFIX}/crises/{}/agents", urlencode(id)))?.json(req)).await
    }

    /// Adds agents to the list (accounts follow for the new names once accounts exist).
    pub async fn add_agents(&self, id: &str, req: &AgentsRequest) -> Result<Vec<AgentView>, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/agents", urlencode(id)), req).await
    }

    /// Ops accept the named agents as the whole list, fewer than declared.
    pub async fn accept_agents(&self, id: &str) -> Result<CrisisView, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/agents/accept", urlencode(id)), &serde_json::json!({})).await
    }

    pub async fn agents(&self, id: &str) -> Result<Vec<AgentView>, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/agents", urlencode(id))).await
    }

    pub async fn loans(&self, id: &str) -> Result<Vec<LoanView>, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/loans", urlencode(id))).await
    }

    pub async fn lend(&self, id: &str, req: &LendRequest) -> Result<Vec<LoanView>, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/loans", urlencode(id)), req).await
    }

    pub async fn check_in(&self, id: &str, req: &CheckinRequest) -> Result<Vec<LoanView>, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/checkin", urlencode(id)), req).await
    }

    pub async fn write_off(&self, id: &str, req: &WriteOffRequest) -> Result<Vec<LoanView>, ClientError> {
        self.post(&format!("{API_PREFIX}/crises/{}/write-off", urlencode(id)), req).await
    }

    pub async fn crisis_log(&self, id: &str) -> Result<Vec<LogEntryView>, ClientError> {
        self.get(&format!("{API_PREFIX}/crises/{}/log", urlencode(id))).await
    }

    pub async fn add_log(&self, id: &str, kind: &str, text: &str) -> Result<LogEntryView, ClientError> {
        let body = LogEntryRequest { kind: kind.to_owned(), text: text.to_owned() };
        self.post(&format!("{API_PREFIX}/crises/{}/log", urlencode(id)), &body).await
    }

    /// Sends a raw body to a path: for tests of malformed input.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let rb = self.request(Method::POST, path)?.header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send(rb).await
    }
}

/// Percent-encodes one path segment.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(urlencode("13005-2026-001"), "13005-2026-001");
        assert_eq!(urlencode("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(Client::new("not a url", None).is_err());
        assert!(Client::new("ftp://host", None).is_err());
        assert!(Client::new("mailto:x@y.fr", None).is_err());
        assert_eq!(Client::new("http://127.0.0.1:1/repli", None).unwrap().base_url(), "http://127.0.0.1:1/repli/");
    }
}
