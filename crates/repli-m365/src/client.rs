//! The one resilience layer between Repli and Graph: token, retries, throttling gate,
//! `$batch`, paging and bounded concurrency. graph-rs-sdk builds and sends each request;
//! its own retry layers are off (they only know integer `Retry-After`, and neither paging nor
//! `$batch` goes through them).

use crate::gate::{Answer, Gate, MAX_BATCH, Ticket};
use crate::wire::{self, Page};
use crate::{CallStats, Error, Grant, Result, Secret};
use futures_util::StreamExt;
use graph_http::api_impl::RequestHandler;
use graph_rs_sdk::http::{BodyRead, Method};
use graph_rs_sdk::{GraphClient, GraphClientConfiguration};
use repli_core::m365::{Fetched, ItemSink};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

/// Microsoft's Graph hosts (national clouds included); any other https host is refused.
const GRAPH_HOSTS: [&str; 4] =
    ["graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"];
const LOGIN_HOSTS: [&str; 3] = ["login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"];

/// Microsoft 365 Business Standard without Teams and Microsoft Teams, as sold in the EEA.
pub const DEFAULT_SKUS: [&str; 2] = ["Microsoft_365_Business_Standard_EEA_(no_Teams)", "Microsoft_Teams_EEA_New"];

/// Requests in flight at once on one tenant's connection by default: enough for the waves of
/// ten 50-agent kits provisioned together (a campaign). The throttle gate, not this bound,
/// paces a throttled tenant.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How the app proves who it is to the token endpoint.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A client secret (lives at most 24 months).
    Secret(Secret),
    /// A certificate: a `private_key_jwt` client assertion signed with its RSA key, named by the
    /// certificate's SHA-256 thumbprint (Microsoft identity platform certificate credentials).
    Certificate(crate::cert::ClientCertificate),
}

impl From<Secret> for Credential {
    fn from(s: Secret) -> Self {
        Credential::Secret(s)
    }
}

/// Where and how to reach Graph.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// `https://graph.microsoft.com/v1.0`, or a loopback simulator's `http://127.0.0.1:P/v1.0`.
    pub graph_url: String,
    /// `https://login.microsoftonline.com`, or the simulator's root.
    pub login_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub credential: Credential,
    /// Licence SKUs assigned to every account, by part number (a suite and, in the EEA since
    /// October 2023, Teams apart).
    pub sku_part_numbers: Vec<String>,
    /// Time budget of one operation, retries included.
    pub budget: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// JSON `$batch` for accounts and licences (off: one request per item, as a script would).
    pub batch: bool,
    pub max_backoff: Duration,
    pub request_timeout: Duration,
    /// The standing organiser of the kits' meetings (object id), when ops named one that a
    /// Teams application access policy covers; `None`: each kit's first account organises,
    /// which needs the policy granted with `-Global` (proven by the preflight's canary).
    pub meeting_organizer: Option<String>,
    /// How long `PUT /groups/{id}/team` may answer 404 after the group's creation before the
    /// Team step gives up (team-put-teams: up to 15 minutes).
    pub team_lag_budget: Duration,
    /// Time between two such attempts (Microsoft: 10 seconds).
    pub team_retry_interval: Duration,
    /// The administrative unit the app's User Administrator role is scoped to
    /// (`m365.admin_unit`): a refused password reset then names it.
    pub admin_unit: Option<String>,
}

impl GraphConfig {
    /// Defaults for a tenant or simulator at `graph_url`/`login_url`.
    pub fn new(
        graph_url: &str,
        login_url: &str,
        tenant_id: &str,
        client_id: &str,
        credential: impl Into<Credential>,
    ) -> Self {
        GraphConfig {
            graph_url: graph_url.trim_end_matches('/').to_string(),
            login_url: login_url.trim_end_matches('/').to_string(),
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            credential: credential.into(),
            sku_part_numbers: DEFAULT_SKUS.iter().map(|s| (*s).to_string()).collect(),
            budget: Duration::from_secs(120),
            concurrency: DEFAULT_CONCURRENCY,
            batch: true,
            max_backoff: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            meeting_organizer: None,
            admin_unit: None,
            team_lag_budget: Duration::from_secs(15 * 60),
            team_retry_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    http_calls: AtomicU64,
    graph_requests: AtomicU64,
    distinct_requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
}

/// One answer, body already read.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// A `$batch` answered 424 as a whole with each request's answer in its body: Graph's
    /// throttling guidance says a batch with a throttled request "fails with a status code of
    /// 424" ("Throttling and batching"), where JSON batching answers 200 to any batch it could
    /// parse. Either way the answers are the requests' own.
    fn batch_answered_424(&self) -> bool {
        self.status == 424 && self.body.get("responses").is_some_and(Value::is_array)
    }
    /// Graph's error code and message; a body that is not Graph's error shape (a proxy's page,
    /// an empty body) gives `unknown` and the body's text.
    fn code_message(&self) -> (String, String) {
        match wire::decode::<wire::ErrorBody>("error", "a failed request", self.body.clone()) {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("unknown".to_string(), self.body.as_str().unwrap_or("").to_string()),
        }
    }
    pub fn message(&self) -> String {
        self.code_message().1
    }
    /// A 403 `Authorization_RequestDenied`: the token's permissions or roles do not allow it.
    pub fn denied(&self) -> bool {
        self.status == 403 && self.code_message().0 == REQUEST_DENIED
    }
    pub fn into_error(self, op: &str) -> Error {
        let (code, message) = self.code_message();
        if self.status == 403 {
            let missing = missing_grant(op, &code, &message);
            return Error::Forbidden { op: op.to_string(), code, message, missing };
        }
        Error::Graph { op: op.to_string(), status: self.status, code, message }
    }
}

/// The token request, as a decoding error names it.
const TOKEN_CALL: &str = "POST /{tenant}/oauth2/v2.0/token";

/// Graph's error code, in a 403 to `PUT /groups/{id}/team`, for an owner without a Teams licence.
pub(crate) const OWNER_UNLICENSED: &str = "GetApplicableSkuCategoriesForUserFailed";

/// Graph's error code for a call the app's permissions or roles do not allow.
pub(crate) const REQUEST_DENIED: &str = "Authorization_RequestDenied";

/// Whether a refusal says the meeting organiser is not covered by a Teams application access
/// policy: "App … is not authorized to Create meeting on behalf of user …" (the answer the
/// policy page documents under "Errors") or "No application access policy found for this app".
pub(crate) fn policy_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("access policy") || (m.contains("not authorized to") && m.contains("on behalf of user"))
}

