//! An in-memory Microsoft Graph simulator.
//!
//! It stands in for Graph's server (never for the client): Repli's real graph-rs-sdk client
//! talks to it over HTTP. It answers with Graph's JSON shapes, validates bodies against the
//! v1.0 CSDL subset, and misbehaves on demand: latency, 429 with `Retry-After` in seconds or as
//! an HTTP-date, 503s, dropped connections, eventual consistency and asynchronous Team creation.
//! Besides Graph (`/v1.0/...`) it serves the client-credentials token endpoint
//! (`/{tenant}/oauth2/v2.0/token`) and its own control surface under `/_sim/`.

mod access;
mod content;
mod schema;
mod tenant;
mod token;

pub use access::{
    AdminUnit, Grants, LEAST_PRIVILEGE, PolicyGrant, USER_ADMINISTRATOR, USER_ADMINISTRATOR_TEMPLATE, UnitRole,
};
pub use content::{ContentSpec, file_bytes};
pub use tenant::{Counts, DnsRecord};

/// The application permissions the simulator's rule for `method` `path` (relative to `/v1.0`,
/// without a query) accepts, least-privileged first as on the call's page; `None` for a call it
/// does not serve. For the permission table's test (docs/M365.md).
pub fn permissions_for(method: &str, path: &str) -> Option<Vec<&'static str>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    access::need(method, &segments, false).map(|n| n.any.to_vec())
}

/// `POST /_sim/advance`: how far the tenant's clock moves ahead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: u64,
}

/// `POST /_sim/licences`: leave exactly `free` units of each SKU unassigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeLicences {
    pub free: u32,
}

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant::{Reply, Req, Tenant, TenantConfig, error};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Maximum number of requests Graph accepts in one JSON batch.
pub const MAX_BATCH: usize = 20;

/// Microsoft 365 Business Standard without Teams, as sold in the EEA.
pub const SUITE_SKU: &str = "Microsoft_365_Business_Standard_EEA_(no_Teams)";
/// Microsoft Teams EEA, sold apart from the suites since October 2023.
pub const TEAMS_SKU: &str = "Microsoft_Teams_EEA_New";

/// How a 429 states its `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfterFormat {
    /// Whole seconds, rounded up (`1`), as some back ends send them.
    Seconds,
    /// An HTTP-date, whole seconds (RFC 9110 § 10.2.3).
    HttpDate,
    /// Seconds with a fraction (`2.128`): the time left until Graph admits again. The default:
    /// it is what Microsoft's throttling guidance shows as Graph's answer ("Sample response",
    /// https://learn.microsoft.com/graph/throttling).
    #[default]
    Decimal,
}

/// Fault and speed knobs; they can be changed while the simulator runs (`POST /_sim/faults`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every HTTP request (once per `$batch`, as for Graph's round trip).
    pub latency_ms: u64,
    /// Requests admitted per one-second window (each request of a `$batch` counts); 429 beyond.
    pub throttle_rps: Option<u32>,
    /// Whether a `$batch` request counts against `throttle_rps` itself, besides its requests.
    /// Microsoft's pages are silent on the batch request itself. The section on throttling and
    /// batching (throttling.md, written to answer microsoft-graph-docs#4694, which asked
    /// exactly this) says only that "requests in a batch are evaluated individually against
    /// throttling limits", and the per-tenant limits are the services' ("Service-specific
    /// limits": Outlook, identity and access…), which the batch request reaches none of; only
    /// the global limit per app across all tenants applies to "any" request. Off by default,
    /// on that reading; on, for the other. The client copes with both (it learns from a batch
    /// refused whole that batches count).
    pub batch_envelope_counts: bool,
    pub retry_after_format: RetryAfterFormat,
    /// Probability of a 503 (no Retry-After) on a top-level request.
    pub fail_rate: f64,
    /// The status `fail_rate`'s failures answer instead of 503, with Graph's code for it (400
    /// `BadRequest`, 404 `ErrorItemNotFound`, 424 `FailedDependency`, 504 `GatewayTimeout`…).
    pub fail_status: Option<u16>,
    /// Only requests whose path contains this fail (`/mailFolders`, `/$value`, `/drive/`);
    /// every request otherwise.
    pub fail_path: Option<String>,
    /// Probability that the connection is dropped: half of the time before the request is
    /// applied, half of the time after (the client cannot tell which).
    pub reset_rate: f64,
    /// Probability that a `$batch` as a whole answers 424 Failed Dependency (json-batching: the
    /// outer answer can be 424 as well as 429 or 5xx); nothing of it is applied.
    pub batch_424_rate: f64,
    /// A `$batch` with a throttled request answers 424 as a whole, each request's answer still
    /// in its body, as throttling.md words it ("The batch itself fails with a status code of
    /// 424"). Off by default: json-batching.md answers 200 to any batch it could parse, and
    /// says each request's status is in its own answer.
    pub throttled_batch_424: bool,
    /// Bytes per second a download URL sends (none: as fast as it can).
    pub download_bytes_per_s: Option<u64>,
}

