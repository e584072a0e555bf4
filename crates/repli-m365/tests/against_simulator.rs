//! The real graph-rs-sdk client, over HTTP, against the Graph simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use repli_graph_sim::{AdminUnit, Faults, Grants, PolicyGrant, RetryAfterFormat, SimConfig, Simulator, UnitRole};
use repli_m365::{
    AgentSpec, CallStats, CheckStatus, DomainRemoval, Error, Grant, GraphConfig, GraphProvider, HttpDnsPublisher,
    ItemSink, KitSpec, M365, PreflightReport, PreflightSpec, Secret, provision,
};
use serde_json::{Value, json};
use std::time::Duration;

/// A tenant set up as docs/M365.md says: the Teams application access policy granted with
/// `-Global` (the simulator's default is a new tenant's: no policy).
fn configured() -> SimConfig {
    SimConfig { meeting_policies: vec![PolicyGrant::Global], ..SimConfig::default() }
}

async fn sim(config: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0", config).await.unwrap()
}

fn provider(sim: &Simulator, tweak: impl FnOnce(&mut GraphConfig)) -> GraphProvider {
    let mut config =
        GraphConfig::new(&sim.graph_url(), sim.base_url(), "tenant-amp", "client-repli", Secret::new("s3cret"));
    config.budget = Duration::from_secs(60);
    tweak(&mut config);
    GraphProvider::new(config).unwrap()
}

fn agents(n: usize) -> Vec<AgentSpec> {
    (0..n).map(|i| AgentSpec { name: format!("Agent{i} Nom-Élu{i}"), service: "Accueil".into() }).collect()
}

fn spec(n: usize) -> KitSpec {
    KitSpec {
        crisis_id: "13005-2026-001".into(),
        commune: "Aubagne".into(),
        domain: "aubagne.secours-amp.fr".into(),
        agents: agents(n),
        channels: vec![("Cellule de crise".into(), "Décisions".into()), ("Services".into(), "Coordination".into())],
        meeting_start: "2026-11-23T09:00:00+01:00".into(),
        meeting_end: "2026-11-23T09:30:00+01:00".into(),
    }
}

/// Exactly one of each object, whatever happened before.
fn assert_one_kit(state: &Value, agents: usize) {
    let c = &state["counts"];
    assert_eq!(c["domains"], 1, "{c}");
    assert_eq!(c["users"], agents, "{c}");
    // A suite without Teams and Teams itself: two licences per account.
    assert_eq!(c["licensesAssigned"], agents * 2, "{c}");
    assert_eq!(c["groups"], 1, "{c}");
    assert_eq!(c["teams"], 1, "{c}");
    assert_eq!(c["channels"], 3, "{c}");
    assert_eq!(c["onlineMeetings"], 1, "{c}");
    assert_eq!(state["domains"][0]["isVerified"], true);
    assert_eq!(state["groups"][0]["members"], agents);
    assert_eq!(state["groups"][0]["owners"], 1);
}

#[tokio::test]
async fn provisions_a_whole_kit_once_and_a_rerun_creates_nothing() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let dns = HttpDnsPublisher::new(sim.base_url());
    let kit = provision(&m365, &dns, &spec(25)).await.unwrap();
    assert_one_kit(&sim.state(), 25);
    assert!(kit.domain.created && kit.domain.verified && kit.dns_published);
    assert!(kit.accounts.iter().all(|a| a.created && a.licensed && a.upn.ends_with("@aubagne.secours-amp.fr")));
    assert_eq!(kit.accounts[0].upn, "agent0.nom-elu0@aubagne.secours-amp.fr");
    assert!(kit.meeting.join_url.starts_with("https://teams.microsoft.com/"));
    assert!(kit.isolation.ok, "{:?}", kit.isolation);
    for kind in ["TXT", "MX", "CNAME", "SRV"] {
        assert!(kit.records.iter().any(|r| r.kind == kind), "no {kind} in {:?}", kit.records);
    }
    assert!(kit.zone.contains("IN MX 0 aubagne-secours-amp-fr.mail.protection.outlook.com."), "{}", kit.zone);
    assert!(kit.zone.contains("IN TXT \"v=spf1 include:spf.protection.outlook.com -all\""));
    // 25 accounts and 25 licences went in two batches, not fifty requests.
    assert!(m365.stats().http_calls < 40, "{:?}", m365.stats());

    let again = provision(&m365, &dns, &spec(25)).await.unwrap();
    assert_one_kit(&sim.state(), 25);
    assert!(!again.domain.created && !again.team.created);
    assert!(again.accounts.iter().all(|a| !a.created && a.licensed));
    assert_eq!(again.meeting.join_url, kit.meeting.join_url);
}

#[tokio::test]
async fn throttling_with_retry_after_in_seconds_and_as_http_date() {
    for format in [RetryAfterFormat::Seconds, RetryAfterFormat::HttpDate] {
        let faults = Faults { throttle_rps: Some(25), retry_after_format: format, ..Faults::default() };
        let sim = sim(SimConfig { faults, ..configured() }).await;
        let m365 = provider(&sim, |_| {});
        provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(30)).await.unwrap();
        assert_one_kit(&sim.state(), 30);
        let stats = m365.stats();
        assert!(stats.throttled > 0, "{format:?}: never throttled: {stats:?}");
    }
}

/// A kit of `agents` provisioned once on a tenant with `faults`: the client (for its pace),
/// its counts, and the Graph requests it sent per distinct one.
async fn provisioned_under(faults: Faults, agents: usize) -> (GraphProvider, CallStats, f64) {
    let sim = sim(SimConfig { faults, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(agents)).await.unwrap();
    assert_one_kit(&sim.state(), agents);
    let stats = m365.stats();
    let per_request = stats.graph_requests as f64 / stats.distinct_requests as f64;
    (m365, stats, per_request)
}

/// Under throttling, requests are paced after the first 429s and a throttled batch's items
/// are resent, never the whole batch again: well under two sends per distinct request.
#[tokio::test]
async fn throttled_provisioning_resends_little() {
    let (m365, stats, per_request) =
        provisioned_under(Faults { throttle_rps: Some(40), ..Faults::default() }, 120).await;
    assert!(stats.throttled > 0 && per_request < 1.8, "{per_request:.2} sends per distinct request: {stats:?}");
    assert!(!m365.pace().batch_counted, "a tenant that counts requests only: {:?}", m365.pace());
}

/// A tenant that counts each `$batch` against its limit besides the batch's requests (Microsoft
/// speaks only of the requests): the gate, which counts the requests, learns the
/// lower limit from the 429s and the kit is made once, with few resends.
#[tokio::test]
async fn a_tenant_counting_the_batch_itself_is_learnt_from_its_429s() {
    let faults = Faults { throttle_rps: Some(40), batch_envelope_counts: true, ..Faults::default() };
    let (m365, stats, per_request) = provisioned_under(faults, 120).await;
    assert!(stats.throttled > 0 && per_request < 1.8, "{per_request:.2} sends per distinct request: {stats:?}");
    assert!(m365.pace().batch_counted, "learnt, and kept with the pace: {:?}", m365.pace());
}

/// Throttling and batching (throttling.md): "the batch itself fails with a status code of 424"
/// when a request in it was throttled. The answers in its body are still each request's: the
/// throttled ones are resent after their wait and teach the gate, the others are kept.
#[tokio::test]
async fn a_batch_answered_424_because_a_request_was_throttled_is_read_request_by_request() {
    let faults = Faults { throttle_rps: Some(25), throttled_batch_424: true, ..Faults::default() };
    let (_m365, stats, per_request) = provisioned_under(faults, 40).await;
    assert!(stats.throttled > 0, "the throttled requests reached the gate: {stats:?}");
    assert!(per_request < 1.8, "{per_request:.2} sends per distinct request: {stats:?}");
}

#[tokio::test]
async fn outages_and_dropped_connections_are_retried_without_duplicates() {
    let faults = Faults { fail_rate: 0.15, reset_rate: 0.15, ..Faults::default() };
    let sim = sim(SimConfig { faults, seed: 7, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(22)).await.unwrap();
    assert_one_kit(&sim.state(), 22);
    assert!(m365.stats().retries > 0);
}

#[tokio::test]
async fn eventual_consistency_is_waited_out() {
    let sim = sim(SimConfig { consistency: Duration::from_millis(400), ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(12)).await.unwrap();
    assert_one_kit(&sim.state(), 12);
}

#[tokio::test]
async fn a_provisioning_interrupted_half_way_and_run_again_ends_with_one_of_each() {
    // Cut the run at several points (the future is dropped mid-flight, as a crash would),
    // with replication lag so that a re-run cannot simply see what the last one made.
    for cut_ms in [15u64, 60, 120, 200, 320] {
        let faults = Faults { latency_ms: 10, ..Faults::default() };
        let sim = sim(SimConfig { faults, consistency: Duration::from_millis(150), ..configured() }).await;
        let dns = HttpDnsPublisher::new(sim.base_url());
        {
            let m365 = provider(&sim, |_| {});
            let cut = tokio::time::timeout(Duration::from_millis(cut_ms), provision(&m365, &dns, &spec(24))).await;
            assert!(cut.is_err(), "run finished before the cut at {cut_ms} ms");
        }
        let m365 = provider(&sim, |_| {});
        provision(&m365, &dns, &spec(24)).await.unwrap();
        assert_one_kit(&sim.state(), 24);
    }
}

#[tokio::test]
async fn listings_follow_next_links() {
    let sim = sim(SimConfig { max_page: 7, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    let dns = HttpDnsPublisher::new(sim.base_url());
    let kit = provision(&m365, &dns, &spec(30)).await.unwrap();
    // The isolation read every member and every account, page after page.
    let details: Vec<&str> = kit.isolation.checks.iter().map(|c| c.detail.as_str()).collect();
    assert!(details.iter().any(|d| d.starts_with("30 membre(s)")), "{details:?}");
    assert!(details.iter().any(|d| d.starts_with("30 compte(s)")), "{details:?}");
    // The second run must find all 30 accounts across five pages, or it would try to create.
    let again = provision(&m365, &dns, &spec(30)).await.unwrap();
    assert!(again.accounts.iter().all(|a| !a.created));
    assert_one_kit(&sim.state(), 30);
}

/// group-list-members: more than 100 members come a page at a time (`@odata.nextLink`), and
/// `$select` returns only the properties it names, as Graph answers.
#[tokio::test]
async fn group_members_come_in_pages_with_the_selected_properties() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(120)).await.unwrap();
    let path = format!("/groups/{}/members?$select=id,userType", kit.team.group_id);
    let (status, body) = raw(&sim, reqwest::Method::GET, &path, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let first = body["value"].as_array().unwrap();
    assert_eq!(first.len(), 100, "Graph's default page size");
    assert!(first[0].get("id").is_some() && first[0].get("userType").is_some(), "{}", first[0]);
    assert!(first[0].get("userPrincipalName").is_none() && first[0].get("displayName").is_none(), "{}", first[0]);
    let next =
        body["@odata.nextLink"].as_str().expect("a next page").strip_prefix(&sim.graph_url()).unwrap().to_string();
    let (_, rest) = raw(&sim, reqwest::Method::GET, &next, Value::Null).await;
    assert_eq!(rest["value"].as_array().unwrap().len(), 20);
    assert!(rest.get("@odata.nextLink").is_none());
    let (status, _) = raw(&sim, reqwest::Method::GET, &format!("{path}&$top=1000"), Value::Null).await;
    assert_eq!(status, 400, "$top beyond 999 is refused");
    assert!(kit.isolation.checks.iter().any(|c| c.detail.starts_with("120 membre(s)")), "{:?}", kit.isolation);
}

#[tokio::test]
async fn running_out_of_licences_says_how_many_and_creates_nothing() {
    let sim = sim(SimConfig { licences: 5, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    let err = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(8)).await.unwrap_err();
    match &err {
        Error::LicencesExhausted { needed: 8, available: 5, missing: 3, .. } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("3 missing"));
    assert_eq!(sim.state()["counts"]["users"], 0);
}

#[tokio::test]
async fn wind_down_then_remove_everything() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let spec = spec(21);
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec).await.unwrap();
    let passwords = m365.reset_passwords(&["agent0.nom-elu0@aubagne.secours-amp.fr".to_string()]).await.unwrap();
    assert_eq!(passwords.len(), 1);

    match m365.remove_domain(&spec.domain, false).await {
        Err(Error::DomainReferenced { references, .. }) => assert_eq!(references.len(), 21),
        other => panic!("domain removed while referenced: {other:?}"),
    }
    hand_back(&sim, &m365, &spec).await;
    assert!(sim.state()["users"].as_array().unwrap().is_empty());
    assert!(!m365.delete_group(&spec.nickname()).await.unwrap());
    assert_eq!(m365.remove_domain(&spec.domain, false).await.unwrap(), DomainRemoval::AlreadyAbsent);
}

#[tokio::test]
async fn forced_domain_removal_renames_references() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let spec = spec(3);
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec).await.unwrap();
    // domain-forcedelete: Exchange must no longer provision the domain (read strictly: Email
    // is removed from its services first); the client does so, Graph refuses it otherwise.
    let path = format!("/domains/{}/forceDelete", spec.domain);
    let (status, body) = raw(&sim, reqwest::Method::POST, &path, json!({"disableUserAccounts": true})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Exchange"), "{body}");
    assert_eq!(m365.remove_domain(&spec.domain, true).await.unwrap(), DomainRemoval::ForceDeleted { renamed: 3 });
    assert_eq!(sim.state()["counts"]["domains"], 0);
    assert_eq!(sim.state()["counts"]["enabledUsers"], 0);
}

#[tokio::test]
async fn hostile_names_become_safe_logins() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let mut s = spec(0);
    s.agents = vec![
        AgentSpec { name: "<script>alert(1)</script>".into(), service: "x".into() },
        AgentSpec { name: "Renée O'Brien".into(), service: "'; DROP TABLE users; --".into() },
        AgentSpec { name: "Renée  O'Brien".into(), service: "x".into() },
    ];
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &s).await.unwrap();
    let upns: Vec<&str> = kit.accounts.iter().map(|a| a.upn.as_str()).collect();
    assert_eq!(
        upns,
        [
            "script-alert-1-script@aubagne.secours-amp.fr",
            "renee.o-brien@aubagne.secours-amp.fr",
            "renee.o-brien2@aubagne.secours-amp.fr"
        ]
    );
    assert_eq!(kit.accounts[1].display_name, "Renée O'Brien");
}