/// What the app lacks when Graph refuses `op` with 403: the least-privilege grant that
/// allows it (docs/M365.md lists them with their pages).
fn missing_grant(op: &str, code: &str, message: &str) -> Grant {
    let permission = |p: &str| Grant::Permission(p.to_string());
    match op.split('.').next().unwrap_or_default() {
        _ if op == "accounts.password" => Grant::Role(repli_core::m365::USER_ADMINISTRATOR.0.to_string()),
        _ if op == "accounts.purge" => permission("User.DeleteRestore.All"),
        _ if op == "accounts.revoke" => permission("User.RevokeSessions.All"),
        _ if op == "app.roleAssignments" => permission("RoleManagement.Read.Directory"),
        _ if op.starts_with("app.") => permission("Application.Read.All"),
        // The hand-back's reads: listing mail needs less than reading it, but one grant,
        // Mail.Read, covers both (message-get with $value).
        _ if op == "export.mail" || op == "export.message" => permission("Mail.Read"),
        _ if op == "export.files" || op == "export.file" => permission("Files.Read.All"),
        // channel-list-messages, chatmessage-list-replies: a protected API Microsoft approves.
        _ if op == "export.channel" => permission("ChannelMessage.Read.All"),
        // A meeting refused for anything but the app's permissions is the access policy: the
        // permission check of the same preflight says whether OnlineMeetings.ReadWrite.All is
        // granted, so the two never contradict each other.
        "meeting" if policy_refusal(message) || code != REQUEST_DENIED => Grant::MeetingPolicy,
        "team" if message.contains(OWNER_UNLICENSED) => Grant::TeamsLicence,
        "meeting" => permission("OnlineMeetings.ReadWrite.All"),
        "domain" => permission("Domain.ReadWrite.All"),
        "subscribedSkus" => permission("Organization.Read.All"),
        "group" | "team" => permission("Group.ReadWrite.All"),
        _ => permission("User.ReadWrite.All"),
    }
}

/// One request of a batch (or sent alone when batching is off). Batches are always fully
/// parallel: Graph refuses a batch that mixes `dependsOn` chains and independent requests
/// (json-batching), so what depends on another request goes in a later wave.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub id: String,
    pub method: Method,
    /// Relative to the Graph base, with a leading `/`, query included.
    pub url: String,
    pub body: Option<Value>,
}

/// When a retry is worth it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Opts {
    /// 404 means "not replicated yet" (an object this run or a crashed one just created).
    pub retry_not_found: bool,
    /// A 429 is answered to the caller instead of retried (a `$batch`: its items are paced
    /// and resent by [`Graph::run_items`], not the whole batch again), and the caller went
    /// through the gate already.
    pub throttle_to_caller: bool,
}

struct Session {
    client: GraphClient,
    /// The bearer of raw downloads (`$value`, `/content`), which graph-rs-sdk cannot stream
    /// to a sink nor stop before a redirect. Sent only to the configured Graph base.
    token: Secret,
    renew_at: Instant,
}