/// Everything the simulator is started with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub faults: Faults,
    /// How long a newly created object stays invisible to reads and references.
    pub consistency: Duration,
    /// How long an asynchronous Team creation stays `inProgress`.
    pub team_delay: Duration,
    /// Units of each subscribed SKU.
    pub licences: u32,
    /// The tenant's subscribed SKUs, by part number (a suite without Teams and Teams, as sold
    /// in the EEA since October 2023).
    pub skus: Vec<String>,
    /// What the app was granted (default: exactly the least-privilege set).
    pub grants: Grants,
    /// Administrative units with dynamic membership (default: none), for roles granted on a
    /// unit (`Grants::unit_roles`).
    pub admin_units: Vec<AdminUnit>,
    /// How long after a group's creation `PUT /groups/{id}/team` answers 404 (team-put-teams:
    /// up to 15 minutes of replication).
    pub team_not_found_for: Duration,
    /// Teams application access policies in force from the start (default: none, as on a new
    /// tenant; cloud-communication-online-meeting-application-access-policy).
    pub meeting_policies: Vec<PolicyGrant>,
    /// How long a policy granted while the simulator runs takes to apply ("up to 30 minutes").
    pub policy_delay: Duration,
    /// Access tokens without a readable payload, as a gateway in front of Entra ID may issue
    /// (Microsoft: access tokens are opaque to clients).
    pub opaque_tokens: bool,
    /// `POST /domains/{id}/verify` on a verified domain answers 200 with the domain instead of
    /// Graph's 400 (domain-verify: "only applies to an unverified domain").
    pub lenient_verify: bool,
    /// The app's certificate (PEM): the token endpoint then accepts a `private_key_jwt` client
    /// assertion signed with its key.
    pub client_certificate: Option<String>,
    pub seed: u64,
    /// Writes one JSON line per request (method, path, query, body, status).
    pub record: Option<PathBuf>,
    /// When set, the token endpoint refuses any other client secret.
    pub client_secret: Option<String>,
    pub token_ttl: Duration,
    /// Largest page size served (Graph: 999); small values exercise paging.
    pub max_page: usize,
    /// What each mailbox and drive holds when first read (`POST /_sim/content` changes it).
    pub content: ContentSpec,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            faults: Faults::default(),
            consistency: Duration::ZERO,
            team_delay: Duration::from_millis(300),
            licences: 500,
            skus: vec![SUITE_SKU.into(), TEAMS_SKU.into()],
            grants: Grants::default(),
            admin_units: Vec::new(),
            team_not_found_for: Duration::ZERO,
            meeting_policies: Vec::new(),
            policy_delay: Duration::from_secs(30 * 60),
            opaque_tokens: false,
            lenient_verify: false,
            client_certificate: None,
            seed: 0x5EC0_0125,
            record: None,
            client_secret: None,
            token_ttl: Duration::from_secs(3599),
            max_page: 999,
            content: ContentSpec::default(),
        }
    }
}

#[derive(Debug)]
struct Throttle {
    window: Instant,
    count: u32,
}

#[derive(Debug)]
struct Shared {
    tenant: Mutex<Tenant>,
    faults: Mutex<Faults>,
    throttle: Mutex<Throttle>,
    rng: Mutex<fastrand::Rng>,
    /// Client ids that asked for a token: the app's service principal.
    app_ids: Mutex<std::collections::BTreeSet<String>>,
    /// Access tokens issued, with their expiry and the grants they carry.
    tokens: Mutex<HashMap<String, (Instant, Grants)>>,
    /// What the app is granted now (a new token is needed to see a change, as with Entra ID).
    grants: Mutex<Grants>,
    admin_units: Vec<AdminUnit>,
    /// Teams application access policies and when each takes effect.
    policies: Mutex<Vec<(PolicyGrant, Instant)>>,
    policy_delay: Duration,
    opaque_tokens: bool,
    /// How far the tenant's clock was moved ahead of the real one ([`Simulator::advance`]).
    offset: Mutex<Duration>,
    certificate: Option<token::Certificate>,
    record: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    client_secret: Option<String>,
    base_url: String,
    token_ttl: Duration,
    requests: Mutex<u64>,
    /// Mailboxes and drives (content.rs).
    content: Mutex<content::Content>,
    max_page: usize,
}