#[tokio::test]
async fn endpoints_and_credentials_are_checked() {
    let sim = sim(SimConfig { client_secret: Some("right".into()), ..configured() }).await;
    for (graph, login) in [
        ("http://10.1.2.3/v1.0", "http://10.1.2.3"),
        ("https://graph.evil.example/v1.0", "https://login.microsoftonline.com"),
    ] {
        let err = GraphProvider::new(GraphConfig::new(graph, login, "t", "c", Secret::new("s"))).unwrap_err();
        assert!(matches!(err, Error::Endpoint(_)), "{err}");
    }
    let m365 = provider(&sim, |c| c.credential = Secret::new("wrong").into());
    let err = m365.ensure_domain("a.secours-amp.fr").await.unwrap_err();
    assert!(matches!(&err, Error::Auth(m) if m.contains("AADSTS7000215")), "{err}");
    assert!(!format!("{err:?}").contains("wrong"));
}

#[tokio::test]
async fn an_expired_token_is_renewed() {
    let sim = sim(SimConfig { token_ttl: Duration::from_secs(1), ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    m365.ensure_domain("a.secours-amp.fr").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    m365.ensure_domain("a.secours-amp.fr").await.unwrap();
}

/// Talks to the simulator without Repli's client, to pin its Graph-like refusals.
/// The token endpoint's answer to a client-credentials request with a secret and `scope`.
async fn token_answer(sim: &Simulator, scope: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/t/oauth2/v2.0/token", sim.base_url()))
        .form(&[("grant_type", "client_credentials"), ("client_id", "c"), ("client_secret", "s"), ("scope", scope)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn raw(sim: &Simulator, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let token = token_answer(sim, &format!("{}/.default", sim.base_url())).await;
    let http = reqwest::Client::new();
    let resp = http
        .request(method, format!("{}{path}", sim.graph_url()))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Throttling and batching (throttling.md): the requests of a `$batch` are evaluated one by one
/// against the tenant's limits; the batch itself is not, unless the simulator is told to.
#[tokio::test]
async fn a_batch_counts_its_requests_against_the_limit_and_not_itself_unless_asked() {
    for (envelope_counts, admitted) in [(false, 20), (true, 19)] {
        let faults = Faults { throttle_rps: Some(20), batch_envelope_counts: envelope_counts, ..Faults::default() };
        let sim = sim(SimConfig { faults, ..configured() }).await;
        let requests: Vec<Value> =
            (0..20).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/subscribedSkus"})).collect();
        let (status, body) = raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": requests})).await;
        assert_eq!(status, 200, "{body}");
        let statuses: Vec<u64> =
            body["responses"].as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
        let ok = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(ok, admitted, "envelope counted: {envelope_counts}: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    }
}

#[tokio::test]
async fn the_simulator_refuses_what_graph_refuses() {
    let sim = sim(configured()).await;
    let (status, body) =
        raw(&sim, reqwest::Method::POST, "/groups", json!({"displayName": "x", "colour": "red"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Could not find a property named 'colour' on type 'microsoft.graph.group'.");
    let requests: Vec<Value> =
        (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/subscribedSkus"})).collect();
    let (status, body) = raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": requests})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("20"));
    // dependsOn on a failed request → 424; a user on an unverified domain → 400.
    let (status, body) = raw(
        &sim,
        reqwest::Method::POST,
        "/$batch",
        json!({"requests": [
            {"id": "1", "method": "POST", "url": "/users", "headers": {"Content-Type": "application/json"},
              "body": {"accountEnabled": true, "displayName": "A", "mailNickname": "a",
              "userPrincipalName": "a@unverified.fr", "passwordProfile": {"password": "Xx1!xxxxxxxx"}}},
            {"id": "2", "method": "POST", "url": "/users/a@unverified.fr/assignLicense", "dependsOn": ["1"],
              "headers": {"Content-Type": "application/json"}, "body": {"addLicenses": [], "removeLicenses": []}},
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["responses"][0]["status"], 400);
    assert!(body["responses"][0]["body"]["error"]["message"].as_str().unwrap().contains("verified domain"));
    assert_eq!(body["responses"][1]["status"], 424);
    // A body that is not JSON, and a filter the simulator (like Graph) does not support.
    let garbled = reqwest::Client::new()
        .post(format!("{}/users", sim.graph_url()))
        .header("content-type", "application/json")
        .body("{\"displayName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 400);
    assert!(garbled.text().await.unwrap().contains("Unable to read JSON request payload"));
    let (status, body) =
        raw(&sim, reqwest::Method::GET, "/users?$filter=startswith(displayName,'a')", Value::Null).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("Request_UnsupportedQuery")));
    // A write in a batch without a body (an action without parameters included) is refused.
    let (_, body) = raw(
        &sim,
        reqwest::Method::POST,
        "/$batch",
        json!({"requests": [{"id": "r1", "method": "POST", "url": "/users/x/revokeSignInSessions"}]}),
    )
    .await;
    assert_eq!(body["responses"][0]["status"], 400, "{body}");
    assert!(body["responses"][0]["body"]["error"]["message"].as_str().unwrap().contains("Content-Type header or body"));
    // The token scope is the resource's origin + /.default.
    let wrong_scope = token_answer(&sim, "https://graph.microsoft.com/.default").await;
    assert_eq!(wrong_scope["error"], "invalid_scope");
    let (status, _) = raw(&sim, reqwest::Method::PATCH, "/users/nobody", json!({"accountEnabled": false})).await;
    assert_eq!(status, 404);
    let (status, body) = raw(&sim, reqwest::Method::POST, "/users/x/assignLicense", json!({"licences": []})).await;
    assert_eq!(status, 400, "{body}");
}

/// JSON batching: a batch is fully parallel or fully sequential; a mix is refused whole, before
/// anything runs (json-batching; microsoft-graph-docs#16280).
#[tokio::test]
async fn a_batch_mixing_parallel_and_sequential_requests_is_refused() {
    let sim = sim(configured()).await;
    let get = |id: &str, depends: Option<&str>| {
        let mut r = json!({"id": id, "method": "GET", "url": "/subscribedSkus"});
        if let Some(d) = depends {
            r["dependsOn"] = json!([d]);
        }
        r
    };
    let mixed = [get("1", None), get("2", Some("1")), get("3", None)];
    let (status, body) = raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": mixed})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["message"], "Batch should be either fully sequential or fully parallel.");
    let pairs = [get("c0", None), get("l0", Some("c0")), get("c1", None), get("l1", Some("c1"))];
    assert_eq!(raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": pairs})).await.0, 400);
    let first_depends = [get("1", Some("2")), get("2", None)];
    assert_eq!(raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": first_depends})).await.0, 400);
    let parallel = [get("1", None), get("2", None), get("3", None)];
    assert_eq!(raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": parallel})).await.0, 200);
    let sequential = [get("1", None), get("2", Some("1")), get("3", Some("2"))];
    assert_eq!(raw(&sim, reqwest::Method::POST, "/$batch", json!({"requests": sequential})).await.0, 200);
}

/// References to users go by object id: a UPN in a `directoryObjects` bind is refused, and an
/// app-only `createOrGet` for an organiser named by UPN answers 404.
#[tokio::test]
async fn users_are_referenced_by_object_id() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(2)).await.unwrap();
    let upn = kit.accounts[0].upn.clone();
    let body = json!({
        "displayName": "Par UPN", "mailEnabled": true, "mailNickname": "par-upn", "securityEnabled": false,
        "groupTypes": ["Unified"], "owners@odata.bind": [format!("https://graph.microsoft.com/v1.0/directoryObjects/{upn}")],
    });
    let (status, body) = raw(&sim, reqwest::Method::POST, "/groups", body).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Invalid object identifier"), "{body}");
    let meeting = json!({"externalId": "x", "subject": "s", "startDateTime": "2026-11-23T09:00:00Z", "endDateTime": "2026-11-23T09:30:00Z"});
    let (status, _) =
        raw(&sim, reqwest::Method::POST, &format!("/users/{upn}/onlineMeetings/createOrGet"), meeting.clone()).await;
    assert_eq!(status, 404);
    let id = kit.accounts[0].id.clone();
    let (status, body) =
        raw(&sim, reqwest::Method::POST, &format!("/users/{id}/onlineMeetings/createOrGet"), meeting).await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

/// Create group: owners and members bound at creation are at most 20 relationships together.
#[tokio::test]
async fn a_group_is_created_with_at_most_twenty_relationships() {
    let sim = sim(configured()).await;
    let refs: Vec<String> = (0..21).map(|i| format!("https://graph.microsoft.com/v1.0/users/u{i}")).collect();
    let body = json!({
        "displayName": "Cellule", "mailEnabled": true, "mailNickname": "cellule", "securityEnabled": false,
        "groupTypes": ["Unified"], "owners@odata.bind": [refs[0]], "members@odata.bind": refs[1..].to_vec(),
    });
    let (status, body) = raw(&sim, reqwest::Method::POST, "/groups", body).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("limited to 20"), "{body}");
}

#[tokio::test]
async fn the_simulator_records_requests_and_takes_faults_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("requests.jsonl");
    let sim =
        sim(SimConfig { record: Some(record.clone()), client_secret: Some("s3cret".into()), ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    m365.ensure_domain("a.secours-amp.fr").await.unwrap();
    let lines: Vec<Value> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        lines.iter().any(|l| l["method"] == "POST" && l["path"] == "/v1.0/domains" && l["status"] == 201),
        "{lines:?}"
    );
    let token = lines.iter().find(|l| l["path"].as_str().unwrap().ends_with("/token")).unwrap();
    assert_eq!(token["body"], "[form redacted]");
    assert!(!std::fs::read_to_string(&record).unwrap().contains("s3cret"), "the client secret is not recorded");
    // Faults can be switched on over HTTP while the simulator runs.
    let http = reqwest::Client::new();
    let r =
        http.post(format!("{}/_sim/faults", sim.base_url())).json(&json!({"throttle_rps": 1})).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let bad = http.post(format!("{}/_sim/faults", sim.base_url())).json(&json!({"throttle": 1})).send().await.unwrap();
    assert_eq!(bad.status(), 400, "unknown knobs are refused");
    let grants = format!("{}/_sim/grants", sim.base_url());
    for refused in [json!({"roles": []}), json!({"app_roles": "User.ReadWrite.All"})] {
        let r = http.post(&grants).json(&refused).send().await.unwrap();
        assert_eq!(r.status(), 400, "malformed grants are refused: {refused}");
    }
    let r = http.post(&grants).body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let mut throttled = false;
    for _ in 0..3 {
        let r = http.get(format!("{}/v1.0/domains", sim.graph_url())).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            throttled = true;
        }
    }
    assert!(throttled);
}

/// A simulator granting `grants` instead of the least-privilege set.
async fn sim_granting(grants: Grants) -> Simulator {
    sim(SimConfig { grants, ..configured() }).await
}

fn without_permission(p: &str) -> Grants {
    let mut g = Grants::default();
    g.app_roles.retain(|r| r != p);
    g
}

/// Application permissions (each API's permissions page): a call the app's token does not
/// allow answers 403 `Authorization_RequestDenied`, and the client names what to grant.
#[tokio::test]
async fn a_missing_permission_is_refused_and_named() {
    let sim = sim_granting(without_permission("Domain.ReadWrite.All")).await;
    let (status, body) = raw(&sim, reqwest::Method::POST, "/domains", json!({"id": "x.secours-amp.fr"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("Authorization_RequestDenied")), "{body}");
    let m365 = provider(&sim, |_| {});
    match m365.ensure_domain("a.secours-amp.fr").await {
        Err(Error::Forbidden { missing: Grant::Permission(p), .. }) => assert_eq!(p, "Domain.ReadWrite.All"),
        other => panic!("expected a 403 naming the permission: {other:?}"),
    }
    // Inside a batch too: the accounts wave stops at the first 403, naming User.ReadWrite.All.
    let sim = sim_granting(without_permission("User.ReadWrite.All")).await;
    let m365 = provider(&sim, |_| {});
    let err = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(3)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { missing: Grant::Permission(p), .. } if p == "User.ReadWrite.All"),
        "{err}"
    );
    // The hand-back reads drives (Files.Read.All): a group's drive is permitted (404: no such
    // group), and refused without that permission.
    let least = sim_granting(Grants::default()).await;
    let (status, _) = raw(&least, reqwest::Method::GET, "/groups/any/drive", Value::Null).await;
    assert_eq!(status, 404);
    let no_files = sim_granting(without_permission("Files.Read.All")).await;
    let (status, _) = raw(&no_files, reqwest::Method::GET, "/groups/any/drive", Value::Null).await;
    assert_eq!(status, 403);
    assert_eq!(repli_graph_sim::LEAST_PRIVILEGE, repli_core::m365::LEAST_PRIVILEGE);
}

/// user-update: resetting a password app-only needs User.ReadWrite.All *and* the User
/// Administrator role; an app without the role gets 403 on the credential sheets.
#[tokio::test]
async fn password_resets_need_the_user_administrator_role() {
    let sim = sim_granting(Grants { directory_roles: vec![], ..Grants::default() }).await;
    let m365 = provider(&sim, |_| {});
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(2)).await.unwrap();
    let err = m365.reset_passwords(&[kit.accounts[0].upn.clone()]).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { missing: Grant::Role(r), .. } if r == "User Administrator"), "{err}");
}

/// A tenant that granted neither RoleManagement.Read.Directory nor User.RevokeSessions.All (an
/// upgrade from an older Repli): the permissions check names both, the role check says why it
/// cannot tell, and a wind-down refused for want of the second names it.
#[tokio::test]
async fn a_refused_role_listing_does_not_hide_the_missing_permissions() {
    let mut grants = without_permission("RoleManagement.Read.Directory");
    grants.app_roles.retain(|r| r != "User.RevokeSessions.All");
    let tenant = sim_granting(grants).await;
    tenant.seed_verified_domain("secours-amp.fr");
    let organizer = tenant.seed_user("organisateur");
    let m365 = provider(&tenant, |_| {});
    let report = m365.preflight(&preflight_spec(Some(organizer))).await;
    let (status, text) = status_of(&report, "permissions");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("RoleManagement.Read.Directory") && text.contains("User.RevokeSessions.All"), "{text}");
    let (status, text) = status_of(&report, "directory_role");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("non vérifiable") && text.contains("RoleManagement.Read.Directory"), "{text}");

    let kit_spec = spec(2);
    provision(&m365, &HttpDnsPublisher::new(tenant.base_url()), &kit_spec).await.unwrap();
    let err = m365.wind_down_accounts(&kit_spec.domain).await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { missing: Grant::Permission(p), .. } if p == "User.RevokeSessions.All"),
        "{err}"
    );
}

/// admin-units-assign-roles: a User Administrator role assigned on an administrative unit
/// covers the unit's members only and is not a tenant-wide role. The preflight reads it with its
/// scope (rbacapplication-list-roleassignments) and checks it against `m365.admin_unit`; a
/// reset outside the unit is refused naming the unit.
#[tokio::test]
async fn a_role_scoped_to_an_administrative_unit_is_read_checked_and_named() {
    let unit = "0b1e7c52-au-kits";
    let scoped = Grants {
        directory_roles: vec![],
        unit_roles: vec![UnitRole { role: "User Administrator".into(), unit: unit.into() }],
        ..Grants::default()
    };
    let tenant = sim(SimConfig {
        grants: scoped,
        // The unit's dynamic rule: the kits' root domain (aubagne.secours-amp.fr is inside).
        admin_units: vec![AdminUnit { id: unit.into(), upn_suffix: ".secours-amp.fr".into() }],
        ..configured()
    })
    .await;
    tenant.seed_verified_domain("secours-amp.fr");
    let organizer = tenant.seed_user("organisateur");
    let m365 = provider(&tenant, |c| c.admin_unit = Some(unit.into()));
    let role = |admin_unit: Option<&str>| {
        let spec =
            PreflightSpec { admin_unit: admin_unit.map(str::to_string), ..preflight_spec(Some(organizer.clone())) };
        let m365 = &m365;
        async move { status_of(&m365.preflight(&spec).await, "directory_role") }
    };
    // Declared and assigned there: checked, not taken on trust.
    let (status, text) = role(Some(unit)).await;
    assert_eq!(status, CheckStatus::Ok, "{text}");
    assert!(text.contains(unit), "{text}");
    // Another unit declared: the role is not there.
    let (status, text) = role(Some("another-unit")).await;
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("another-unit"), "{text}");
    // Nothing declared: the unit to declare is named.
    let (status, text) = role(None).await;
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains(&format!("m365.admin_unit = \"{unit}\"")), "{text}");

    // The unit's members get their reset; an account outside it is refused, naming the unit.
    let dns = HttpDnsPublisher::new(tenant.base_url());
    let inside = provision(&m365, &dns, &spec(2)).await.unwrap();
    m365.reset_passwords(&[inside.accounts[0].upn.clone()]).await.unwrap();
    let outside_spec = KitSpec { crisis_id: "13022-2026-001".into(), domain: "secours-cassis.fr".into(), ..spec(1) };
    let outside = provision(&m365, &dns, &outside_spec).await.unwrap();
    let err = m365.reset_passwords(&[outside.accounts[0].upn.clone()]).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { missing: Grant::UnitRole { unit: u, .. }, .. } if u == unit), "{err}");
    let Error::Forbidden { missing, .. } = &err else { unreachable!() };
    assert!(missing.fr().contains("unité administrative"), "{}", missing.fr());
}

/// team-put-teams: 201 Created with the team, and 404 for up to 15 minutes after the group's
/// creation (replication; retry 10 s apart). Under the simulator's clock, minutes of 404s pass
/// while the client retries within its own Team budget; past that budget, a typed error.
#[tokio::test]
async fn a_team_put_on_a_fresh_group_is_retried_until_it_is_created() {
    let lag = Duration::from_secs(14 * 60);
    let tenant = sim(SimConfig { team_not_found_for: lag, ..configured() }).await;
    let m365 = provider(&tenant, |c| c.team_retry_interval = Duration::from_millis(20));
    let (dns, kit_spec) = (HttpDnsPublisher::new(tenant.base_url()), spec(4));
    let kit = provision(&m365, &dns, &kit_spec);
    // The tenant's clock runs a minute per 40 ms while the client waits: the operation's own
    // budget (60 s) would not cover 14 minutes; the Team's (15 minutes) does.
    let clock = async {
        loop {
            tokio::time::sleep(Duration::from_millis(40)).await;
            tenant.advance(Duration::from_secs(60));
        }
    };
    let kit = tokio::select! { kit = kit => kit.unwrap(), () = clock => unreachable!() };
    assert!(kit.team.created);
    assert_one_kit(&tenant.state(), 4);
    let body = json!({"displayName": "G", "mailEnabled": true, "mailNickname": "g", "securityEnabled": false, "groupTypes": ["Unified"]});
    let (_, group) = raw(&tenant, reqwest::Method::POST, "/groups", body).await;
    let put = format!("/groups/{}/team", group["id"].as_str().unwrap());
    let (status, body) = raw(&tenant, reqwest::Method::PUT, &put, json!({})).await;
    assert_eq!(status, 404, "{body}");
    tenant.advance(lag);
    let (status, body) = raw(&tenant, reqwest::Method::PUT, &put, json!({})).await;
    assert_eq!(status, 400, "past the lag, Graph's next rule (an owner first): {body}");

    // The clock stands still: past the Team's budget, the step fails with a typed error that
    // says why, and nothing is created twice when it runs again.
    let stuck = sim(SimConfig { team_not_found_for: lag, ..configured() }).await;
    let m365 = provider(&stuck, |c| {
        c.team_retry_interval = Duration::from_millis(20);
        c.team_lag_budget = Duration::from_millis(300);
    });
    let err = provision(&m365, &HttpDnsPublisher::new(stuck.base_url()), &spec(4)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Budget { op, last, .. } if op == "team.create" && last.contains("15 minutes")),
        "{err}"
    );
    assert!(err.is_transient());
    stuck.advance(lag);
    provision(&m365, &HttpDnsPublisher::new(stuck.base_url()), &spec(4)).await.unwrap();
    assert_one_kit(&stuck.state(), 4);
}

/// The crisis Team of `accounts`, the first one its owner.
fn team_of(accounts: &[repli_m365::Account]) -> repli_m365::TeamSpec {
    let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    repli_m365::TeamSpec {
        nickname: "crise-13005-2026-001".into(),
        display_name: "Cellule de crise — Aubagne".into(),
        description: "Espace de secours".into(),
        owners: ids[..1].to_vec(),
        members: ids,
        channels: vec![],
    }
}

/// A Team's owner must hold a licence that includes Teams (403 GetApplicableSkuCategoriesForUserFailed,
/// microsoft-graph-docs#10353): refused raw; `ensure_team` licenses the owners while it makes
/// the group, before the licences step reaches the other accounts.
#[tokio::test]
async fn a_team_is_refused_while_its_owner_holds_no_teams_licence() {
    let sim = sim(configured()).await;
    sim.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&sim, |_| {});
    m365.ensure_domain("aubagne.secours-amp.fr").await.unwrap();
    let accounts = m365.ensure_accounts("aubagne.secours-amp.fr", &agents(3)).await.unwrap();
    assert!(accounts.iter().all(|a| !a.licensed));
    let bind = |id: &str| format!("{}/directoryObjects/{id}", sim.graph_url());
    let body = json!({"displayName": "G", "mailEnabled": true, "mailNickname": "g", "securityEnabled": false,
        "groupTypes": ["Unified"], "owners@odata.bind": [bind(&accounts[0].id)]});
    let (_, group) = raw(&sim, reqwest::Method::POST, "/groups", body).await;
    let put = format!("/groups/{}/team", group["id"].as_str().unwrap());
    let (status, body) = raw(&sim, reqwest::Method::PUT, &put, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("GetApplicableSkuCategoriesForUserFailed"), "{body}");
    let spec = team_of(&accounts);
    m365.ensure_team(&spec).await.unwrap();
    let c = &sim.state()["counts"];
    assert_eq!((c["teams"].as_u64(), c["licensesAssigned"].as_u64()), (Some(1), Some(2)), "the owner only: {c}");
}