/// The Graph connection: graph-rs-sdk client, token, gate and counters.
pub(crate) struct Graph {
    pub config: GraphConfig,
    loopback: bool,
    http: reqwest::Client,
    /// Downloads: redirects not followed (the pre-authenticated URL is fetched without the
    /// bearer), no overall timeout (a large file takes its time), a read timeout instead.
    downloads: reqwest::Client,
    session: tokio::sync::Mutex<Option<Session>>,
    /// The tenant's throttle gate, shared by every operation of every crisis.
    gate: Gate,
    permits: Arc<Semaphore>,
    counters: Counters,
    rng: std::sync::Mutex<fastrand::Rng>,
    /// Set when Graph refused the cached token's grants (401, or 403
    /// `Authorization_RequestDenied` after an administrator's grant): the next request fetches
    /// a new token. A token carries what was granted when it was issued (Microsoft identity
    /// platform, "Access tokens"), for 60 to 90 minutes.
    stale: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("config", &self.config).finish_non_exhaustive()
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Accepts https on Microsoft's hosts, and plain http only on a loopback address (a simulator).
fn check_endpoint(what: &str, raw: &str, hosts: &[&str]) -> Result<(Url, bool)> {
    let url = Url::parse(raw).map_err(|e| Error::Endpoint(format!("{what} {raw:?} is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Endpoint(format!("{what} {raw:?} must not carry a query or fragment")));
    }
    match url.scheme() {
        "http" if is_loopback(&url) => Ok((url, true)),
        "http" => Err(Error::Endpoint(format!(
            "{what} {raw:?} uses plain http on a non-loopback host; only a local simulator (127.0.0.1, ::1, localhost) may use http"
        ))),
        "https" if url.host_str().is_some_and(|h| hosts.iter().any(|m| h.eq_ignore_ascii_case(m))) => Ok((url, false)),
        "https" => Err(Error::Endpoint(format!("{what} {raw:?} is not a Microsoft host ({})", hosts.join(", ")))),
        other => Err(Error::Endpoint(format!("{what} {raw:?}: unsupported scheme {other}"))),
    }
}

/// `Retry-After` as seconds (whole or decimal, `2.128`: Graph sends both) or as an HTTP-date,
/// relative to `now`. Anything else (negative, not a number, absurdly large) is `None`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') && value.bytes().filter(|b| *b == b'.').count() == 1 {
        let seconds = value.parse::<f64>().ok()?;
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether operation `op` is one of a bulk stream of single requests (the hand-back's export:
/// its listings and downloads), which take their turn at the gate instead of going ahead of
/// the batches as a kit's chain of steps does (gate.rs).
fn bulk(op: &str) -> bool {
    op.starts_with("export.")
}

/// The wall clock, only to read `Retry-After` HTTP-dates (the server's clock is a wall clock).
#[allow(clippy::disallowed_methods)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

fn split_url(url: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
    let segments = path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let query = query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    (segments, query)
}

impl Graph {
    pub fn new(config: GraphConfig) -> Result<Self> {
        let (_, loopback) = check_endpoint("graph_url", &config.graph_url, &GRAPH_HOSTS)?;
        let (_, login_loopback) = check_endpoint("login_url", &config.login_url, &LOGIN_HOSTS)?;
        if loopback != login_loopback {
            return Err(Error::Endpoint(
                "graph_url and login_url must both be Microsoft's or both be a local simulator".into(),
            ));
        }
        let credential_missing = match &config.credential {
            Credential::Secret(s) => s.expose().is_empty(),
            Credential::Certificate(_) => false,
        };
        if config.tenant_id.is_empty() || config.client_id.is_empty() || credential_missing {
            return Err(Error::Auth("tenant id, client id and a client secret or certificate are all required".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .https_only(!loopback)
            .build()
            .map_err(|e| Error::Endpoint(e.to_string()))?;
        let downloads = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.request_timeout)
            .read_timeout(config.request_timeout)
            .https_only(!loopback)
            .build()
            .map_err(|e| Error::Endpoint(e.to_string()))?;
        let concurrency = config.concurrency.max(1);
        Ok(Graph {
            config,
            loopback,
            http,
            downloads,
            session: tokio::sync::Mutex::new(None),
            gate: Gate::default(),
            permits: Arc::new(Semaphore::new(concurrency)),
            counters: Counters::default(),
            rng: std::sync::Mutex::new(fastrand::Rng::new()),
            stale: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A new access token now (the preflight's: what was granted a minute ago counts).
    pub async fn fresh_token(&self) -> Result<()> {
        self.stale.store(true, Ordering::Relaxed);
        self.client().await.map(|_| ())
    }

    /// The cached token is dropped: the next request fetches a new one.
    fn drop_token(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    pub fn stats(&self) -> CallStats {
        CallStats {
            http_calls: self.counters.http_calls.load(Ordering::Relaxed),
            graph_requests: self.counters.graph_requests.load(Ordering::Relaxed),
            distinct_requests: self.counters.distinct_requests.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            throttled: self.counters.throttled.load(Ordering::Relaxed),
            limit_per_second: self.gate.limit().map(|l| l as u64),
            sent_last_second: self.gate.sent_in_window() as u64,
        }
    }

    /// What the throttle gate knows of the tenant ([`crate::GraphPace`]).
    pub fn pace(&self) -> crate::GraphPace {
        self.gate.pace()
    }

    /// Starts the throttle gate from a pace kept from an earlier run.
    pub fn recall_pace(&self, pace: crate::GraphPace) {
        self.gate.recall(pace);
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(200).saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let cap = base.min(self.config.max_backoff);
        let jitter = self.rng.lock().map(|mut r| r.f64()).unwrap_or(0.5);
        cap.mul_f64(0.5 + jitter / 2.0)
    }

    fn wait_for(&self, reply_retry_after: Option<&str>, attempt: u32) -> Duration {
        reply_retry_after
            .and_then(|v| parse_retry_after(v, wall_now()))
            .map_or_else(|| self.backoff(attempt), |d| d.min(self.config.max_backoff.max(Duration::from_secs(120))))
    }

    fn note_throttled(&self) {
        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A client carrying a valid token, fetching a new token when it is close to expiry.
    async fn client(&self) -> Result<GraphClient> {
        let mut session = self.session.lock().await;
        if self.stale.swap(false, Ordering::Relaxed) {
            *session = None;
        }
        if let Some(s) = session.as_ref()
            && Instant::now() < s.renew_at
        {
            return Ok(s.client.clone());
        }
        let (token, lifetime) = self.fetch_token().await?;
        let config = GraphClientConfiguration::new()
            .access_token(token.expose())
            .https_only(!self.loopback)
            .timeout(self.config.request_timeout);
        let mut client = GraphClient::from(config);
        let url = Url::parse(&self.config.graph_url).map_err(|e| Error::Endpoint(e.to_string()))?;
        if self.loopback {
            // graph-rs-sdk panics on non-Microsoft hosts; its test endpoint is used only for a
            // loopback URL, checked in `check_endpoint`.
            client.use_test_endpoint(&url);
        } else {
            client.use_endpoint(&url);
        }
        let renew_at = Instant::now() + lifetime.saturating_sub(Duration::from_secs(300)).max(lifetime / 2);
        *session = Some(Session { client: client.clone(), token, renew_at });
        Ok(client)
    }

    /// The token scope: the Graph endpoint's origin + `/.default` (national clouds included).
    pub fn scope(&self) -> String {
        match Url::parse(&self.config.graph_url) {
            Ok(u) => format!("{}/.default", u.origin().ascii_serialization()),
            Err(_) => "https://graph.microsoft.com/.default".into(),
        }
    }

    /// Client-credentials grant (graph-oauth cannot be pointed at a simulator's authority, so
    /// this one form post is ours; it goes through the same retry rules). With a certificate,
    /// a fresh client assertion is signed for each request.
    async fn fetch_token(&self) -> Result<(Secret, Duration)> {
        let url = format!("{}/{}/oauth2/v2.0/token", self.config.login_url, self.config.tenant_id);
        let scope = self.scope();
        let form_for = || -> Result<Vec<(&'static str, String)>> {
            let mut form = vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", self.config.client_id.clone()),
                ("scope", scope.clone()),
            ];
            match &self.config.credential {
                Credential::Secret(s) => form.push(("client_secret", s.expose().to_string())),
                Credential::Certificate(c) => {
                    form.push((
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                    ));
                    form.push(("client_assertion", c.assertion(&self.config.client_id, &url)?.expose().to_string()));
                }
            }
            Ok(form)
        };
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.counters.http_calls.fetch_add(1, Ordering::Relaxed);
            let result = self.http.post(&url).form(&form_for()?).send().await;
            let (wait, last) = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after =
                        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
                    match resp.json::<Value>().await {
                        Ok(body) if status == 200 => {
                            let token: wire::TokenResponse = wire::decode("token", TOKEN_CALL, body)?;
                            let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3599));
                            return Ok((Secret::new(token.access_token), lifetime));
                        }
                        Ok(_) if matches!(status, 429 | 500..=599) => {
                            (self.wait_for(retry_after.as_deref(), attempt), format!("{status}"))
                        }
                        Ok(body) => {
                            let refusal = wire::decode::<wire::TokenError>("token", TOKEN_CALL, body).ok();
                            let reason = refusal
                                .and_then(|r| r.error_description.or(r.error))
                                .unwrap_or_else(|| "refused".to_string());
                            return Err(Error::Auth(format!("token endpoint answered {status}: {reason}")));
                        }
                        Err(e) => (self.backoff(attempt), e.to_string()),
                    }
                }
                Err(e) => (self.backoff(attempt), e.to_string()),
            };
            if started.elapsed() + wait > self.config.budget {
                return Err(Error::Budget {
                    op: "token".into(),
                    attempts: attempt,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last,
                });
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    async fn exchange(request: RequestHandler) -> std::result::Result<Reply, String> {
        let resp = request.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let location = header("location");
        let retry_after = header("retry-after");
        let bytes = resp.bytes().await.map_err(|e| format!("transport (body): {e}"))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if !(200..300).contains(&status) => json!(String::from_utf8_lossy(&bytes)),
                Err(e) => return Err(format!("invalid JSON from Graph: {e}")),
            }
        };
        Ok(Reply { status, location, retry_after, body })
    }

    /// Sends one request built by `make`, retrying within the budget; returns the final
    /// answer whatever its status (the caller maps non-2xx).
    /// `graph_requests` is how many Graph requests one send carries (a batch's items), and
    /// `fresh` how many of them are sent for the first time.
    pub async fn call_raw<F>(&self, op: &str, opts: Opts, (graph_requests, fresh): (u64, u64), make: F) -> Result<Reply>
    where
        F: Fn(&GraphClient) -> RequestHandler,
    {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            // A batch went through the gate with its items (run_items); one request goes alone.
            let ticket = if opts.throttle_to_caller { None } else { Some(self.gate.admit(1, false, bulk(op)).await) };
            let client = self.client().await?;
            let outcome = {
                let _permit = self.permits.acquire().await.map_err(|e| Error::Endpoint(e.to_string()))?;
                self.counters.http_calls.fetch_add(1, Ordering::Relaxed);
                self.counters.graph_requests.fetch_add(graph_requests, Ordering::Relaxed);
                if attempt == 1 {
                    self.counters.distinct_requests.fetch_add(fresh, Ordering::Relaxed);
                }
                let sent = Instant::now();
                let outcome = Self::exchange(make(&client)).await;
                tracing::trace!(
                    op,
                    requests = graph_requests,
                    status = outcome.as_ref().map_or(0, |r| r.status),
                    ms = sent.elapsed().as_millis() as u64,
                    "graph exchange"
                );
                outcome
            };
            if let Some(ticket) = &ticket {
                let throttled = match &outcome {
                    Ok(reply) if reply.status == 429 => Some(self.wait_for(reply.retry_after.as_deref(), attempt)),
                    _ => None,
                };
                self.gate.answered(ticket, Answer { admitted: 1, outer_admitted: false, throttled });
            }
            let (wait, last) = match outcome {
                Ok(reply) if reply.ok() => return Ok(reply),
                Ok(reply) if reply.status == 429 && opts.throttle_to_caller => return Ok(reply),
                Ok(reply) if reply.batch_answered_424() && opts.throttle_to_caller => return Ok(reply),
                Ok(reply) if reply.status == 429 => {
                    self.note_throttled();
                    // The gate stays closed for the wait; this request waits at the gate.
                    (Duration::ZERO, format!("429 {}", reply.message()))
                }
                // 424 Failed Dependency: an outer `$batch` answer as well as an inner one
                // (json-batching); nothing of it was applied, and every item is idempotent.
                Ok(reply) if matches!(reply.status, 424 | 502..=504) => (
                    self.wait_for(reply.retry_after.as_deref(), attempt),
                    format!("{} {}", reply.status, reply.message()),
                ),
                // A token issued before an administrator's grant does not carry it: once, a new
                // token (Microsoft identity platform, "Access tokens": opaque to clients, granted
                // rights fixed at issue).
                Ok(reply) if (reply.status == 401 || reply.denied()) && !renewed => {
                    renewed = true;
                    self.drop_token();
                    (Duration::ZERO, format!("{}: token renewed", reply.status))
                }
                Ok(reply) if reply.status == 404 && opts.retry_not_found => {
                    (self.backoff(attempt), format!("404 {}", reply.message()))
                }
                Ok(reply) => return Ok(reply),
                Err(transport) => (self.backoff(attempt), transport),
            };
            if started.elapsed() + wait > self.config.budget {
                return Err(Error::Budget {
                    op: op.to_string(),
                    attempts: attempt,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last,
                });
            }
            tracing::debug!(op, attempt, wait_ms = wait.as_millis() as u64, reason = %last, "graph retry");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// As [`Graph::call_raw`], with any non-2xx answer turned into [`Error::Graph`].
    pub async fn call<F>(&self, op: &str, opts: Opts, make: F) -> Result<Reply>
    where
        F: Fn(&GraphClient) -> RequestHandler,
    {
        let reply = self.call_raw(op, opts, (1, 1), make).await?;
        if reply.ok() { Ok(reply) } else { Err(reply.into_error(op)) }
    }

    /// A request from a relative URL (`/users/x/assignLicense?…`), body optional.
    /// The method is typed: it used to be a string read with `unwrap_or(Method::GET)`, so a
    /// mistyped one would have sent a GET.
    pub fn custom(client: &GraphClient, method: Method, url: &str, body: Option<&Value>) -> RequestHandler {
        // Serialising a `serde_json::Value` cannot fail (its keys are strings), so `ok()` drops
        // nothing in practice; the builder closure has no way to return an error.
        let body = body.and_then(|b| BodyRead::from_serialize(b).ok());
        let (segments, query) = split_url(url);
        let mut handler = client.custom(method, body);
        if !segments.is_empty() {
            handler = handler.extend_path(&segments);
        }
        for (k, v) in query {
            handler = handler.append_query_pair(k, v);
        }
        handler
    }

    /// The first page of a listing, nothing more (a probe of what the app may read).
    pub async fn list_page<T: DeserializeOwned>(&self, op: &str, url: &str) -> Result<Vec<T>> {
        let reply = self.call(op, Opts::default(), |c| Self::custom(c, Method::GET, url, None)).await?;
        let page: Page<T> = wire::decode(op, url, reply.body)?;
        Ok(page.value)
    }

    /// Every item of a listing, following `@odata.nextLink` with the same retries; `call` names
    /// the listing in a decoding error (`GET /subscribedSkus`).
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        op: &str,
        call: &str,
        url: &str,
        eventual: bool,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(url.to_string());
        while let Some(relative) = next.take() {
            let reply = self
                .call(op, Opts::default(), |c| {
                    let h = Self::custom(c, Method::GET, &relative, None);
                    if eventual {
                        h.header(
                            reqwest::header::HeaderName::from_static("consistencylevel"),
                            reqwest::header::HeaderValue::from_static("eventual"),
                        )
                    } else {
                        h
                    }
                })
                .await?;
            let page: Page<T> = wire::decode(op, call, reply.body)?;
            items.extend(page.value);
            if let Some(link) = page.next_link {
                // The token goes only to the configured Graph base.
                let rest = link
                    .strip_prefix(&self.config.graph_url)
                    .ok_or_else(|| Error::Endpoint(format!("nextLink {link:?} leaves the Graph endpoint")))?;
                next = Some(rest.to_string());
            }
        }
        Ok(items)
    }

    /// Runs independent items: batched, up to 20 per `$batch` with no `dependsOn` (fully
    /// parallel). Batches go out as the tenant's [`Gate`] lets them, several in flight at once
    /// (bounded); throttled items go back first in line, failed-over or not-yet-replicated ones
    /// after their backoff. Unbatched: one request per item. Returns the final answer of every
    /// item by id.
    pub async fn run_items(&self, op: &str, items: Vec<Item>, opts: Opts) -> Result<BTreeMap<String, Reply>> {
        if !self.config.batch {
            let mut results = BTreeMap::new();
            for item in items {
                let reply = self
                    .call_raw(op, opts, (1, 1), |c| Self::custom(c, item.method.clone(), &item.url, item.body.as_ref()))
                    .await?;
                if reply.status == 403 {
                    return Err(reply.into_error(op));
                }
                results.insert(item.id.clone(), reply);
            }
            return Ok(results);
        }
        let started = Instant::now();
        let mut results: BTreeMap<String, Reply> = BTreeMap::new();
        let mut pending: std::collections::VecDeque<(Item, u32)> = items.into_iter().map(|i| (i, 0)).collect();
        let mut sent = std::collections::BTreeSet::new();
        let mut flying: Flying<'_> = Flying::new();
        let run = RunCtx { op, opts, renewed: std::sync::atomic::AtomicBool::new(false) };
        let mut admitting: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Ticket> + Send + '_>>> = None;
        loop {
            if admitting.is_none() && !pending.is_empty() {
                admitting = Some(Box::pin(self.gate.admit(pending.len().min(MAX_BATCH), true, bulk(op))));
            }
            let Some(admit) = admitting.as_mut() else {
                match flying.next().await {
                    Some(flight) => {
                        self.landed(&run, flight, &mut pending, &mut results, &flying)?;
                        continue;
                    }
                    None => break,
                }
            };
            tokio::select! {
                ticket = admit => {
                    admitting = None;
                    let batch: Vec<(Item, u32)> = pending.drain(..ticket.items.min(pending.len())).collect();
                    let fresh = batch.iter().filter(|(i, _)| sent.insert(i.id.clone())).count() as u64;
                    flying.push(Box::pin(async move {
                        let items: Vec<Item> = batch.iter().map(|(i, _)| i.clone()).collect();
                        let answer = self.send_batch(op, &items, fresh).await;
                        Flight::Answered { ticket, batch, answer }
                    }));
                }
                Some(flight) = flying.next(), if !flying.is_empty() => {
                    self.landed(&run, flight, &mut pending, &mut results, &flying)?;
                }
            }
            if !pending.is_empty() && started.elapsed() > self.config.budget {
                let attempts = pending.iter().map(|(_, a)| *a).max().unwrap_or(0);
                return Err(Error::Budget {
                    op: op.to_string(),
                    attempts,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last: format!("{} requests still throttled or failing", pending.len()),
                });
            }
        }
        Ok(results)
    }

    /// What came back of a batch: throttled items go back first in line, failed-over or
    /// not-yet-replicated ones after their backoff; the gate learns what Graph admitted.
    fn landed<'a>(
        &'a self,
        run: &RunCtx<'a>,
        flight: Flight,
        pending: &mut std::collections::VecDeque<(Item, u32)>,
        results: &mut BTreeMap<String, Reply>,
        flying: &Flying<'a>,
    ) -> Result<()> {
        let (op, opts, renewed) = (run.op, run.opts, &run.renewed);
        let (ticket, batch, answer) = match flight {
            Flight::Later(batch) => {
                for item in batch.into_iter().rev() {
                    pending.push_front(item);
                }
                return Ok(());
            }
            Flight::Answered { ticket, batch, answer } => (ticket, batch, answer),
        };
        let (outer_admitted, mut answer) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.gate.answered(&ticket, Answer { admitted: ticket.items, outer_admitted: true, throttled: None });
                return Err(e);
            }
        };
        let mut throttled: Option<Duration> = None;
        let mut admitted = 0usize;
        let mut again = Vec::new();
        let mut later = Vec::new();
        let mut backoff = Duration::ZERO;
        let mut denied = None;
        for (item, attempt) in batch {
            let reply = answer.remove(&item.id).unwrap_or(Reply {
                status: 500,
                location: None,
                retry_after: None,
                body: json!({"error": {"code": "missingResponse", "message": "no response for this id"}}),
            });
            if reply.status == 429 {
                let wait = self.wait_for(reply.retry_after.as_deref(), attempt + 1);
                throttled = Some(throttled.map_or(wait, |w| w.max(wait)));
                again.push((item, attempt + 1));
                continue;
            }
            admitted += 1;
            // Refused for the token's grants: once per run, a new token and the item again.
            if reply.denied() && !renewed.swap(true, Ordering::Relaxed) {
                self.drop_token();
                again.push((item, attempt + 1));
                continue;
            }
            // 424: a dependency failed (json-batching); retried as the dependency would be.
            if matches!(reply.status, 424 | 502..=504) || (reply.status == 404 && opts.retry_not_found) {
                backoff = backoff.max(self.wait_for(reply.retry_after.as_deref(), attempt + 1));
                tracing::debug!(op, id = %item.id, status = reply.status, "graph item retried");
                later.push((item, attempt + 1));
            } else {
                if reply.status == 403 && denied.is_none() {
                    denied = Some(reply.clone());
                }
                results.insert(item.id.clone(), reply);
            }
        }
        self.gate.answered(&ticket, Answer { admitted, outer_admitted, throttled });
        if throttled.is_some() {
            self.note_throttled();
        }
        self.counters.retries.fetch_add((again.len() + later.len()) as u64, Ordering::Relaxed);
        // Items sent again go first, before those not sent yet.
        for item in again.into_iter().rev() {
            pending.push_front(item);
        }
        if !later.is_empty() {
            flying.push(Box::pin(async move {
                tokio::time::sleep(backoff).await;
                Flight::Later(later)
            }));
        }
        // A permission the app lacks fails the operation, naming what to grant.
        match denied {
            Some(reply) => Err(reply.into_error(op)),
            None => Ok(()),
        }
    }

    /// Sends one `$batch` of `items`; answers whether Graph served the batch itself (not a 429
    /// for the whole of it) and each item's answer by id.
    async fn send_batch(&self, op: &str, items: &[Item], fresh: u64) -> Result<(bool, BTreeMap<String, Reply>)> {
        let requests: Vec<Value> = items
            .iter()
            .map(|i| {
                let mut r = json!({"id": i.id, "method": i.method.as_str(), "url": i.url});
                // A write carries a body and its Content-Type in a batch, even an action without
                // parameters (revokeSignInSessions): Graph refuses it otherwise.
                let write = [Method::POST, Method::PATCH, Method::PUT].contains(&i.method);
                if let Some(b) = i.body.clone().or_else(|| write.then(|| json!({}))) {
                    r["body"] = b;
                    r["headers"] = json!({"Content-Type": "application/json"});
                }
                r
            })
            .collect();
        let payload = json!({"requests": requests});
        let opts = Opts { throttle_to_caller: true, ..Opts::default() };
        let reply = self.call_raw(op, opts, (items.len() as u64, fresh), |c| c.batch(&payload)).await?;
        if reply.status == 429 {
            // The whole batch was throttled: every item is, with the same wait.
            return Ok((false, items.iter().map(|i| (i.id.clone(), reply.clone())).collect()));
        }
        if !reply.ok() && !reply.batch_answered_424() {
            return Err(reply.into_error(op));
        }
        let answer: wire::BatchResponse = wire::decode(op, "POST /$batch", reply.body)?;
        let mut out = BTreeMap::new();
        for r in answer.responses {
            let header =
                |name: &str| r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            let (location, retry_after) = (header("location"), header("retry-after"));
            out.insert(r.id, Reply { status: r.status, location, retry_after, body: r.body });
        }
        Ok((true, out))
    }
}

/// What one [`Graph::run_items`] is about: its operation, when to retry, and whether it already
/// took a new token after a refusal (once per run).
struct RunCtx<'a> {
    op: &'a str,
    opts: Opts,
    renewed: std::sync::atomic::AtomicBool,
}

/// The batches of one [`Graph::run_items`] in flight, and its items waiting out a backoff.
type Flying<'a> =
    futures_util::stream::FuturesUnordered<std::pin::Pin<Box<dyn std::future::Future<Output = Flight> + Send + 'a>>>;

/// A batch in flight, or items back from their backoff.
enum Flight {
    Answered { ticket: Ticket, batch: Vec<(Item, u32)>, answer: Result<(bool, BTreeMap<String, Reply>)> },
    Later(Vec<(Item, u32)>),
}

/// How one attempt at the pre-authenticated URL ended.
enum FromUrl {
    Done(Fetched),
    /// The URL refused (expired, say): ask Graph for a new one.
    Renew(String),
    /// Cut or failed: try again after `wait` (bytes already in the sink are kept).
    Again(Duration, String),
}

impl Graph {
    /// The bearer for a raw download (a fresh one if the cached token is due).
    async fn bearer(&self) -> Result<Secret> {
        self.client().await?;
        let session = self.session.lock().await;
        session.as_ref().map(|s| s.token.clone()).ok_or_else(|| Error::Auth("no access token".into()))
    }

    /// Streams the content at `relative` (a message's `$value`, a drive item's `/content`)
    /// into `sink`, through the tenant's gate and retry rules: 429 waits for `Retry-After`,
    /// 5xx and cut transfers back off, 404 is [`Fetched::Gone`]. A `/content` answers 302 to a
    /// pre-authenticated URL, fetched without the bearer (driveitem-get-content) and resumed
    /// with `Range` where the last attempt stopped. The time budget counts from the last byte
    /// received, so a large file is never cut for being large.
    pub async fn download(&self, op: &str, relative: &str, max: u64, sink: &mut dyn ItemSink) -> Result<Fetched> {
        let mut last_progress = Instant::now();
        let mut attempt: u32 = 0;
        let mut renewed = false;
        let url = format!("{}{}", self.config.graph_url, relative);
        loop {
            attempt += 1;
            let ticket = self.gate.admit(1, false, true).await;
            let token = self.bearer().await?;
            let sent = {
                let _permit = self.permits.acquire().await.map_err(|e| Error::Endpoint(e.to_string()))?;
                self.counters.http_calls.fetch_add(1, Ordering::Relaxed);
                self.counters.graph_requests.fetch_add(1, Ordering::Relaxed);
                if attempt == 1 {
                    self.counters.distinct_requests.fetch_add(1, Ordering::Relaxed);
                }
                self.downloads.get(&url).bearer_auth(token.expose()).send().await
            };
            let throttled = match &sent {
                Ok(r) if r.status().as_u16() == 429 => {
                    Some(self.wait_for(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), attempt))
                }
                _ => None,
            };
            self.gate.answered(&ticket, Answer { admitted: 1, outer_admitted: false, throttled });
            let (wait, last) = match sent {
                Err(e) => (self.backoff(attempt), format!("transport: {e}")),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                    match status {
                        200 => {
                            // `$value`: the whole body each time (no ranges on it).
                            sink.restart().map_err(|e| sink_error(op, &e))?;
                            match self.stream_into(op, resp, max, sink, &mut last_progress).await? {
                                Ok(done) => return Ok(done),
                                Err(why) => (self.backoff(attempt), why),
                            }
                        }
                        301 | 302 | 303 | 307 | 308 => {
                            let location = header("location").ok_or_else(|| Error::Graph {
                                op: op.into(),
                                status,
                                code: "noLocation".into(),
                                message: "a redirect without Location".into(),
                            })?;
                            match self.fetch_location(op, &location, max, sink, &mut last_progress).await? {
                                FromUrl::Done(done) => return Ok(done),
                                FromUrl::Renew(why) => (Duration::ZERO, why),
                                FromUrl::Again(wait, why) => (wait, why),
                            }
                        }
                        404 => return Ok(Fetched::Gone),
                        429 => {
                            self.note_throttled();
                            (Duration::ZERO, "429".into())
                        }
                        // 424: a dependency failed (as for any call, retried).
                        424 | 500..=599 => {
                            (self.wait_for(header("retry-after").as_deref(), attempt), format!("{status}"))
                        }
                        401 if !renewed => {
                            renewed = true;
                            self.drop_token();
                            (Duration::ZERO, "401: token renewed".into())
                        }
                        _ => {
                            let body = resp.bytes().await.unwrap_or_default();
                            let body = serde_json::from_slice(&body)
                                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&body).into_owned()));
                            let reply = Reply { status, location: None, retry_after: None, body };
                            // As for any call: a token issued before an administrator's grant
                            // does not carry it; once, a new token.
                            if !reply.denied() || renewed {
                                return Err(reply.into_error(op));
                            }
                            renewed = true;
                            self.drop_token();
                            (Duration::ZERO, "403: token renewed".into())
                        }
                    }
                }
            };
            if last_progress.elapsed() + wait > self.config.budget {
                return Err(Error::Budget {
                    op: op.to_string(),
                    attempts: attempt,
                    elapsed_ms: last_progress.elapsed().as_millis() as u64,
                    last,
                });
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// The pre-authenticated URL Graph redirected to: https (or a loopback simulator), never
    /// sent the bearer, asked for the bytes after those the sink holds.
    async fn fetch_location(
        &self,
        op: &str,
        location: &str,
        max: u64,
        sink: &mut dyn ItemSink,
        last_progress: &mut Instant,
    ) -> Result<FromUrl> {
        let url = Url::parse(location).map_err(|e| Error::Endpoint(format!("{op}: download URL: {e}")))?;
        let acceptable = url.scheme() == "https" || (self.loopback && url.scheme() == "http" && is_loopback(&url));
        if !acceptable {
            return Err(Error::Endpoint(format!(
                "{op}: download URL {} is neither https nor the local simulator",
                url.origin().ascii_serialization()
            )));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let from = sink.written();
            let mut request = self.downloads.get(url.clone());
            if from > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
            }
            self.counters.http_calls.fetch_add(1, Ordering::Relaxed);
            let (wait, why) = match request.send().await {
                Err(e) => (self.backoff(attempt), format!("transport: {e}")),
                Ok(resp) => match resp.status().as_u16() {
                    200 | 206 => {
                        let partial = resp.status().as_u16() == 206;
                        let starts_at = resp
                            .headers()
                            .get(reqwest::header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("bytes "))
                            .and_then(|v| v.split('-').next())
                            .and_then(|v| v.parse::<u64>().ok());
                        if !partial || starts_at != Some(from) {
                            // The server sent the whole file (or another range): start over.
                            sink.restart().map_err(|e| sink_error(op, &e))?;
                        }
                        match self.stream_into(op, resp, max, sink, last_progress).await? {
                            Ok(done) => return Ok(FromUrl::Done(done)),
                            Err(why) => (self.backoff(attempt), why),
                        }
                    }
                    404 => return Ok(FromUrl::Done(Fetched::Gone)),
                    416 => {
                        sink.restart().map_err(|e| sink_error(op, &e))?;
                        (Duration::ZERO, "416: range refused, starting over".into())
                    }
                    s @ (429 | 500..=599) => (self.backoff(attempt), format!("{s} from the download URL")),
                    s => return Ok(FromUrl::Renew(format!("{s} from the download URL"))),
                },
            };
            if attempt >= 5 {
                return Ok(FromUrl::Again(wait, why));
            }
            if last_progress.elapsed() + wait > self.config.budget {
                return Ok(FromUrl::Again(wait, why));
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// Streams a response's body into the sink. `Ok(Err(why))`: cut, worth resuming;
    /// too large is known from the announced length before reading, or as bytes arrive.
    async fn stream_into(
        &self,
        op: &str,
        mut resp: reqwest::Response,
        max: u64,
        sink: &mut dyn ItemSink,
        last_progress: &mut Instant,
    ) -> Result<std::result::Result<Fetched, String>> {
        if let Some(len) = resp.content_length()
            && sink.written() + len > max
        {
            sink.restart().map_err(|e| sink_error(op, &e))?;
            return Ok(Ok(Fetched::TooLarge { size: sink.written() + len }));
        }
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if sink.written() + chunk.len() as u64 > max {
                        let size = sink.written() + chunk.len() as u64;
                        sink.restart().map_err(|e| sink_error(op, &e))?;
                        return Ok(Ok(Fetched::TooLarge { size }));
                    }
                    sink.write(&chunk).map_err(|e| sink_error(op, &e))?;
                    *last_progress = Instant::now();
                }
                Ok(None) => return Ok(Ok(Fetched::Complete { bytes: sink.written() })),
                Err(e) => return Ok(Err(format!("transfer cut after {} bytes: {e}", sink.written()))),
            }
        }
    }
}

