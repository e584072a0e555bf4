//! `/metrics`: Prometheus text, for ops and admins, moving through a crisis.

use std::collections::BTreeMap;

use repli_core::{CrisisAction, Role};
use repli_tests::{TestApp, request};

/// `name{labels}` → value, from the OpenMetrics text.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("malformed line {l:?}"));
            (key.to_owned(), value.parse().unwrap_or_else(|_| panic!("not a number in {l:?}")))
        })
        .collect()
}

async fn scrape(app: &TestApp, token: &str) -> BTreeMap<String, f64> {
    let resp = reqwest::Client::new().get(app.url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    parse(&text)
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_follow_a_crisis_and_refused_credentials() {
    let app = TestApp::spawn().await;
    let (_, ops_token) = app.token(Role::Ops, None).await;
    let (_, admin_token) = app.token(Role::Admin, None).await;
    let before = scrape(&app, &ops_token).await;
    // Every state is written, at 0 when none (an alert sees 0, not an absent series).
    for state in repli_core::CrisisState::ALL {
        let key = format!("repli_crises{{state=\"{}\"}}", state.as_str());
        assert_eq!(before.get(&key), Some(&0.0), "{key}");
    }
    assert_eq!(before.get("repli_sla_crises{status=\"at_risk\"}"), Some(&0.0));
    assert_eq!(get(&before, "repli_sign_in_failures_total{method=\"token\"}"), 0.0);

    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    let requested = scrape(&app, &admin_token).await;
    assert_eq!(get(&requested, "repli_crises{state=\"requested\"}"), 1.0);
    assert_eq!(get(&requested, "repli_sla_crises{status=\"on_track\"}"), 1.0);

    app.make_ready(&c.id).await;
    let ready = scrape(&app, &ops_token).await;
    assert_eq!(get(&ready, "repli_crises{state=\"ready\"}"), 1.0);
    assert_eq!(get(&ready, "repli_crises{state=\"requested\"}"), 0.0);
    assert_eq!(get(&ready, "repli_sla_crises{status=\"met\"}"), 1.0);
    assert!(get(&ready, "repli_graph_requests_total") > get(&before, "repli_graph_requests_total"));
    assert!(get(&ready, "repli_graph_http_calls_total") > 0.0);
    assert_eq!(get(&ready, "repli_steps{kind=\"m365.accounts\",state=\"succeeded\"}"), 1.0, "{ready:#?}");
    let durations: f64 =
        ready.iter().filter(|(k, _)| k.starts_with("repli_step_duration_seconds_count")).map(|(_, v)| v).sum();
    let succeeded: f64 = ready
        .iter()
        .filter(|(k, _)| k.starts_with("repli_steps{") && k.contains("state=\"succeeded\""))
        .map(|(_, v)| v)
        .sum();
    assert!(durations >= succeeded && succeeded > 5.0, "{durations} durations for {succeeded} steps");
    assert!(get(&ready, "repli_audit_entries") > get(&before, "repli_audit_entries"));
    assert!(get(&ready, "repli_audit_unsigned_entries") <= get(&ready, "repli_audit_entries"));

    // The commune is told its kit is ready: a notification, queued then delivered.
    app.daemon.state().maintenance().await.unwrap();
    let told = scrape(&app, &ops_token).await;
    let notified: f64 = told.iter().filter(|(k, _)| k.starts_with("repli_notifications{")).map(|(_, v)| v).sum();
    assert!(notified >= 1.0, "{told:#?}");
    assert!(get(&told, "repli_audit_checkpoint_seq") > 0.0, "maintenance signs a checkpoint");

    // Refused credentials are counted by kind; a call without any is not a sign-in failure.
    let http = reqwest::Client::new();
    let bad = http.get(app.url("/api/v1/me")).bearer_auth("rpl_not-a-real-token").send().await.unwrap();
    assert_eq!(bad.status(), 401);
    let none = http.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let cookie = http.get(app.url("/api/v1/me")).header("cookie", "repli_session=short").send().await.unwrap();
    assert_eq!(cookie.status(), 401);
    let after = scrape(&app, &ops_token).await;
    assert_eq!(get(&after, "repli_sign_in_failures_total{method=\"token\"}"), 1.0);
    assert_eq!(get(&after, "repli_sign_in_failures_total{method=\"session\"}"), 1.0);

    // A crisis moving on moves between the state gauges.
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin de crise (test)")).await.unwrap();
    let m = scrape(&app, &ops_token).await;
    assert_eq!(get(&m, "repli_crises{state=\"handback\"}"), 1.0);

    // Not for a DGS or an auditor; not without a token.
    let (_, dgs_token) = app.token(Role::Dgs, Some("13005")).await;
    let r = http.get(app.url("/metrics")).bearer_auth(dgs_token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(http.get(app.url("/metrics")).send().await.unwrap().status(), 401);
}

/// Every series the shipped alert rules read exists in `/metrics`: a renamed metric would
/// otherwise leave an alert that never fires.
#[tokio::test]
async fn every_metric_the_alert_rules_read_is_served() {
    let app = TestApp::spawn().await;
    let (_, ops_token) = app.token(Role::Ops, None).await;
    // A crisis made ready: steps, notifications and Graph calls have series.
    let c = app.dgs.request_crisis(&request("13005"), None).await.unwrap();
    app.make_ready(&c.id).await;
    let served = scrape(&app, &ops_token).await;
    // The families /metrics declares (`# TYPE name kind`), with or without series yet.
    let text = reqwest::Client::new()
        .get(app.url("/metrics"))
        .bearer_auth(&ops_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let declared: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let known = |w: &str| {
        declared.contains(w)
            || ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|s| w.strip_suffix(s).is_some_and(|b| declared.contains(b)))
    };
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/prometheus/repli-alerts.yml")).unwrap();
    let mut read = 0;
    for expr in rules.lines().filter_map(|l| l.trim().strip_prefix("expr:")) {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("repli_")) {
            read += 1;
            assert!(known(word), "the alert rules read {word}, which /metrics does not declare");
        }
    }
    assert!(read >= 5, "no metric found in the rules");
    // A healthy store: no fault, writes not stopped, free space reported.
    assert_eq!(get(&served, "repli_store_write_fault"), 0.0);
    assert_eq!(get(&served, "repli_store_writes_stopped"), 0.0);
    assert!(get(&served, "repli_store_free_bytes") > 0.0);
}