/// A running simulator; dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Simulator {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves until dropped or [`Simulator::stop`].
    pub async fn start(addr: &str, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, config).await
    }

    /// Serves on an already bound listener.
    pub async fn serve(listener: TcpListener, config: SimConfig) -> std::io::Result<Simulator> {
        if !schema::loaded() {
            return Err(std::io::Error::other("embedded Graph schema subset does not parse"));
        }
        let base_url = format!("http://{}", listener.local_addr()?);
        let record = match &config.record {
            Some(path) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new().create(true).append(true).open(path)?,
            ))),
            None => None,
        };
        let certificate = match &config.client_certificate {
            Some(pem) => Some(token::Certificate::from_pem(pem).map_err(std::io::Error::other)?),
            None => None,
        };
        let tenant = Tenant::new(
            TenantConfig {
                base_url: format!("{base_url}/v1.0"),
                consistency: config.consistency,
                team_delay: config.team_delay,
                team_not_found_for: config.team_not_found_for,
                licences: config.licences,
                skus: config.skus.clone(),
                max_page: config.max_page,
                lenient_verify: config.lenient_verify,
            },
            config.seed,
        );
        let shared = Arc::new(Shared {
            tenant: Mutex::new(tenant),
            faults: Mutex::new(config.faults.clone()),
            throttle: Mutex::new(Throttle { window: Instant::now(), count: 0 }),
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed ^ 0x9E37_79B9)),
            tokens: Mutex::new(HashMap::new()),
            app_ids: Mutex::new(std::collections::BTreeSet::new()),
            grants: Mutex::new(config.grants.clone()),
            admin_units: config.admin_units.clone(),
            policies: Mutex::new(config.meeting_policies.iter().map(|p| (p.clone(), Instant::now())).collect()),
            policy_delay: config.policy_delay,
            opaque_tokens: config.opaque_tokens,
            offset: Mutex::new(Duration::ZERO),
            certificate,
            record,
            client_secret: config.client_secret.clone(),
            base_url: base_url.clone(),
            token_ttl: config.token_ttl,
            requests: Mutex::new(0),
            content: Mutex::new(content::Content::new(config.content.clone())),
            max_page: config.max_page,
        });
        let app = Router::new().fallback(serve_any).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "graph simulator stopped");
            }
        });
        Ok(Simulator { base_url, shared, stop: Some(stop), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`: the root (token endpoint and `/_sim/` live here).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `http://127.0.0.1:PORT/v1.0`: what a Graph client uses as its endpoint.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url)
    }

    /// How many objects of each kind the tenant holds.
    pub fn counts(&self) -> Counts {
        lock(&self.shared.tenant).counts()
    }

    /// The tenant's objects and counts per kind (same as `GET /_sim/state`).
    pub fn state(&self) -> Value {
        lock(&self.shared.tenant).snapshot()
    }

    /// Replaces the fault knobs.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Changes what the app is granted; tokens issued before keep their grants.
    pub fn set_grants(&self, grants: Grants) {
        *lock(&self.shared.grants) = grants;
    }

    /// Grants a Teams application access policy, as an administrator would in PowerShell: it
    /// applies after the configured `policy_delay` (up to 30 minutes on a real tenant).
    pub fn grant_meeting_policy(&self, grant: PolicyGrant) {
        self.shared.grant_policy(grant);
    }

    /// Moves the tenant's clock ahead by `by`: what Microsoft documents in minutes (a Team's
    /// 404 for up to 15 minutes after its group, a policy's 30 minutes) passes at once.
    pub fn advance(&self, by: Duration) {
        *lock(&self.shared.offset) += by;
    }

    /// Adds a verified root domain, as an administrator would once for all kits.
    pub fn seed_verified_domain(&self, name: &str) {
        lock(&self.shared.tenant).seed_verified_domain(name);
    }

    /// Creates a user directly in the tenant (what an administrator did by hand), on the
    /// tenant's initial domain; returns its object id.
    pub fn seed_user(&self, local_part: &str) -> String {
        lock(&self.shared.tenant).seed_user(local_part)
    }

    /// Publishes DNS records for a zone (what a registrar would serve).
    pub fn publish_dns(&self, zone: &str, records: Vec<DnsRecord>) {
        lock(&self.shared.tenant).dns.insert(zone.to_ascii_lowercase(), records);
    }

    /// HTTP requests served so far (a `$batch` counts once).
    pub fn requests(&self) -> u64 {
        *lock(&self.shared.requests)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn reply_response(reply: Reply) -> Response {
    let mut builder = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = match reply.body {
        Some(v) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json;odata.metadata=minimal;charset=utf-8");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A response whose body fails mid-stream: hyper drops the connection.
fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("reset")) });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

impl Shared {
    fn record(
        &self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &Value,
        status: u16,
        batch: bool,
    ) {
        if let Some(file) = &self.record {
            let line =
                json!({"method": method, "path": path, "query": query, "body": body, "status": status, "batch": batch});
            let mut file = lock(file);
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
        }
    }

    /// Admits one request under the throttle, or returns the wait in whole seconds.
    fn admit(&self) -> Result<(), Duration> {
        let Some(rps) = lock(&self.faults).throttle_rps else { return Ok(()) };
        let now = Instant::now();
        let mut t = lock(&self.throttle);
        if now.duration_since(t.window) >= Duration::from_secs(1) {
            t.window = now;
            t.count = 0;
        }
        if t.count < rps {
            t.count += 1;
            return Ok(());
        }
        Err(Duration::from_secs(1).saturating_sub(now.duration_since(t.window)))
    }

    fn throttled(&self, window_left: Duration) -> Reply {
        let seconds = (window_left.as_millis().div_ceil(1000) as u64).max(1);
        let format = lock(&self.faults).retry_after_format;
        let value = match format {
            RetryAfterFormat::Seconds => seconds.to_string(),
            RetryAfterFormat::Decimal => format!("{:.3}", window_left.as_secs_f64().max(0.001)),
            RetryAfterFormat::HttpDate => {
                // The simulator is the remote server: it has a real clock of its own. An
                // HTTP-date has one-second precision: the window's end, rounded up.
                #[allow(clippy::disallowed_methods)]
                let now = std::time::SystemTime::now();
                let end = now + window_left;
                let since = end.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let rounded =
                    std::time::UNIX_EPOCH + Duration::from_secs(since.as_secs() + u64::from(since.subsec_nanos() > 0));
                httpdate::fmt_http_date(rounded)
            }
        };
        let mut reply =
            error(429, "TooManyRequests", "Too many requests. Please retry after the time in the Retry-After header.");
        reply.headers.push(("Retry-After".into(), value));
        reply
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<Grants, Reply> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(error(401, "InvalidAuthenticationToken", "Access token is empty."));
        };
        match lock(&self.tokens).get(token) {
            // The tenant's clock: moved ahead (`advance`), an hour-old token has expired.
            Some((expiry, grants)) if self.now() < *expiry => Ok(grants.clone()),
            Some(_) => Err(error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")),
            None => Err(error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")),
        }
    }

    fn issue_token(&self, path: &str, body: &Bytes) -> Reply {
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let oauth_error = |status: u16, code: &str, description: &str| Reply {
            status,
            headers: Vec::new(),
            body: Some(json!({"error": code, "error_description": description})),
        };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            );
        }
        let client_id = form.get("client_id").map(String::as_str).unwrap_or_default();
        if client_id.is_empty() {
            return oauth_error(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain the parameter 'client_id'.",
            );
        }
        let tenant_id = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        match (form.get("client_secret"), form.get("client_assertion")) {
            (Some(_), Some(_)) => {
                return oauth_error(
                    400,
                    "invalid_request",
                    "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented together.",
                );
            }
            (None, Some(assertion)) => {
                if form.get("client_assertion_type").map(String::as_str)
                    != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                {
                    return oauth_error(400, "invalid_request", "AADSTS50027: Invalid client_assertion_type.");
                }
                let endpoint = format!("{}{path}/oauth2/v2.0/token", self.base_url);
                #[allow(clippy::disallowed_methods)] // the simulator's own wall clock, as Entra ID's
                let now = std::time::SystemTime::now();
                if let Err((status, code, description)) =
                    token::verify_assertion(self.certificate.as_ref(), assertion, client_id, &endpoint, now)
                {
                    return oauth_error(status, code, &description);
                }
            }
            (secret, None) => {
                let secret = secret.map(String::as_str).unwrap_or_default();
                if secret.is_empty() || self.client_secret.as_deref().is_some_and(|s| s != secret) {
                    return oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.");
                }
            }
        }
        // The scope is the resource's origin + `/.default` (here, the simulator's own origin).
        if form.get("scope").map(String::as_str) != Some(&format!("{}/.default", self.base_url)) {
            return oauth_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.");
        }
        let nonce = {
            let mut rng = lock(&self.rng);
            tenant::guid(&mut rng)
        };
        let grants = lock(&self.grants).clone();
        lock(&self.app_ids).insert(client_id.to_ascii_lowercase());
        let token = if self.opaque_tokens {
            // What a gateway may hand out instead of Entra ID's JWT: nothing to read in it.
            format!("opaque-{}", nonce.replace('-', ""))
        } else {
            token::mint(&grants, &self.base_url, tenant_id, client_id, self.token_ttl, &nonce)
        };
        lock(&self.tokens).insert(token.clone(), (self.now() + self.token_ttl, grants));
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Some(
                json!({"token_type": "Bearer", "expires_in": self.token_ttl.as_secs(), "ext_expires_in": self.token_ttl.as_secs(), "access_token": token}),
            ),
        }
    }

    /// Graph's authorization of one request: the token's permissions and roles (403
    /// `Authorization_RequestDenied`), then the Teams application access policy for meetings.
    fn permitted(&self, grants: &Grants, req: &Req) -> Result<(), Reply> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let password = req.body.as_ref().is_some_and(|b| b.get("passwordProfile").is_some());
        // A role scoped to an administrative unit covers the unit's members: the target user's
        // UPN against each unit's dynamic rule.
        let in_unit = |unit: &str| {
            let Some(target) = segments.get(1).filter(|_| segments.first() == Some(&"users")) else {
                return false;
            };
            let Some(upn) = lock(&self.tenant).user_upn(target, self.now()) else {
                return false;
            };
            self.admin_units.iter().any(|u| u.id.eq_ignore_ascii_case(unit) && u.contains(&upn))
        };
        if let Some(need) = access::need(&req.method, &segments, password)
            && !access::allows(grants, &need, in_unit)
        {
            return Err(error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ));
        }
        // Teams' protected APIs (teams-protected-apis): channel messages app-only need
        // Microsoft's approval of the app besides the permission. The wording is the
        // simulator's own.
        // The approval is the app's, as the tenant holds it now: not in a token.
        if let ["teams", _, "channels", _, "messages", ..] = segments.as_slice()
            && !lock(&self.grants).teams_protected_apis
        {
            return Err(error(
                403,
                "Forbidden",
                "Invoked API requires Protected API access in application-only context (teams-protected-apis).",
            ));
        }
        // onlinemeeting-createorget, onlinemeeting-delete: app-only, the organiser must be
        // covered by an application access policy granted to the app, per user or -Global;
        // changes take up to 30 minutes (cloud-communication-online-meeting-application-access-policy,
        // whose "Errors" section gives this answer).
        if let ["users", organizer, "onlineMeetings", ..] = segments.as_slice() {
            let now = self.now();
            let covered = lock(&self.policies).iter().any(|(p, from)| now >= *from && p.covers(organizer));
            if !covered {
                return Err(error(
                    403,
                    "Unauthorized",
                    &format!("App {} is not authorized to Create meeting on behalf of user {organizer}", self.app_id()),
                ));
            }
        }
        Ok(())
    }

    /// The tenant's clock: the real one, moved ahead by [`Simulator::advance`].
    /// The mailbox and drive routes (content.rs), `None` for any other request.
    fn content_route(&self, req: &Req) -> Option<content::Answer> {
        let now = self.now();
        let graph_base = format!("{}/v1.0", self.base_url);
        // The tenant answers who owns what first: never both locks at once.
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let owner = match segments.as_slice() {
            [set @ ("users" | "groups"), key, ..] => lock(&self.tenant).owner(set, key, now),
            // A Team has its group's id.
            ["teams", key, "channels", _, "messages", ..] => lock(&self.tenant).owner("groups", key, now),
            _ => None,
        };
        let mut content = lock(&self.content);
        let bases = content::Bases { graph: &graph_base, sim: &self.base_url, max_page: self.max_page };
        content::route(&mut content, req, &bases, |_, _| {
            owner.as_ref().map(|o| match o {
                content::Owner::User { id, upn } => content::Owner::User { id: id.clone(), upn: upn.clone() },
                content::Owner::Group { id } => content::Owner::Group { id: id.clone() },
            })
        })
    }

    fn now(&self) -> Instant {
        Instant::now() + *lock(&self.offset)
    }

    fn grant_policy(&self, grant: PolicyGrant) {
        let from = self.now() + self.policy_delay;
        lock(&self.policies).push((grant, from));
    }

    /// The client id the simulator knows its app by (any client id gets a token).
    fn app_id(&self) -> String {
        lock(&self.app_ids).iter().next().cloned().unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into())
    }

    /// What Graph says about the app itself, read live (not from the token):
    /// serviceprincipal-list with `$filter=appId eq '…'`, serviceprincipal-list-approleassignments
    /// and rbacapplication-list-roleassignments. Microsoft Graph's own service principal
    /// (`00000003-0000-0000-c000-000000000000`) lists its app roles (permission names by id).
    fn app_directory(&self, req: &Req) -> Option<Reply> {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let context = |set: &str| format!("{}/v1.0/$metadata#{set}", self.base_url);
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["servicePrincipals"]) => {
                let filter = req.query.get("$filter").map(String::as_str).unwrap_or_default();
                let Some(app_id) = tenant::parse_eq(filter, "appId") else {
                    return Some(error(400, "Request_UnsupportedQuery", "Unsupported Query."));
                };
                let items = if app_id.eq_ignore_ascii_case(access::GRAPH_APP_ID) {
                    let roles: Vec<Value> = access::KNOWN_PERMISSIONS
                        .iter()
                        .map(|p| json!({"id": access::role_id(p), "value": p, "allowedMemberTypes": ["Application"], "isEnabled": true, "displayName": p}))
                        .collect();
                    vec![
                        json!({"id": access::GRAPH_SP_ID, "appId": access::GRAPH_APP_ID, "displayName": "Microsoft Graph", "appRoles": roles}),
                    ]
                } else if lock(&self.app_ids).contains(&app_id.to_ascii_lowercase()) {
                    vec![json!({"id": access::sp_id(&app_id), "appId": app_id, "displayName": "Repli", "appRoles": []})]
                } else {
                    Vec::new()
                };
                Some(Reply {
                    status: 200,
                    headers: Vec::new(),
                    body: Some(json!({"@odata.context": context("servicePrincipals"), "value": items})),
                })
            }
            ("GET", ["servicePrincipals", id, "appRoleAssignments"]) => {
                let ours = lock(&self.app_ids).iter().any(|a| access::sp_id(a) == *id);
                if !ours {
                    return Some(error(
                        404,
                        "Request_ResourceNotFound",
                        &format!(
                            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                        ),
                    ));
                }
                let items: Vec<Value> = lock(&self.grants)
                    .app_roles
                    .iter()
                    .map(|r| {
                        json!({
                            "id": access::role_id(&format!("assignment-{r}")), "appRoleId": access::role_id(r),
                            "principalId": id, "principalType": "ServicePrincipal", "principalDisplayName": "Repli",
                            "resourceId": access::GRAPH_SP_ID, "resourceDisplayName": "Microsoft Graph",
                        })
                    })
                    .collect();
                Some(Reply {
                    status: 200,
                    headers: Vec::new(),
                    body: Some(
                        json!({"@odata.context": context("servicePrincipals('id')/appRoleAssignments"), "value": items}),
                    ),
                })
            }
            // rbacapplication-list-roleassignments, `$filter=principalId eq '…'`: a built-in
            // role's `roleDefinitionId` is its template id; `directoryScopeId` is `/` for the
            // tenant, `/administrativeUnits/{id}` for a unit.
            ("GET", ["roleManagement", "directory", "roleAssignments"]) => {
                let filter = req.query.get("$filter").map(String::as_str).unwrap_or_default();
                let Some(principal) = tenant::parse_eq(filter, "principalId") else {
                    return Some(error(400, "Request_UnsupportedQuery", "Unsupported Query."));
                };
                let ours = lock(&self.app_ids).iter().any(|a| access::sp_id(a).eq_ignore_ascii_case(&principal));
                let grants = lock(&self.grants).clone();
                let definition = |r: &str| {
                    if r.eq_ignore_ascii_case(USER_ADMINISTRATOR) {
                        USER_ADMINISTRATOR_TEMPLATE.to_string()
                    } else {
                        access::role_id(r)
                    }
                };
                let scoped = grants.directory_roles.iter().map(|r| (r.clone(), "/".to_string())).chain(
                    grants.unit_roles.iter().map(|u| (u.role.clone(), format!("/administrativeUnits/{}", u.unit))),
                );
                let items: Vec<Value> = if ours {
                    scoped
                        .map(|(r, scope)| {
                            json!({
                                "id": access::role_id(&format!("role-assignment-{r}-{scope}")),
                                "principalId": principal, "roleDefinitionId": definition(&r), "directoryScopeId": scope,
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Some(Reply {
                    status: 200,
                    headers: Vec::new(),
                    body: Some(
                        json!({"@odata.context": context("roleManagement/directory/roleAssignments"), "value": items}),
                    ),
                })
            }
            _ => None,
        }
    }

    fn batch(&self, headers: &HeaderMap, body: &Value) -> Reply {
        let Some(requests) = body.get("requests").and_then(Value::as_array) else {
            return error(400, "BadRequest", "Invalid batch payload format.");
        };
        if requests.len() > MAX_BATCH {
            return error(400, "BadRequest", &format!("Number of batch requests exceeds the limit of {MAX_BATCH}."));
        }
        if requests.is_empty() {
            return error(400, "BadRequest", "Invalid batch payload: at least one request is required.");
        }
        // JSON batching (json-batching; microsoft-graph-docs#16280): a batch is fully parallel
        // (no dependsOn) or fully sequential (every request after the first depends on an
        // earlier one); a mix is refused before anything runs.
        let sequenced = requests.iter().skip(1).filter(|r| r.get("dependsOn").is_some()).count();
        let first_depends = requests.first().is_some_and(|r| r.get("dependsOn").is_some());
        if first_depends || (sequenced > 0 && sequenced < requests.len() - 1) {
            return error(400, "BadRequest", "Batch should be either fully sequential or fully parallel.");
        }
        let mut ids = Vec::new();
        for r in requests {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
            if id.is_empty() || ids.contains(&id) {
                return error(400, "BadRequest", "Batch request ids must be present and unique.");
            }
            ids.push(id);
        }
        let grants = match self.authorized(headers) {
            Ok(g) => g,
            Err(reply) => return reply,
        };
        let eventual = headers.get("consistencylevel").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"eventual"));
        let mut statuses: HashMap<String, u16> = HashMap::new();
        let mut responses = Vec::new();
        for r in requests {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
            let depends: Vec<String> = r
                .get("dependsOn")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            // A missing method or url reads as empty and is answered 400 below, as Graph does
            // per item; it never falls back to another method.
            let method = r.get("method").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
            let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
            let (path, query) = url.split_once('?').map_or((url, None), |(p, q)| (p, Some(q)));
            let query = parse_query(query);
            let inner_body = r.get("body").cloned();
            // JSON batching: a write (POST, PATCH, PUT) carries a body and its Content-Type, even
            // an action without parameters.
            let content_type = r
                .get("headers")
                .and_then(Value::as_object)
                .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("content-type")));
            let write = matches!(method.as_str(), "POST" | "PATCH" | "PUT");
            let reply = if write && (inner_body.is_none() || !content_type) {
                error(
                    400,
                    "BadRequest",
                    &format!("Write request id : {id} does not contain Content-Type header or body."),
                )
            } else if depends.iter().any(|d| !statuses.contains_key(d)) {
                error(400, "BadRequest", "dependsOn must reference a request that appears earlier in the batch.")
            } else if depends.iter().any(|d| !(200..300).contains(&statuses[d])) {
                error(424, "FailedDependency", "The request has a dependency that failed.")
            } else if method.is_empty() || path.is_empty() {
                error(400, "BadRequest", "Each batch request needs a method and a url.")
            } else if let Err(left) = self.admit() {
                self.throttled(left)
            } else {
                let req = Req {
                    method: method.clone(),
                    path: path.to_string(),
                    query: query.clone(),
                    eventual,
                    body: inner_body.clone(),
                };
                match self.permitted(&grants, &req) {
                    Ok(()) => self.app_directory(&req).unwrap_or_else(|| lock(&self.tenant).handle(&req, self.now())),
                    Err(denied) => denied,
                }
            };
            self.record(&method, path, &query, &inner_body.unwrap_or(Value::Null), reply.status, true);
            statuses.insert(id.clone(), reply.status);
            let headers: serde_json::Map<String, Value> =
                reply.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let mut item = json!({"id": id, "status": reply.status, "headers": headers});
            if let Some(b) = reply.body {
                item["body"] = b;
            }
            responses.push(item);
        }
        let throttled = responses.iter().any(|r| r["status"] == 429);
        let status = if throttled && lock(&self.faults).throttled_batch_424 { 424 } else { 200 };
        Reply { status, headers: Vec::new(), body: Some(json!({"responses": responses})) }
    }
}