/// The sink (the archive's disk) failed: not Graph's fault, not retried here.
pub(crate) fn sink_error(op: &str, e: &std::io::Error) -> Error {
    Error::Invalid(format!("{op}: cannot write the archive: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(3)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("2.128", now), Some(Duration::from_millis(2128)));
        assert_eq!(parse_retry_after(" 0.5 ", now), Some(Duration::from_millis(500)));
        for bad in ["-0.5", "1.2.3", ".", "1e3", "NaN", "inf", "1,5"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("g", "https://graph.microsoft.com/v1.0", &GRAPH_HOSTS).is_ok_and(|(_, l)| !l));
        assert!(check_endpoint("g", "http://127.0.0.1:8080/v1.0", &GRAPH_HOSTS).is_ok_and(|(_, l)| l));
        assert!(check_endpoint("g", "http://[::1]:8080/v1.0", &GRAPH_HOSTS).is_ok_and(|(_, l)| l));
        assert!(check_endpoint("g", "http://localhost:1/v1.0", &GRAPH_HOSTS).is_ok());
        for bad in [
            "http://graph.microsoft.com/v1.0",
            "http://10.0.0.1/v1.0",
            "https://evil.example/v1.0",
            "ftp://127.0.0.1/",
            "https://graph.microsoft.com/v1.0?x=1",
            "nonsense",
        ] {
            assert!(check_endpoint("g", bad, &GRAPH_HOSTS).is_err(), "{bad} accepted");
        }
        let err = check_endpoint("graph_url", "http://10.0.0.1/v1.0", &GRAPH_HOSTS).unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn urls_split() {
        let (s, q) = split_url("/users?$filter=endswith(userPrincipalName,'@a.fr')&$count=true");
        assert_eq!(s, ["users"]);
        assert_eq!(
            q,
            [
                ("$filter".to_string(), "endswith(userPrincipalName,'@a.fr')".to_string()),
                ("$count".to_string(), "true".to_string())
            ]
        );
    }

    #[test]
    fn error_bodies() {
        let reply = |status, body| Reply { status, location: None, retry_after: None, body };
        let graph = json!({"error": {"code": "Request_BadRequest", "message": "Another object with the same value for property userPrincipalName already exists.", "innerError": {"date": "2026-01-01T00:00:00", "request-id": "r"}}});
        let err = reply(400, graph).into_error("accounts.create");
        assert!(
            matches!(&err, Error::Graph { status: 400, code, message, .. }
                if code == "Request_BadRequest" && message.contains("already exists")),
            "{err}"
        );
        // Not Graph's shape (a gateway's page): the text is kept, the code is unknown.
        let err = reply(502, json!("Bad Gateway")).into_error("users.list");
        assert!(
            matches!(&err, Error::Graph { status: 502, code, message, .. } if code == "unknown" && message == "Bad Gateway"),
            "{err}"
        );
        assert_eq!(reply(500, Value::Null).message(), "");
    }
}