/// Configured without a SKU that includes Teams, the owner never gets one: the Team step waits
/// (Teams may lag behind a fresh licence), then fails naming the licence, not a permission.
#[tokio::test]
async fn a_team_without_a_teams_licence_to_give_names_the_licence() {
    let sim = sim(configured()).await;
    sim.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&sim, |c| {
        c.sku_part_numbers = vec![repli_graph_sim::SUITE_SKU.into()];
        c.budget = Duration::from_secs(2);
    });
    m365.ensure_domain("aubagne.secours-amp.fr").await.unwrap();
    let accounts = m365.ensure_accounts("aubagne.secours-amp.fr", &agents(2)).await.unwrap();
    let spec = team_of(&accounts);
    let err = m365.ensure_team(&spec).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { missing: Grant::TeamsLicence, .. }), "{err}");
    assert!(Grant::TeamsLicence.fr().contains("licence incluant Teams"));
    assert_eq!(sim.state()["counts"]["teams"], 0);
}

/// A subdomain of a verified root is verified at creation: no TXT record needed.
#[tokio::test]
async fn subdomains_of_a_verified_root_are_verified_at_once() {
    let sim = sim(configured()).await;
    sim.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&sim, |_| {});
    let d = m365.ensure_domain("aubagne.secours-amp.fr").await.unwrap();
    assert!(d.verified);
    m365.verify_domain("aubagne.secours-amp.fr", None).await.unwrap();
    let other = m365.ensure_domain("aubagne.ailleurs.fr").await.unwrap();
    assert!(!other.verified);
    assert!(m365.verify_domain("aubagne.ailleurs.fr", None).await.is_err(), "no TXT published, no verification");
}