async fn serve_any(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = parse_query(uri.query());
    if let Some(rest) = path.strip_prefix("/_sim/download/") {
        // A pre-authenticated URL: not Graph, so not under Graph's throttle; the latency and
        // bandwidth knobs still apply.
        let faults = lock(&shared.faults).clone();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        shared.record(method.as_str(), &path, &query, &Value::Null, 0, false);
        return content::download(&lock(&shared.content), rest, &headers, faults.download_bytes_per_s);
    }
    if let Some(rest) = path.strip_prefix("/_sim") {
        return control(&shared, &method, rest, &body);
    }
    *lock(&shared.requests) += 1;
    let faults = lock(&shared.faults).clone();
    let (reset, reset_after) = {
        let mut rng = lock(&shared.rng);
        (rng.f64() < faults.reset_rate, rng.bool())
    };
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if reset && !reset_after {
        shared.record(method.as_str(), &path, &query, &Value::Null, 0, false);
        return dropped_connection();
    }
    let is_token = method == Method::POST && path.ends_with("/oauth2/v2.0/token");
    let json_body: Value = if body.is_empty() || is_token {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                let reply = error(
                    400,
                    "BadRequest",
                    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
                );
                shared.record(method.as_str(), &path, &query, &Value::Null, reply.status, false);
                return reply_response(reply);
            }
        }
    };
    // The token comes from the Microsoft identity platform (login.microsoftonline.com), not
    // from Graph: Graph's throttling (throttling, throttling-limits) counts Graph's requests.
    // A `$batch` is not counted itself unless asked: its requests are, one by one (a reading
    // of a silent page: [`Faults::batch_envelope_counts`]).
    let envelope = path == "/v1.0/$batch" && method == Method::POST;
    let counted = !is_token && (!envelope || faults.batch_envelope_counts);
    let admitted = if counted { shared.admit() } else { Ok(()) };
    let reply = if let Err(left) = admitted {
        shared.throttled(left)
    } else if faults.fail_path.as_deref().is_none_or(|p| path.contains(p)) && lock(&shared.rng).f64() < faults.fail_rate
    {
        injected_failure(faults.fail_status)
    } else if is_token {
        shared.issue_token(path.trim_end_matches("/oauth2/v2.0/token"), &body)
    } else if let Some(graph_path) = path.strip_prefix("/v1.0") {
        if graph_path == "/$batch" && method == Method::POST {
            if lock(&shared.rng).f64() < faults.batch_424_rate {
                error(424, "FailedDependency", "The batch could not be processed: a dependency failed.")
            } else {
                shared.batch(&headers, &json_body)
            }
        } else {
            match shared.authorized(&headers) {
                Err(reply) => reply,
                Ok(grants) => {
                    let eventual =
                        headers.get("consistencylevel").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"eventual"));
                    let req = Req {
                        method: method.as_str().to_string(),
                        path: graph_path.to_string(),
                        query: query.clone(),
                        eventual,
                        body: if json_body.is_null() { None } else { Some(json_body.clone()) },
                    };
                    match shared.permitted(&grants, &req) {
                        Ok(()) => match shared.content_route(&req) {
                            Some(content::Answer::Json(status, body)) => {
                                Reply { status, headers: Vec::new(), body: Some(body) }
                            }
                            Some(content::Answer::Raw { content_type, bytes }) => {
                                shared.record(method.as_str(), &path, &query, &Value::Null, 200, false);
                                return Response::builder()
                                    .status(200)
                                    .header(header::CONTENT_TYPE, content_type)
                                    .body(Body::from(bytes))
                                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
                            }
                            Some(content::Answer::Redirect(location)) => {
                                Reply { status: 302, headers: vec![("Location".into(), location)], body: None }
                            }
                            None => shared
                                .app_directory(&req)
                                .unwrap_or_else(|| lock(&shared.tenant).handle(&req, shared.now())),
                        },
                        Err(denied) => denied,
                    }
                }
            }
        }
    } else {
        error(404, "NotFound", "Unknown endpoint: Graph lives under /v1.0.")
    };
    let recorded_body = if is_token { json!("[form redacted]") } else { json_body };
    shared.record(method.as_str(), &path, &query, &recorded_body, reply.status, false);
    if reset {
        return dropped_connection();
    }
    reply_response(reply)
}

