//! The second factor of ops, admin and auditor accounts, through the real pages: enrolment by
//! the QR page's secret, a code accepted once, recovery codes spent once, the throttle, an
//! admin's reset, a DGS untouched, API tokens untouched, and a replaced key file.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use repli_core::Role;
use repli_tests::TestApp;
use replid::clock::Clock;
use replid::config::{Config, SecondFactor};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

const PASSWORD: &str = "une phrase de passe assez longue";

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c: &mut Config| c.accounts.second_factor = SecondFactor::Required).await
}

/// A person's browser: its cookies, no redirect followed.
struct Visitor {
    base: String,
    jar: BTreeMap<String, String>,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    html: String,
}

impl Visitor {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: base.trim_end_matches('/').to_owned(), jar: BTreeMap::new(), http }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn answer(&mut self, r: reqwest::Response) -> Answer {
        self.keep(&r);
        let status = r.status();
        let location = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
        Answer { status, location, html: r.text().await.unwrap() }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let r = self.http.get(format!("{}{path}", self.base)).header(COOKIE, self.cookie()).send().await.unwrap();
        self.answer(r).await
    }

    /// Posts a form of the page just read (its CSRF token is in `page`).
    async fn post(&mut self, path: &str, page: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = hidden_csrf(page);
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &csrf));
        let body = crate::web::encode(&all);
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.answer(r).await
    }

    /// The sign-in form with a login and password: where it sends the browser.
    async fn password(&mut self, login: &str) -> Answer {
        let page = self.get("/connexion").await.html;
        self.post("/connexion", &page, &[("login", login), ("password", PASSWORD)]).await
    }
}

fn hidden_csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The key the enrolment page shows for typing (base32, in groups).
fn typed_key(html: &str) -> String {
    let start = html.find("id=\"cle-totp\">").expect("the key") + "id=\"cle-totp\">".len();
    html[start..].split('<').next().unwrap().replace(' ', "")
}

/// The code an authenticator app holding `key` shows at `now`.
fn code(key: &str, now: jiff::Timestamp) -> String {
    let secret = totp_rs::Secret::try_from_base32(key).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    totp.generate(u64::try_from(now.as_second()).unwrap()).to_string()
}

/// A six-digit code that is not `c`.
fn other_than(c: &str) -> String {
    format!("{:06}", (c.parse::<u32>().unwrap() + 1) % 1_000_000)
}

fn recovery_codes(html: &str) -> Vec<String> {
    html.split("<li><code>").skip(1).map(|s| s.split('<').next().unwrap().to_owned()).collect()
}