/// user-delete: a deleted user waits in deleted items and still holds its domain, which
/// cannot be deleted until the user is deleted for good (User.DeleteRestore.All).
#[tokio::test]
async fn soft_deleted_users_hold_the_domain_until_purged() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let spec = spec(2);
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec).await.unwrap();
    assert!(m365.delete_group(&spec.nickname()).await.unwrap());
    for a in &kit.accounts {
        assert_eq!(raw(&sim, reqwest::Method::DELETE, &format!("/users/{}", a.id), Value::Null).await.0, 204);
    }
    let (status, body) = raw(&sim, reqwest::Method::DELETE, &format!("/domains/{}", spec.domain), Value::Null).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("deleted user"), "{body}");
    let (_, deleted) =
        raw(&sim, reqwest::Method::GET, "/directory/deletedItems/microsoft.graph.user", Value::Null).await;
    assert_eq!(deleted["value"].as_array().unwrap().len(), 2);
    // Without User.DeleteRestore.All the purge is refused.
    let sim2 = sim_granting(without_permission("User.DeleteRestore.All")).await;
    let (status, _) = raw(&sim2, reqwest::Method::DELETE, "/directory/deletedItems/x", Value::Null).await;
    assert_eq!(status, 403);
    // The client purges them on its way to removing the domain.
    assert_eq!(m365.remove_domain(&spec.domain, false).await.unwrap(), DomainRemoval::Deleted);
    let (_, deleted) =
        raw(&sim, reqwest::Method::GET, "/directory/deletedItems/microsoft.graph.user", Value::Null).await;
    assert_eq!(deleted["value"].as_array().unwrap().len(), 0);
}

/// Since October 2023 suites sold in the EEA come without Teams: every account gets each
/// configured SKU, and a missing or exhausted one is named before anything is created.
#[tokio::test]
async fn every_account_gets_the_suite_and_teams() {
    let sim = sim(SimConfig { licences: 3, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    let (_, skus) = raw(&sim, reqwest::Method::GET, "/subscribedSkus", Value::Null).await;
    assert_eq!(skus["value"].as_array().unwrap().len(), 2);
    let err = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(4)).await.unwrap_err();
    assert!(matches!(&err, Error::LicencesExhausted { missing: 1, .. }), "{err}");
    assert_eq!(sim.state()["counts"]["users"], 0);
    let m365 = provider(&sim, |c| c.sku_part_numbers.push("Microsoft_Teams_Premium".into()));
    let err = m365.ensure_accounts("aubagne.secours-amp.fr", &agents(1)).await.unwrap_err();
    assert!(matches!(&err, Error::SkuNotFound(p) if p == "Microsoft_Teams_Premium"), "{err}");
}

/// group-post-members: `POST /groups/{id}/members/$ref` adds one member: 204, 400 when
/// already a member, 404 for an unknown object.
#[tokio::test]
async fn members_are_added_one_by_one_through_ref() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(1)).await.unwrap();
    let organizer = sim.seed_user("hors-kit");
    let path = format!("/groups/{}/members/$ref", kit.team.group_id);
    let member = |id: &str| json!({"@odata.id": format!("{}/directoryObjects/{id}", sim.graph_url())});
    assert_eq!(raw(&sim, reqwest::Method::POST, &path, member(&organizer)).await.0, 204);
    assert_eq!(raw(&sim, reqwest::Method::POST, &path, member(&organizer)).await.0, 400);
    assert_eq!(raw(&sim, reqwest::Method::POST, &path, member("00000000-0000-0000-0000-000000000000")).await.0, 404);
}