/// A failure `Faults::fail_rate` injects: Graph's status and code for it.
fn injected_failure(status: Option<u16>) -> Reply {
    match status.unwrap_or(503) {
        400 => error(400, "BadRequest", "Invalid request."),
        404 => error(404, "ErrorItemNotFound", "The specified object was not found in the store."),
        424 => error(424, "FailedDependency", "The request failed because a dependency failed."),
        504 => error(504, "GatewayTimeout", "The gateway did not receive a response in time."),
        s => error(s, "serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    }
}

fn control(shared: &Shared, method: &Method, rest: &str, body: &Bytes) -> Response {
    match (method.as_str(), rest) {
        ("GET", "/state") => {
            reply_response(Reply { status: 200, headers: Vec::new(), body: Some(lock(&shared.tenant).snapshot()) })
        }
        ("POST", "/grants") => match serde_json::from_slice::<Grants>(body) {
            Ok(g) => {
                *lock(&shared.grants) = g;
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        ("POST", "/meeting-policy") => match serde_json::from_slice::<PolicyGrant>(body) {
            Ok(g) => {
                shared.grant_policy(g);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        ("POST", "/licences") => match serde_json::from_slice::<FreeLicences>(body) {
            Ok(l) => {
                lock(&shared.tenant).set_free_licences(l.free);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        // `POST /_sim/advance {"seconds": N}`: the tenant's clock moves ahead, as `advance` does.
        ("POST", "/advance") => match serde_json::from_slice::<Advance>(body) {
            Ok(a) => {
                *lock(&shared.offset) += Duration::from_secs(a.seconds);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        // `GET /_sim/content`: every item of the mailboxes and drives read so far, for a test
        // to compare with what an export wrote.
        ("GET", "/content") => {
            reply_response(Reply { status: 200, headers: Vec::new(), body: Some(lock(&shared.content).listing()) })
        }
        ("POST", "/content") => match serde_json::from_slice::<ContentSpec>(body) {
            Ok(c) => {
                lock(&shared.content).spec = c;
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        ("POST", "/faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                *lock(&shared.faults) = f;
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        (m, zone) if zone.starts_with("/dns/") => {
            let zone = zone.trim_start_matches("/dns/").to_ascii_lowercase();
            match m {
                "PUT" => match serde_json::from_slice::<Vec<DnsRecord>>(body) {
                    Ok(records) => {
                        lock(&shared.tenant).dns.insert(zone, records);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                },
                "GET" => {
                    let records = lock(&shared.tenant).dns.get(&zone).cloned().unwrap_or_default();
                    axum::Json(records).into_response()
                }
                _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