/// Enrols `login` through the pages; returns the key and the recovery codes.
async fn enrol(app: &TestApp, login: &str) -> (String, Vec<String>) {
    let mut v = Visitor::new(&app.url(""));
    let to = v.password(login).await;
    assert_eq!((to.status, to.location.as_deref()), (StatusCode::SEE_OTHER, Some("/connexion/enrolement")));
    let page = v.get("/connexion/enrolement").await;
    let key = typed_key(&page.html);
    let done = v.post("/connexion/enrolement", &page.html, &[("code", &code(&key, app.now()))]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    (key, recovery_codes(&done.html))
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    let log = app.auditor.audit_entries_all(&Default::default()).await.unwrap();
    log.into_iter().map(|e| (e.action, e.details)).collect()
}

#[tokio::test]
async fn ops_enrol_by_the_qr_page_then_each_code_opens_one_session() {
    let app = spawn().await;
    app.web_user(Role::Ops, None, "Anne Ops", "anne.ops", PASSWORD).await;
    let mut v = Visitor::new(&app.url(""));
    let to = v.password("anne.ops").await;
    assert_eq!((to.status, to.location.as_deref()), (StatusCode::SEE_OTHER, Some("/connexion/enrolement")));
    assert!(!v.jar.contains_key("repli_session"), "the password alone opens no session");
    assert_eq!(v.get("/").await.location.as_deref(), Some("/connexion"));
    let page = v.get("/connexion/enrolement").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("<svg") && page.html.contains("Code QR à scanner"), "{}", page.html);
    let key = typed_key(&page.html);
    assert_eq!(key.len(), 32, "160 bits in base32: {key}");
    // A wrong code, then hostile input: refused, escaped, nothing enrolled.
    let right = code(&key, app.now());
    let wrong = v.post("/connexion/enrolement", &page.html, &[("code", &other_than(&right))]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.html.contains("Code incorrect"), "{}", wrong.html);
    let hostile = format!("<script>alert(1)</script>{}", "9".repeat(10_000));
    let bad = v.post("/connexion/enrolement", &wrong.html, &[("code", &hostile)]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(!bad.html.contains("<script>alert"));
    // The right code: the recovery codes, shown once, and the session.
    let done = v.post("/connexion/enrolement", &bad.html, &[("code", &right)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert!(done.html.contains("Vos codes de secours") && done.html.contains("plus jamais affichés"));
    let codes = recovery_codes(&done.html);
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(v.jar.contains_key("repli_session") && !v.jar.contains_key("repli_2fa"));
    assert_eq!(v.get("/api/v1/me").await.status, StatusCode::OK);
    // The enrolment ticket is spent: the page sends back to the sign-in.
    assert_eq!(v.get("/connexion/enrolement").await.location.as_deref(), Some("/connexion"));

    // The next sign-in asks for a code; the one just used is refused (same 30 s step).
    let mut again = Visitor::new(&app.url(""));
    let to = again.password("anne.ops").await;
    assert_eq!(to.location.as_deref(), Some("/connexion/code"));
    let page = again.get("/connexion/code").await;
    assert!(page.html.contains("anne.ops") && page.html.contains("autocomplete=\"one-time-code\""));
    let replay = again.post("/connexion/code", &page.html, &[("code", &right)]).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert!(replay.html.contains("déjà servi"), "{}", replay.html);
    app.clock.advance(SignedDuration::from_secs(30));
    let next = code(&key, app.now());
    let ok =
        again.post("/connexion/code", &replay.html, &[("code", &format!(" {} {} ", &next[..3], &next[3..]))]).await;
    assert_eq!((ok.status, ok.location.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    assert_eq!(again.get("/api/v1/me").await.status, StatusCode::OK);

    // A recovery code (typed loosely) replaces the app once.
    let mut lost = Visitor::new(&app.url(""));
    lost.password("anne.ops").await;
    let page = lost.get("/connexion/code").await;
    let loose = codes[0].to_uppercase().replace('-', " ");
    let ok = lost.post("/connexion/code", &page.html, &[("code", &loose)]).await;
    assert_eq!((ok.status, ok.location.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    let mut twice = Visitor::new(&app.url(""));
    twice.password("anne.ops").await;
    let page = twice.get("/connexion/code").await;
    let spent = twice.post("/connexion/code", &page.html, &[("code", &codes[0])]).await;
    assert_eq!(spent.status, StatusCode::UNAUTHORIZED);

    // Audited: the enrolment, the recovery code, each session with its proof.
    let log = audit_actions(&app).await;
    let count = |a: &str| log.iter().filter(|(x, _)| x == a).count();
    assert_eq!((count("second_factor.enrol"), count("second_factor.recovery_used")), (1, 1));
    let opened: Vec<&String> = log.iter().filter(|(a, _)| a == "session.open").map(|(_, d)| d).collect();
    assert_eq!(opened.len(), 3, "{opened:?}");
    assert!(opened[2].contains("\"second_factor\":\"recovery_code\""), "{opened:?}");
    assert!(opened[0].contains("\"second_factor\":\"totp\""), "{opened:?}");
    assert!(log.iter().all(|(_, d)| !d.contains(&key) && !d.contains(&codes[1])), "no secret in the log");

    // API tokens are unchanged (tokens are not passwords), and a DGS signs in as before.
    assert_eq!(app.ops.me().await.unwrap().role, Role::Ops);
    app.web_user(Role::Dgs, Some("13005"), "DGS Aubagne", "dgs.aubagne", PASSWORD).await;
    let mut dgs = Visitor::new(&app.url(""));
    let to = dgs.password("dgs.aubagne").await;
    assert_eq!((to.status, to.location.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    assert!(dgs.jar.contains_key("repli_session"));

    // Lost phone: an admin resets; the sessions close, and the next sign-in enrols again.
    let (_, admin_token) = app.token(Role::Admin, None).await;
    let http = reqwest::Client::new();
    let users: Vec<repli_proto::api::UserView> =
        http.get(app.url("/api/v1/users")).bearer_auth(&admin_token).send().await.unwrap().json().await.unwrap();
    let anne = users.iter().find(|u| u.login.as_deref() == Some("anne.ops")).unwrap();
    assert!(anne.second_factor);
    let r = http
        .delete(app.url(&format!("/api/v1/users/{}/second-factor", anne.id)))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.json::<repli_proto::api::UserView>().await.unwrap().second_factor);
    assert_eq!(again.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED, "sessions closed");
    let r = http.delete(app.url("/api/v1/users/999999/second-factor")).bearer_auth(&admin_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(audit_actions(&app).await.iter().any(|(a, _)| a == "second_factor.reset"));
    let mut fresh = Visitor::new(&app.url(""));
    assert_eq!(fresh.password("anne.ops").await.location.as_deref(), Some("/connexion/enrolement"));
    // The old recovery codes went with the reset.
    assert_eq!(fresh.get("/connexion/code").await.location.as_deref(), Some("/connexion"));
}

/// The sign-in throttle counts the second factor: with the password right, four wrong codes
/// use up the login's five attempts, and even the right code then waits.
#[tokio::test]
async fn the_throttle_covers_the_second_factor() {
    let app = spawn().await;
    app.web_user(Role::Auditor, None, "Paul Audit", "paul.audit", PASSWORD).await;
    let (key, _) = enrol(&app, "paul.audit").await;
    app.clock.advance(SignedDuration::from_secs(60));
    let right = code(&key, app.now());
    let mut v = Visitor::new(&app.url(""));
    assert_eq!(v.password("paul.audit").await.location.as_deref(), Some("/connexion/code"));
    let mut page = v.get("/connexion/code").await.html;
    for _ in 0..4 {
        let a = v.post("/connexion/code", &page, &[("code", &other_than(&right))]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        page = a.html;
    }
    let r = v.post("/connexion/code", &page, &[("code", &right)]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.html.contains("Trop de tentatives"));
    assert!(!v.jar.contains_key("repli_session"));
    let metrics = reqwest::Client::new()
        .get(app.url("/metrics"))
        .bearer_auth(app.token(Role::Ops, None).await.1)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("repli_sign_in_failures_total{method=\"second_factor\"} 5"), "{metrics}");
}

/// A replaced key file (a host rebuilt without it): the stored secret no longer opens, the
/// sign-in says so in French, and a recovery code still gets the person in.
#[tokio::test]
async fn a_lost_key_file_is_told_and_recovery_codes_still_work() {
    let app = spawn().await;
    app.web_user(Role::Admin, None, "Léa Admin", "lea.admin", PASSWORD).await;
    let (key, codes) = enrol(&app, "lea.admin").await;
    let config = app.daemon.state().config.as_ref().clone();
    let key_file = config.totp_key_path();
    let dir = app.dir;
    app.daemon.shutdown().await.unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let clock = std::sync::Arc::new(replid::clock::ManualClock::new(repli_tests::MONDAY_8AM.parse().unwrap()));
    clock.advance(SignedDuration::from_secs(120));
    let daemon = replid::Daemon::start(&config, clock.clone()).await.unwrap();
    assert!(key_file.exists(), "a new key was made");
    let mut v = Visitor::new(&daemon.url());
    assert_eq!(v.password("lea.admin").await.location.as_deref(), Some("/connexion/code"));
    let page = v.get("/connexion/code").await;
    let r = v.post("/connexion/code", &page.html, &[("code", &code(&key, clock.now()))]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.html.contains("ne peut plus être vérifiée"), "{}", r.html);
    let ok = v.post("/connexion/code", &r.html, &[("code", &codes[3])]).await;
    assert_eq!((ok.status, ok.location.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    daemon.shutdown().await.unwrap();
    drop(dir);
}