/// domain-forcedelete is a long-running operation: the domain is still there right after the
/// call; the client waits until it answers 404.
#[tokio::test]
async fn forced_deletion_is_waited_for() {
    let sim = sim(SimConfig { team_delay: Duration::from_millis(800), ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    m365.ensure_domain("b.secours-amp.fr").await.unwrap();
    let force = json!({"disableUserAccounts": true});
    let (status, _) = raw(&sim, reqwest::Method::POST, "/domains/b.secours-amp.fr/forceDelete", force).await;
    assert_eq!(status, 204);
    assert_eq!(raw(&sim, reqwest::Method::GET, "/domains/b.secours-amp.fr", Value::Null).await.0, 200, "still there");
    let spec = spec(1);
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec).await.unwrap();
    assert_eq!(m365.remove_domain(&spec.domain, true).await.unwrap(), DomainRemoval::ForceDeleted { renamed: 1 });
    assert_eq!(raw(&sim, reqwest::Method::GET, &format!("/domains/{}", spec.domain), Value::Null).await.0, 404);
}

/// An RSA key made by openssl, as docs/M365.md tells ops to; `None` (the test says it is
/// skipped) where openssl is missing, unless `REPLI_OPENSSL_TESTS=required` (CI).
fn rsa_key(dir: &std::path::Path) -> Option<String> {
    let path = dir.join("key.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&path)
        .output();
    match made {
        Ok(o) if o.status.success() => Some(std::fs::read_to_string(path).unwrap()),
        _ => {
            let required = std::env::var("REPLI_OPENSSL_TESTS").is_ok_and(|v| v == "required");
            assert!(!required, "openssl is required (REPLI_OPENSSL_TESTS=required) but does not run");
            eprintln!("SKIPPED: openssl is not installed (apt-get install openssl)");
            None
        }
    }
}

/// A certificate for `key_pem` valid from a year ago for `days` more days (negative: expired).
fn certificate(key_pem: &str, days: i64) -> String {
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["repli".to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(365);
    params.not_after = now + time::Duration::days(days);
    params.self_signed(&key).unwrap().pem()
}

/// Microsoft identity platform certificate credentials: a PS256 client assertion named by the
/// certificate's thumbprint gets a token; a wrong certificate or an expired one does not.
#[tokio::test]
async fn certificate_sign_in_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let Some(key) = rsa_key(dir.path()) else { return };
    let cert = certificate(&key, 365);
    let sim = sim(SimConfig { client_certificate: Some(cert.clone()), ..configured() }).await;
    let with_cert = |cert_pem: &str| {
        let c = repli_m365::ClientCertificate::from_pem(&Secret::new(key.clone()), cert_pem).unwrap();
        provider(&sim, move |cfg| cfg.credential = repli_m365::Credential::Certificate(c))
    };
    let m365 = with_cert(&cert);
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(2)).await.unwrap();
    assert_one_kit(&sim.state(), 2);
    // Another certificate of the same key is not the one registered.
    let err = with_cert(&certificate(&key, 200)).ensure_domain("b.secours-amp.fr").await.unwrap_err();
    assert!(matches!(&err, Error::Auth(m) if m.contains("AADSTS700027")), "{err}");
    // An expired registered certificate is refused.
    let old = certificate(&key, -1);
    let expired = sim_with_cert(&old).await;
    let c = repli_m365::ClientCertificate::from_pem(&Secret::new(key.clone()), &old).unwrap();
    let m365 = provider(&expired, move |cfg| cfg.credential = repli_m365::Credential::Certificate(c));
    let err = m365.ensure_domain("c.secours-amp.fr").await.unwrap_err();
    assert!(matches!(&err, Error::Auth(m) if m.contains("expired")), "{err}");
    // Hostile assertions: garbage, an unsigned one (alg none), one signed for another audience.
    let post = |assertion: String| {
        let url = format!("{}/t/oauth2/v2.0/token", sim.base_url());
        let scope = format!("{}/.default", sim.base_url());
        async move {
            let form = [
                ("grant_type", "client_credentials".to_string()),
                ("client_id", "client-repli".to_string()),
                ("scope", scope),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()),
                ("client_assertion", assertion),
            ];
            let r = reqwest::Client::new().post(url).form(&form).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post("pas.un.jeton".into()).await;
    assert!(status == 400 || status == 401, "{status} {body}");
    let unsigned = format!(
        "{}.{}.",
        base64_url(r#"{"alg":"none","typ":"JWT"}"#),
        base64_url(r#"{"aud":"x","iss":"client-repli","sub":"client-repli","exp":9999999999,"jti":"j"}"#)
    );
    assert_ne!(post(unsigned).await.0, 200);
    let c = repli_m365::ClientCertificate::from_pem(&Secret::new(key.clone()), &cert).unwrap();
    let elsewhere = c.assertion("client-repli", "https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap();
    let (status, body) = post(elsewhere.expose().to_string()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("audience"), "{body}");
    // The private key never shows in Debug.
    let c = repli_m365::ClientCertificate::from_pem(&Secret::new(key.clone()), &cert).unwrap();
    assert!(!format!("{c:?}").contains("PRIVATE"));
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

async fn sim_with_cert(cert: &str) -> Simulator {
    sim(SimConfig { client_certificate: Some(cert.to_string()), ..configured() }).await
}

fn preflight_spec(organizer: Option<String>) -> PreflightSpec {
    PreflightSpec {
        largest_kit: 50,
        root_domain: Some("secours-amp.fr".into()),
        organizer,
        secret_expires_on: Some("2099-12-31".into()),
        admin_unit: None,
        today: "2026-11-30".into(),
        warn_days: 30,
    }
}

fn status_of(report: &PreflightReport, key: &str) -> (CheckStatus, String) {
    let c = report.checks.iter().find(|c| c.key == key).unwrap_or_else(|| panic!("no {key} in {report:?}"));
    (c.status, format!("{} {}", c.detail, c.fix.clone().unwrap_or_default()))
}

/// The preflight passes on a tenant set up as docs/M365.md says, and names each
/// misconfiguration with how to fix it.
#[tokio::test]
async fn preflight_names_each_misconfiguration() {
    let ready = sim(configured()).await;
    ready.seed_verified_domain("secours-amp.fr");
    let organizer = ready.seed_user("organisateur");
    let report = provider(&ready, |_| {}).preflight(&preflight_spec(Some(organizer.clone()))).await;
    assert!(report.ok, "{report:#?}");
    let (role, detail) = status_of(&report, "directory_role");
    assert_eq!(role, CheckStatus::Warn, "tenant-wide role: advice to scope it: {detail}");

    let cases: Vec<(SimConfig, &str, &str)> = vec![
        (
            SimConfig { grants: without_permission("Group.ReadWrite.All"), ..configured() },
            "permissions",
            "Group.ReadWrite.All",
        ),
        (
            SimConfig { grants: Grants { directory_roles: vec![], ..Grants::default() }, ..configured() },
            "directory_role",
            "User Administrator",
        ),
        (SimConfig { licences: 10, ..configured() }, "licences", "10 libre(s) pour 50"),
        (SimConfig::default(), "meeting_policy", "Grant-CsApplicationAccessPolicy -PolicyName Repli -Global"),
    ];
    for (config, key, says) in cases {
        let tenant = sim(config).await;
        tenant.seed_verified_domain("secours-amp.fr");
        let organizer = tenant.seed_user("organisateur");
        let report = provider(&tenant, |_| {}).preflight(&preflight_spec(Some(organizer))).await;
        assert!(!report.ok, "{key}: {report:#?}");
        let (status, text) = status_of(&report, key);
        assert_eq!(status, CheckStatus::Fail, "{key}: {text}");
        assert!(text.contains(says), "{key}: {text}");
    }
    // Only the EEA suite configured: nothing to give a Team's owner or a meeting's organiser.
    let no_teams = provider(&ready, |c| c.sku_part_numbers = vec![repli_graph_sim::SUITE_SKU.into()]);
    let (status, text) = status_of(&no_teams.preflight(&preflight_spec(None)).await, "licences");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("n'inclut Teams"), "{text}");
    // No root domain in the tenant.
    let bare = sim(configured()).await;
    let report = provider(&bare, |_| {}).preflight(&preflight_spec(None)).await;
    assert_eq!(status_of(&report, "root_domain").0, CheckStatus::Fail);
    // No standing organiser and no root domain for a canary account: meeting creation is not
    // proven, so the check fails.
    let (status, text) = status_of(&report, "meeting_policy");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("témoin") && text.contains("pas démontrée"), "{text}");
    let no_root = PreflightSpec { root_domain: None, ..preflight_spec(None) };
    let (status, text) = status_of(&provider(&bare, |_| {}).preflight(&no_root).await, "meeting_policy");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("-Global"), "{text}");
    // A secret expiring within the warning window, one expired, one of unknown expiry.
    for (date, status, says) in [
        (Some("2026-12-10"), CheckStatus::Fail, "dans 10 jour(s)"),
        (Some("2026-11-01"), CheckStatus::Fail, "expiré"),
        (None, CheckStatus::Warn, "inconnue"),
    ] {
        let spec = PreflightSpec { secret_expires_on: date.map(str::to_string), ..preflight_spec(None) };
        let report = provider(&ready, |_| {}).preflight(&spec).await;
        let (s, text) = status_of(&report, "credential");
        assert_eq!(s, status, "{date:?}: {text}");
        assert!(text.contains(says), "{date:?}: {text}");
    }
}

/// A certificate close to its end fails the preflight before an activation needs it.
#[tokio::test]
async fn preflight_reports_an_expiring_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let Some(key) = rsa_key(dir.path()) else { return };
    let cert = certificate(&key, 5);
    let sim = sim_with_cert(&cert).await;
    let c = repli_m365::ClientCertificate::from_pem(&Secret::new(key), &cert).unwrap();
    let m365 = provider(&sim, move |cfg| cfg.credential = repli_m365::Credential::Certificate(c));
    let today = time::OffsetDateTime::now_utc().date();
    let spec = PreflightSpec { today: today.to_string(), ..preflight_spec(None) };
    let report = m365.preflight(&spec).await;
    let (status, text) = status_of(&report, "credential");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    assert!(text.contains("certificat expire le"), "{text}");
}

/// The hand-back's Microsoft 365 side, in the playbook's order; asserts each stage.
async fn hand_back(sim: &Simulator, m365: &GraphProvider, spec: &KitSpec) {
    let agents = spec.agents.len();
    // The visio first (onlinemeeting-delete), while its organiser still holds Teams; again
    // changes nothing.
    let external_id = format!("repli-{}", spec.crisis_id);
    assert_eq!(m365.remove_meetings(&spec.domain, &external_id).await.unwrap(), 1);
    assert_eq!(sim.state()["counts"]["onlineMeetings"], 0);
    assert_eq!(m365.remove_meetings(&spec.domain, &external_id).await.unwrap(), 0);
    assert_eq!(sim.state()["counts"]["onlineMeetings"], 0, "a probe left a meeting behind");
    let down = m365.wind_down_accounts(&spec.domain).await.unwrap();
    assert_eq!((down.accounts.len(), down.licences_removed as usize), (agents, agents * 2));
    let state = sim.state();
    let counts = &state["counts"];
    assert_eq!((counts["enabledUsers"].as_u64(), counts["licensesAssigned"].as_u64()), (Some(0), Some(0)), "{counts}");
    assert!(state["users"].as_array().unwrap().iter().all(|u| u["revocations"] == 1), "sessions revoked once each");
    assert!(m365.delete_group(&spec.nickname()).await.unwrap());
    assert_eq!(m365.delete_accounts(&spec.domain).await.unwrap(), agents);
    assert_eq!(m365.remove_domain(&spec.domain, false).await.unwrap(), DomainRemoval::Deleted);
    let counts = &sim.state()["counts"];
    for kind in ["domains", "users", "groups", "teams", "licensesAssigned", "onlineMeetings"] {
        assert_eq!(counts[kind], 0, "{kind} left after the hand-back: {counts}");
    }
}

/// A 50-agent kit provisioned and handed back at 20 requests/s, with `Retry-After` in seconds
/// and as an HTTP-date, every documented rule enforced: each object once, then nothing left.
#[tokio::test]
async fn a_kit_is_provisioned_and_handed_back_at_twenty_requests_per_second() {
    // Both forms at once, each against its own tenant.
    let run = |format: RetryAfterFormat| async move {
        let faults = Faults { throttle_rps: Some(20), retry_after_format: format, ..Faults::default() };
        let sim = sim(SimConfig { faults, ..configured() }).await;
        let m365 = provider(&sim, |c| c.budget = Duration::from_secs(240));
        let spec = spec(50);
        provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec).await.unwrap();
        assert_one_kit(&sim.state(), 50);
        hand_back(&sim, &m365, &spec).await;
        let stats = m365.stats();
        assert!(stats.throttled > 0, "{format:?}: never throttled: {stats:?}");
    };
    tokio::join!(run(RetryAfterFormat::Seconds), run(RetryAfterFormat::HttpDate));
}

#[tokio::test]
async fn communes_hit_together_share_one_throttled_tenant_and_each_kit_is_made_once() {
    // Three communes at once through one connection (one throttle gate) on a tenant that
    // admits 20 requests a second: every kit completes, each object exactly once.
    let faults = Faults { throttle_rps: Some(20), ..Faults::default() };
    let sim = sim(SimConfig { faults, ..configured() }).await;
    let m365 = provider(&sim, |c| c.budget = Duration::from_secs(240));
    let dns = HttpDnsPublisher::new(sim.base_url());
    let specs: Vec<KitSpec> = ["Aubagne", "Cassis", "La Ciotat"]
        .iter()
        .enumerate()
        .map(|(i, commune)| KitSpec {
            crisis_id: format!("1300{i}-2026-001"),
            commune: (*commune).into(),
            domain: format!("commune-{i}.secours-amp.fr"),
            ..spec(15)
        })
        .collect();
    let kits = futures_util::future::join_all(specs.iter().map(|s| provision(&m365, &dns, s))).await;
    for (kit, spec) in kits.into_iter().zip(&specs) {
        let kit = kit.unwrap_or_else(|e| panic!("{}: {e}", spec.commune));
        assert_eq!(kit.accounts.len(), 15);
        assert!(kit.accounts.iter().all(|a| a.licensed && a.upn.ends_with(&format!("@{}", spec.domain))));
    }
    let state = sim.state();
    let c = &state["counts"];
    assert_eq!(
        (c["domains"].as_u64(), c["users"].as_u64(), c["licensesAssigned"].as_u64()),
        (Some(3), Some(45), Some(90))
    );
    assert_eq!((c["groups"].as_u64(), c["teams"].as_u64(), c["onlineMeetings"].as_u64()), (Some(3), Some(3), Some(3)));
    for group in state["groups"].as_array().unwrap() {
        assert_eq!((group["members"].as_u64(), group["owners"].as_u64()), (Some(15), Some(1)), "{group}");
    }
    assert!(m365.stats().throttled > 0, "the tenant never throttled: the test proves nothing");
}

/// Application access policy (cloud-communication-online-meeting-application-access-policy):
/// app-only meetings need a policy covering the organiser, per user or `-Global`; a new tenant
/// has none; a grant takes a while to apply. The kit's organiser is an account created at
/// activation, which only `-Global` covers, so the preflight proves it with a fresh canary
/// account, or uses a standing organiser ops named.
#[tokio::test]
async fn meetings_need_an_access_policy_covering_their_organiser() {
    // A new tenant: no policy. The visio is refused with the documented answer, diagnosed as
    // the policy (not as a permission the same preflight says is granted).
    let bare = sim(SimConfig::default()).await;
    bare.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&bare, |_| {});
    let err = provision(&m365, &HttpDnsPublisher::new(bare.base_url()), &spec(2)).await.unwrap_err();
    match &err {
        Error::Forbidden { missing: Grant::MeetingPolicy, message, .. } => {
            assert!(message.contains("is not authorized to Create meeting on behalf of user"), "{message}")
        }
        other => panic!("expected the access policy: {other}"),
    }
    let report = m365.preflight(&preflight_spec(None)).await;
    assert_eq!(status_of(&report, "permissions").0, CheckStatus::Ok, "{report:#?}");
    let (status, text) = status_of(&report, "meeting_policy");
    assert_eq!(status, CheckStatus::Fail, "{text}");
    for says in
        ["New-CsApplicationAccessPolicy", "Grant-CsApplicationAccessPolicy -PolicyName Repli -Global", "30 minutes"]
    {
        assert!(text.contains(says), "{says} missing: {text}");
    }
    assert!(!text.contains("OnlineMeetings.ReadWrite.All"), "a granted permission blamed: {text}");
    // The canary account was deleted for good: only the kit's two accounts remain.
    let users_before = bare.state()["counts"]["users"].clone();
    m365.preflight(&preflight_spec(None)).await;
    assert_eq!(bare.state()["counts"]["users"], users_before, "canary left behind");

    // A per-user policy for a standing organiser: it applies only after its delay.
    let pending = sim(SimConfig { policy_delay: Duration::from_secs(3600), ..SimConfig::default() }).await;
    pending.seed_verified_domain("secours-amp.fr");
    let organizer = pending.seed_user("organisateur");
    pending.grant_meeting_policy(PolicyGrant::User(organizer.clone()));
    let report = provider(&pending, |_| {}).preflight(&preflight_spec(Some(organizer))).await;
    assert_eq!(status_of(&report, "meeting_policy").0, CheckStatus::Fail, "applied before its delay");
    // Applied: its canary passes, a fresh account's does not, and naming it as the standing
    // organiser makes the kit's visio work.
    let tenant = sim(SimConfig { policy_delay: Duration::ZERO, ..SimConfig::default() }).await;
    tenant.seed_verified_domain("secours-amp.fr");
    let organizer = tenant.seed_user("organisateur");
    tenant.grant_meeting_policy(PolicyGrant::User(organizer.clone()));
    let m365 = provider(&tenant, |_| {});
    assert_eq!(
        status_of(&m365.preflight(&preflight_spec(Some(organizer.clone()))).await, "meeting_policy").0,
        CheckStatus::Ok
    );
    let (status, text) = status_of(&m365.preflight(&preflight_spec(None)).await, "meeting_policy");
    assert_eq!(status, CheckStatus::Fail, "a per-user policy does not cover fresh accounts: {text}");
    let err = provision(&m365, &HttpDnsPublisher::new(tenant.base_url()), &spec(2)).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { missing: Grant::MeetingPolicy, .. }), "{err}");
    let standing = provider(&tenant, |c| c.meeting_organizer = Some(organizer.clone()));
    let kit = provision(&standing, &HttpDnsPublisher::new(tenant.base_url()), &spec(2)).await.unwrap();
    assert!(kit.meeting.join_url.starts_with("https://teams.microsoft.com/"));
    // Its meetings: the preflight's canary and the kit's. The hand-back removes the kit's only.
    assert_eq!(tenant.state()["counts"]["onlineMeetings"], 2);
    assert_eq!(standing.remove_meetings("aubagne.secours-amp.fr", "repli-13005-2026-001").await.unwrap(), 1);
    let left = tenant.state();
    assert_eq!(left["onlineMeetings"].as_array().map(Vec::len), Some(1));
    assert_eq!(left["onlineMeetings"][0]["externalId"], "repli-preflight");

    // -Global granted while running: refused for the documented 30 minutes (the simulator's
    // default delay, under its clock), then proven by the canary.
    let later = sim(SimConfig::default()).await;
    later.seed_verified_domain("secours-amp.fr");
    later.grant_meeting_policy(PolicyGrant::Global);
    let m365 = provider(&later, |_| {});
    later.advance(Duration::from_secs(29 * 60));
    assert_eq!(status_of(&m365.preflight(&preflight_spec(None)).await, "meeting_policy").0, CheckStatus::Fail);
    later.advance(Duration::from_secs(60));
    let (status, text) = status_of(&m365.preflight(&preflight_spec(None)).await, "meeting_policy");
    assert_eq!(status, CheckStatus::Ok, "{text}");
    assert!(text.contains("-Global"), "{text}");
    let counts = &later.state()["counts"];
    assert_eq!((counts["users"].as_u64(), counts["onlineMeetings"].as_u64()), (Some(0), Some(0)), "canary left behind");
}

/// Tokens carry what was granted when they were issued (Microsoft identity platform, "Access
/// tokens"): after an administrator's grant, a refused call gets a new token once and passes,
/// alone or inside a batch; the preflight reads the grants from Graph, never from the token.
#[tokio::test]
async fn a_grant_made_after_the_token_was_issued_counts_at_once() {
    let sim = sim_granting(without_permission("Group.ReadWrite.All")).await;
    let m365 = provider(&sim, |_| {});
    let err = m365.delete_group("crise-x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { missing: Grant::Permission(p), .. } if p == "Group.ReadWrite.All"),
        "{err}"
    );
    let report = m365.preflight(&preflight_spec(None)).await;
    assert!(status_of(&report, "permissions").1.contains("Group.ReadWrite.All"));
    sim.set_grants(Grants::default());
    // The preflight takes a new token and reads Graph: the grant shows at once.
    assert_eq!(status_of(&m365.preflight(&preflight_spec(None)).await, "permissions").0, CheckStatus::Ok);
    // A call refused with the old token's grants: once a new token, then it passes.
    let fresh = provider(&sim, |_| {});
    sim.set_grants(without_permission("Group.ReadWrite.All"));
    assert!(fresh.delete_group("crise-x").await.is_err());
    sim.set_grants(Grants::default());
    assert!(!fresh.delete_group("crise-x").await.unwrap(), "no such group, and no 403 after the grant");

    // Inside a batch: password resets refused for the User Administrator role, granted, then done.
    let sim = sim_granting(Grants { directory_roles: vec![], ..Grants::default() }).await;
    let m365 = provider(&sim, |_| {});
    let kit = provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(2)).await.unwrap();
    let upns: Vec<String> = kit.accounts.iter().map(|a| a.upn.clone()).collect();
    assert!(m365.reset_passwords(&upns).await.is_err());
    sim.set_grants(Grants::default());
    assert_eq!(m365.reset_passwords(&upns).await.unwrap().len(), 2);
    // A refusal that stays after the new token is reported, not looped on.
    sim.set_grants(Grants { directory_roles: vec![], ..Grants::default() });
    let fresh = provider(&sim, |_| {});
    let err = fresh.reset_passwords(&upns).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { missing: Grant::Role(_), .. }), "{err}");
}

/// Behind a gateway that issues opaque tokens, the preflight still reads what the app holds
/// (from Graph), instead of reporting every permission missing.
#[tokio::test]
async fn opaque_tokens_do_not_hide_the_grants() {
    let sim = sim(SimConfig { opaque_tokens: true, ..configured() }).await;
    sim.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&sim, |_| {});
    let report = m365.preflight(&preflight_spec(None)).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(status_of(&report, "permissions").0, CheckStatus::Ok);
    assert_eq!(status_of(&report, "directory_role").0, CheckStatus::Warn, "tenant-wide role seen");
    // Without Application.Read.All the grants cannot be read: said so, naming the permission.
    let blind = sim_granting(without_permission("Application.Read.All")).await;
    let report = provider(&blind, |_| {}).preflight(&preflight_spec(None)).await;
    let (status, text) = status_of(&report, "permissions");
    assert_eq!(status, CheckStatus::Fail);
    assert!(text.contains("Application.Read.All"), "{text}");
    // More than needed is a warning naming it.
    let wide = sim_granting(Grants {
        app_roles: [&LEAST[..], &["Directory.ReadWrite.All"]].concat().iter().map(|s| (*s).to_string()).collect(),
        ..Grants::default()
    })
    .await;
    let (status, text) = status_of(&provider(&wide, |_| {}).preflight(&preflight_spec(None)).await, "permissions");
    assert_eq!(status, CheckStatus::Warn, "{text}");
    assert!(text.contains("Directory.ReadWrite.All"), "{text}");
    // Channel messages are an optional capability, said, never a failure: the permission is
    // held; Microsoft's approval of the protected API is what the export finds out.
    let (status, text) = status_of(&m365.preflight(&preflight_spec(None)).await, "channel_messages");
    assert_eq!(status, CheckStatus::Ok, "{text}");
    assert!(text.contains("Group.ReadWrite.All suffit") && text.contains("API protégées"), "{text}");
}

const LEAST: [&str; 11] = repli_core::m365::LEAST_PRIVILEGE;

/// domain-verify "only applies to an unverified domain": Graph answers 400 on a verified one.
/// The client reads `isVerified` first; a record not seen yet is retried later, the rest is not.
#[tokio::test]
async fn verifying_a_domain_follows_the_documented_answers() {
    let tenant = sim(configured()).await;
    tenant.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&tenant, |_| {});
    m365.ensure_domain("aubagne.secours-amp.fr").await.unwrap();
    let (status, body) =
        raw(&tenant, reqwest::Method::POST, "/domains/aubagne.secours-amp.fr/verify", Value::Null).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("only applies to an unverified domain"), "{body}");
    m365.verify_domain("aubagne.secours-amp.fr", None).await.unwrap();
    // What this run's create or read has just answered is not read again: verified, nothing
    // is sent; said unverified but verified since (a stale view), the 400 counts as done.
    let seen = m365.ensure_domain("aubagne.secours-amp.fr").await.unwrap();
    assert!(seen.verified, "a subdomain of a verified root is verified from its creation");
    let before = m365.stats().http_calls;
    m365.verify_domain("aubagne.secours-amp.fr", Some(&seen)).await.unwrap();
    assert_eq!(m365.stats().http_calls, before, "known verified: nothing sent");
    let stale = repli_m365::DomainState { verified: false, ..seen.clone() };
    m365.verify_domain("aubagne.secours-amp.fr", Some(&stale)).await.unwrap();
    assert_eq!(m365.stats().http_calls, before + 1, "the verify only, answered 400 and taken as done");
    // Another domain's state is not taken for this one's.
    m365.verify_domain("aubagne.secours-amp.fr", Some(&repli_m365::DomainState { name: "x.fr".into(), ..stale }))
        .await
        .unwrap();
    assert_eq!(m365.stats().http_calls, before + 2, "read first, found verified, no verify sent");
    // Not published yet: "not yet visible", transient.
    m365.ensure_domain("aubagne.ailleurs.fr").await.unwrap();
    let err = m365.verify_domain("aubagne.ailleurs.fr", None).await.unwrap_err();
    assert!(matches!(&err, Error::NotYetVisible { .. }) && err.is_transient(), "{err}");
    // Refused for good (no permission): permanent, named.
    let denied = sim_granting(without_permission("Domain.ReadWrite.All")).await;
    let err = provider(&denied, |_| {}).verify_domain("x.secours-amp.fr", None).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    // The switch: the old lenient answer.
    let lenient = sim(SimConfig { lenient_verify: true, ..configured() }).await;
    lenient.seed_verified_domain("secours-amp.fr");
    provider(&lenient, |_| {}).ensure_domain("a.secours-amp.fr").await.unwrap();
    let (status, _) = raw(&lenient, reqwest::Method::POST, "/domains/a.secours-amp.fr/verify", Value::Null).await;
    assert_eq!(status, 200);
}

/// `Retry-After` with decimals, and a whole `$batch` answered 424 (json-batching): both retried,
/// each object made once.
#[tokio::test]
async fn decimal_retry_after_and_a_failed_dependency_batch_are_retried() {
    let faults = Faults { throttle_rps: Some(25), retry_after_format: RetryAfterFormat::Decimal, ..Faults::default() };
    let throttled = sim(SimConfig { faults, ..configured() }).await;
    let m365 = provider(&throttled, |_| {});
    provision(&m365, &HttpDnsPublisher::new(throttled.base_url()), &spec(30)).await.unwrap();
    assert_one_kit(&throttled.state(), 30);
    assert!(m365.stats().throttled > 0, "{:?}", m365.stats());

    let faults = Faults { batch_424_rate: 0.4, ..Faults::default() };
    let sim = sim(SimConfig { faults, seed: 11, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    provision(&m365, &HttpDnsPublisher::new(sim.base_url()), &spec(30)).await.unwrap();
    assert_one_kit(&sim.state(), 30);
    assert!(m365.stats().retries > 0, "{:?}", m365.stats());
}

/// A recorded request's path as the permission table in docs/M365.md writes it: ids replaced
/// by `{id}`, the query dropped.
fn call_of(method: &str, path: &str) -> Option<String> {
    const WORDS: &[&str] = &[
        "domains",
        "verificationDnsRecords",
        "serviceConfigurationRecords",
        "domainNameReferences",
        "verify",
        "forceDelete",
        "users",
        "assignLicense",
        "revokeSignInSessions",
        "onlineMeetings",
        "createOrGet",
        "directory",
        "deletedItems",
        "microsoft.graph.user",
        "subscribedSkus",
        "groups",
        "members",
        "team",
        "teams",
        "channels",
        "operations",
        "servicePrincipals",
        "appRoleAssignments",
        "roleManagement",
        "roleAssignments",
        "mailFolders",
        "childFolders",
        "messages",
        "$value",
        "drive",
        "root",
        "delta",
        "drives",
        "items",
        "content",
    ];
    let path = path.split('?').next()?.trim_start_matches("/v1.0");
    // `/_sim/download/…`: the pre-authenticated URL a `/content` redirects to, not Graph.
    if !path.starts_with('/') || path == "/$batch" || path.contains("oauth2") || path.starts_with("/_sim/") {
        return None;
    }
    let segments: Vec<&str> =
        path.split('/').filter(|s| !s.is_empty()).map(|s| if WORDS.contains(&s) { s } else { "{id}" }).collect();
    Some(format!("{method} /{}", segments.join("/")))
}

/// docs/M365.md's table of Graph calls: (call, least-privileged on its page, granted, optional).
fn permission_table() -> Vec<(String, String, String, bool)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/M365.md")).unwrap();
    let start = doc.find("### Graph calls and their permissions").expect("the table's heading");
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| call |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 5, "{l}");
            (
                cells[0].trim_matches('`').to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
                cells[4].starts_with("only"),
            )
        })
        .collect()
}

/// docs/M365.md lists one line per Graph call the client makes, with its page's least-privileged
/// permission and the granted one: a whole cycle (provisioning, preflight with its canary
/// account, credential sheets, hand-back, a forced domain removal) recorded against the
/// simulator makes exactly those calls; the simulator's rule for each accepts the granted
/// permission and names the page's least-privileged one first; the granted column is exactly
/// the set the preflight checks.
#[tokio::test]
async fn the_permission_table_is_the_calls_the_client_makes() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("requests.jsonl");
    let sim = sim(SimConfig { record: Some(record.clone()), ..configured() }).await;
    sim.seed_verified_domain("secours-amp.fr");
    let m365 = provider(&sim, |_| {});
    let dns = HttpDnsPublisher::new(sim.base_url());
    // 21 agents: the group takes 20 relationships at creation, the rest come by PATCH.
    let kit_spec = spec(21);
    let kit = provision(&m365, &dns, &kit_spec).await.unwrap();
    // Run again (a restarted step): the lookups of what exists (the Team's channels).
    provision(&m365, &dns, &kit_spec).await.unwrap();
    let report = m365.preflight(&preflight_spec(None)).await;
    assert!(report.ok, "{report:#?}");
    m365.reset_passwords(&[kit.accounts[0].upn.clone()]).await.unwrap();
    // The data hand-back's reads: every item listed, each fetched.
    let inv = m365.export_inventory(&kit_spec.domain, &kit_spec.nickname()).await.unwrap();
    for item in inv.items.iter().take(40).chain(inv.items.iter().rev().take(3)) {
        m365.fetch_item(item, u64::MAX, &mut MemSink::default()).await.unwrap();
    }
    // The hand-back's calls (asserted in `hand_back`; here the root domain stays).
    let external_id = format!("repli-{}", kit_spec.crisis_id);
    assert_eq!(m365.remove_meetings(&kit_spec.domain, &external_id).await.unwrap(), 1);
    m365.wind_down_accounts(&kit_spec.domain).await.unwrap();
    assert!(m365.delete_group(&kit_spec.nickname()).await.unwrap());
    assert_eq!(m365.delete_accounts(&kit_spec.domain).await.unwrap(), 21);
    assert_eq!(m365.remove_domain(&kit_spec.domain, false).await.unwrap(), DomainRemoval::Deleted);
    // A domain outside the verified root: verified by its TXT record.
    let other = KitSpec { crisis_id: "13022-2026-001".into(), domain: "secours-cassis.fr".into(), ..spec(2) };
    provision(&m365, &dns, &other).await.unwrap();
    assert!(matches!(m365.remove_domain(&other.domain, true).await.unwrap(), DomainRemoval::ForceDeleted { .. }));

    let made: std::collections::BTreeSet<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            call_of(v["method"].as_str()?, v["path"].as_str()?)
        })
        .collect();
    let table = permission_table();
    let listed: std::collections::BTreeSet<String> = table.iter().map(|(c, ..)| c.clone()).collect();
    let undocumented: Vec<&String> = made.difference(&listed).collect();
    assert!(undocumented.is_empty(), "calls missing from docs/M365.md: {undocumented:?}");
    for (call, least, granted, optional) in &table {
        assert!(*optional || made.contains(call), "{call} is listed but the client never made it");
        assert!(LEAST.contains(&granted.as_str()), "{call}: {granted} is not in LEAST_PRIVILEGE");
        let (method, path) = call.split_once(' ').unwrap();
        match repli_graph_sim::permissions_for(method, &path.replace("{id}", "x")) {
            Some(any) => {
                assert_eq!(
                    any.first().copied(),
                    Some(least.as_str()),
                    "{call}: the page's least-privileged permission"
                );
                assert!(any.contains(&granted.as_str()), "{call}: {granted} does not allow it");
            }
            None => assert!(*optional, "{call}: the simulator has no rule for it"),
        }
    }
    let granted: std::collections::BTreeSet<&str> = table.iter().map(|(_, _, g, _)| g.as_str()).collect();
    assert_eq!(granted, LEAST.iter().copied().collect(), "the granted column is the set the preflight checks");
}

/// The export's sink in memory, counting what each fetch wrote.
#[derive(Default)]
struct MemSink {
    bytes: Vec<u8>,
    written_now: u64,
    restarts: u32,
}

impl ItemSink for MemSink {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(chunk);
        self.written_now += chunk.len() as u64;
        Ok(())
    }
    fn written(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn restart(&mut self) -> std::io::Result<()> {
        if !self.bytes.is_empty() {
            self.restarts += 1;
        }
        self.bytes.clear();
        Ok(())
    }
}

#[tokio::test]
async fn the_hand_back_lists_every_message_and_file_page_by_page_and_streams_them() {
    use repli_m365::{ExportKind, Fetched};
    let content = repli_graph_sim::ContentSpec {
        messages: 7,
        message_bytes: 3_000,
        files: vec![0, 5_000, 3_000_000],
        awkward: true,
        vanishing: 1,
        channel_messages: 3,
        channel_replies: 2,
    };
    let sim = sim(SimConfig { max_page: 2, content, ..configured() }).await;
    let m365 = provider(&sim, |_| {});
    let dns = HttpDnsPublisher::new(sim.base_url());
    provision(&m365, &dns, &spec(2)).await.unwrap();
    sim.set_faults(Faults { throttle_rps: Some(40), ..Faults::default() });
    let inv = m365.export_inventory("aubagne.secours-amp.fr", "crise-13005-2026-001").await.unwrap();
    let messages = inv.items.iter().filter(|i| i.kind == ExportKind::Message).count();
    let files = inv.items.iter().filter(|i| i.kind == ExportKind::File).count();
    // 7 messages and the 2 awkward ones per mailbox; 3 files and 7 awkward ones per drive
    // (2 accounts and the Team), every page followed (pages of 2).
    assert_eq!(messages, 2 * 9, "{:#?}", inv.items);
    assert_eq!(files, 3 * 10);
    assert!(inv.items.iter().any(|i| i.owner == "equipe"));
    assert!(inv.items.iter().any(|i| i.folder == ["Boîte de réception", "Préfecture"]), "child folders are listed");
    // Channel messages: a protected API Microsoft has not approved for the app here.
    assert!(inv.notes.iter().any(|n| n.contains("API protégée")), "{:?}", inv.notes);
    assert!(!inv.items.iter().any(|i| matches!(i.kind, ExportKind::ChannelMessages | ExportKind::ChannelPage)));
    let mut gone = 0;
    let mut too_large = 0;
    for item in &inv.items {
        let mut sink = MemSink::default();
        match m365.fetch_item(item, 1_000_000, &mut sink).await.unwrap() {
            Fetched::Complete { bytes } => {
                assert_eq!(bytes, sink.written());
                if item.kind == ExportKind::Message {
                    assert!(sink.bytes.starts_with(b"From: "), "MIME of {}", item.name);
                } else {
                    assert_eq!(Some(bytes), item.size, "{}", item.name);
                }
            }
            Fetched::Gone => gone += 1,
            Fetched::TooLarge { size } => {
                assert_eq!(size, 3_000_000);
                assert!(sink.bytes.is_empty());
                too_large += 1;
            }
        }
    }
    assert_eq!(gone, 2, "one vanishing message per mailbox");

    // Approved: each channel's messages with their replies, every page (of 2 here), once.
    sim.set_grants(Grants { teams_protected_apis: true, ..Grants::default() });
    let approved = m365.export_inventory("aubagne.secours-amp.fr", "crise-13005-2026-001").await.unwrap();
    let channels: Vec<&repli_m365::ExportItem> =
        approved.items.iter().filter(|i| i.kind == ExportKind::ChannelMessages).collect();
    assert!(!channels.is_empty());
    assert_eq!(approved.items.iter().filter(|i| i.kind == ExportKind::ChannelPage).count(), channels.len());
    assert!(!approved.notes.iter().any(|n| n.contains("API protégée")), "{:?}", approved.notes);
    for item in channels {
        let mut sink = MemSink::default();
        assert!(matches!(m365.fetch_item(item, u64::MAX, &mut sink).await.unwrap(), Fetched::Complete { .. }));
        let c: repli_core::handback::ChannelExport = serde_json::from_slice(&sink.bytes).unwrap();
        assert_eq!(c.posts.len(), 3, "{}", item.name);
        assert!(c.posts.iter().all(|p| p.replies.len() == 2 && !p.from.is_empty()));
        assert_eq!(c.posts.iter().map(|p| &p.id).collect::<std::collections::BTreeSet<_>>().len(), 3);
    }
    assert_eq!(too_large, 3, "the 3 MB file of each drive");
    assert!(m365.stats().throttled > 0, "the throttle was met and waited out");

    // A download cut after 1,000 bytes resumes with a range: only the rest is sent again, and
    // the pre-authenticated URL never sees the bearer (the simulator refuses it with 401).
    let big = inv.items.iter().find(|i| i.size == Some(5_000)).unwrap();
    let mut whole = MemSink::default();
    m365.fetch_item(big, u64::MAX, &mut whole).await.unwrap();
    let mut resumed = MemSink { bytes: whole.bytes[..1_000].to_vec(), ..MemSink::default() };
    assert_eq!(m365.fetch_item(big, u64::MAX, &mut resumed).await.unwrap(), Fetched::Complete { bytes: 5_000 });
    assert_eq!(resumed.bytes, whole.bytes);
    assert_eq!((resumed.written_now, resumed.restarts), (4_000, 0), "only the missing bytes were fetched");
}

#[tokio::test]
async fn the_hand_back_needs_mail_read_and_names_it() {
    let sim = sim(configured()).await;
    let m365 = provider(&sim, |_| {});
    let dns = HttpDnsPublisher::new(sim.base_url());
    provision(&m365, &dns, &spec(1)).await.unwrap();
    let mut g = Grants::default();
    g.app_roles.retain(|r| r != "Mail.Read");
    sim.set_grants(g);
    // A new connection: a token carries the grants of its issue.
    let m365 = provider(&sim, |_| {});
    let e = m365.export_inventory("aubagne.secours-amp.fr", "crise-13005-2026-001").await.unwrap_err();
    assert!(matches!(&e, Error::Forbidden { missing: Grant::Permission(p), .. } if p == "Mail.Read"), "{e}");
}
