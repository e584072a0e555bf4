//! The test kit shared by the end-to-end tests (see `e2e/`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use repli_core::run::{PlaybookName, RunState};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use repli_core::{CrisisAction, CrisisId, CrisisState, InseeCode, Role, StepState};
use repli_proto::Client;
use repli_proto::api::{
    AgentInput, AgentsRequest, Contact, CrisisRequest, CrisisView, NewUserRequest, PasswordRequest, StepsView,
};
use replid::Daemon;
use replid::clock::ManualClock;
use replid::config::Config;

/// Monday 23 November 2026, 08:00 Europe/Paris.
pub const MONDAY_8AM: &str = "2026-11-23T07:00:00Z";

/// A running replid on 127.0.0.1:0 with its own SQLite file and a clock the test moves.
#[derive(Debug)]
pub struct TestApp {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub anon: Client,
    pub ops: Client,
    pub auditor: Client,
    /// DGS of Aubagne (13005, convention signed).
    pub dgs: Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], with the configuration adjusted first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_in(tempfile::tempdir().unwrap(), adjust).await
    }

    /// Like [`TestApp::spawn_with`], on the database already in `dir` (`repli.db`), if any.
    pub async fn spawn_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.database.path = dir.path().join("repli.db");
        // Checkpoint often, so every test exercises signing.
        config.audit.checkpoint_every = 5;
        // Web sign-ins with the password alone, so that the many tests about pages sign in in
        // one step (and twice within 30 s of the fixed clock); the second factor's own tests
        // (`second_factor.rs`, the browser's) set it back to the default, `required`.
        config.accounts.second_factor = replid::config::SecondFactor::Off;
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(MONDAY_8AM.parse().unwrap()));
        let daemon = Daemon::start(&config, clock.clone()).await.unwrap();
        let anon = Client::new(&daemon.url(), None).unwrap();
        let mut app = Self { ops: anon.clone(), auditor: anon.clone(), dgs: anon.clone(), anon, daemon, dir, clock };
        app.ops = app.client(Role::Ops, None).await;
        app.auditor = app.client(Role::Auditor, None).await;
        app.dgs = app.client(Role::Dgs, Some("13005")).await;
        app
    }

    /// A new user of `role`: their id and raw API token.
    pub async fn token(&self, role: Role, commune: Option<&str>) -> (i64, String) {
        let commune = commune.map(|c| InseeCode::parse(c).unwrap());
        let name = format!("{role} {}", commune.as_ref().map_or("", InseeCode::as_str));
        let req = repli_proto::api::NewUserRequest { name, role, commune, expires_days: None };
        let created = repli_app::accounts::create(self.daemon.state(), replid::By::System, &req).await.unwrap();
        (created.user.id, created.token.token)
    }

    /// A new user of `role` and a client acting as them.
    pub async fn client(&self, role: Role, commune: Option<&str>) -> Client {
        self.anon.with_token(self.token(role, commune).await.1)
    }

    pub fn now(&self) -> Timestamp {
        use replid::clock::Clock;
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.daemon.url())
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("repli.db")
    }

    /// A user of `role` named `name` who signs in on the web with `login` and `password`.
    pub async fn web_user(&self, role: Role, commune: Option<&str>, name: &str, login: &str, password: &str) {
        let admin = self.client(Role::Admin, None).await;
        let u = admin
            .create_user(&NewUserRequest {
                name: name.into(),
                role,
                commune: commune.map(|c| InseeCode::parse(c).unwrap()),
                expires_days: None,
            })
            .await
            .unwrap();
        admin
            .set_password(u.user.id, &PasswordRequest { login: login.into(), password: password.into() })
            .await
            .unwrap();
    }

    /// Polls the crisis's playbook runs until `done` holds (30 s at most).
    pub async fn wait_steps(&self, id: &CrisisId, what: &str, done: impl Fn(&StepsView) -> bool) -> StepsView {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let v = self.ops.steps(id.as_str()).await.unwrap();
            if done(&v) {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {v:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Ops activate the crisis; returns once the engine has reserved its kit.
    pub async fn activate(&self, id: &CrisisId) -> CrisisView {
        self.ops.act(id, CrisisAction::Activate, None).await.unwrap();
        self.wait_steps(id, "the reservation step", |v| {
            step_state(v, "activation", "reserve") == Some(StepState::Succeeded)
        })
        .await;
        self.ops.crisis(id.as_str()).await.unwrap()
    }

    /// Runs the activation playbook to a ready kit as ops would: activates if needed, names the
    /// agents the commune has not, confirms each manual task when it comes up.
    pub async fn make_ready(&self, id: &CrisisId) -> CrisisView {
        let c = self.ops.crisis(id.as_str()).await.unwrap();
        if c.state == CrisisState::Requested {
            self.activate(id).await;
        }
        // Every declared agent named: the accounts step waits for a complete list.
        let named = self.ops.agents(id.as_str()).await.unwrap().len() as u32;
        if named < c.agents && !c.agents_accepted {
            let agents = (named + 1..=c.agents)
                .map(|i| AgentInput { name: format!("Agent Numéro{i}"), service: "Accueil".into() })
                .collect();
            self.ops.add_agents(id.as_str(), &AgentsRequest { agents }).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let v = self.ops.steps(id.as_str()).await.unwrap();
            if let Some(failed) = v.runs.iter().flat_map(|r| &r.steps).find(|s| s.state == StepState::Failed) {
                panic!("step {} failed: {:?}", failed.step, failed.last_error);
            }
            for task in self.ops.tasks().await.unwrap().into_iter().filter(|t| t.crisis == *id) {
                self.ops.task_done(id.as_str(), &task.step, Some("fait (test)")).await.unwrap();
            }
            let c = self.ops.crisis(id.as_str()).await.unwrap();
            if c.state == CrisisState::Ready
                && v.runs.iter().any(|r| r.playbook == PlaybookName::Activation && r.state == RunState::Succeeded)
            {
                return c;
            }
            assert!(std::time::Instant::now() < deadline, "kit never ready: {v:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl TestApp {
    /// Runs the hand-back playbook to a closed crisis: starts it if needed, confirms each
    /// manual task (items must have been checked in for the closing step to pass).
    pub async fn hand_back(&self, id: &CrisisId) -> CrisisView {
        let c = self.ops.crisis(id.as_str()).await.unwrap();
        if c.state != CrisisState::Handback {
            self.ops.act(id, CrisisAction::StartHandback, Some("fin de crise (test)")).await.unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            for task in self.ops.tasks().await.unwrap().into_iter().filter(|t| t.crisis == *id) {
                self.ops.task_done(id.as_str(), &task.step, None).await.unwrap();
            }
            let c = self.ops.crisis(id.as_str()).await.unwrap();
            let v = self.ops.steps(id.as_str()).await.unwrap();
            // Closed by the hand-back's last step; the run itself is marked finished by the
            // engine's next pass: wait for both.
            if c.state == CrisisState::Closed && v.runs.iter().all(|r| r.state != RunState::Running) {
                return c;
            }
            if let Some(failed) = v.runs.iter().flat_map(|r| &r.steps).find(|s| s.state == StepState::Failed) {
                panic!("step {} failed: {:?}", failed.step, failed.last_error);
            }
            assert!(std::time::Instant::now() < deadline, "never closed: {v:#?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The state of `step` in the run of `playbook`, if there is one.
pub fn step_state(v: &StepsView, playbook: &str, step: &str) -> Option<StepState> {
    v.runs.iter().find(|r| r.playbook.as_str() == playbook)?.steps.iter().find(|s| s.step == step).map(|s| s.state)
}

/// The HTTP status of a refused call, in one word: `client.call().await.status_code()`.
pub trait StatusCode {
    fn status_code(self) -> u16;
}

impl<T: std::fmt::Debug> StatusCode for Result<T, repli_proto::ClientError> {
    fn status_code(self) -> u16 {
        match self {
            Ok(v) => panic!("expected a refusal, got {v:?}"),
            Err(e) => e.status().map_or(0, |s| s.as_u16()),
        }
    }
}

/// Two laptops, a router and its SIM, a printer: one small kit's worth.
pub const SMALL_POOL: &str = "asset_tag,serial,kind,model,imei,iccid,msisdn,apn,location\n\
AMP-LAP-0001,FICTIF-LAP-0001,laptop,Portable,,,,,Pharo\n\
AMP-LAP-0002,FICTIF-LAP-0002,laptop,Portable,,,,,Pharo\n\
AMP-RTR-001,FICTIF-RTR-001,router,Routeur 4G/5G,350000011122336,,,internet.pro,Pharo\n\
AMP-SIM-001,FICTIF-SIM-001,sim,Carte SIM 5G,,89331500000000000016,+33639980001,internet.pro,Pharo\n\
AMP-PRT-01,FICTIF-PRT-01,printer,Imprimante laser A4,,,,,Pharo\n";

/// A valid request for `insee`.
pub fn request(insee: &str) -> CrisisRequest {
    CrisisRequest {
        commune: InseeCode::parse(insee).unwrap(),
        contact: Contact {
            name: "Anne Martin".into(),
            phone: "06 12 34 56 78".into(),
            email: Some("anne.martin@exemple.fr".into()),
        },
        agents: 25,
        delivery_address: Some("Hôtel de ville".into()),
        notes: None,
        needs: None,
        aware_at: None,
        personal_data: None,
    }
}

/// Path of one of the workspace's binaries (`replid`, `repli`, `repli-bench`), building them on first use.
///
/// `cargo test` builds only the test-harness versions of other packages' binaries, so the kit
/// asks the cargo that runs the tests to build the real ones, once per test process, in the
/// same profile and target folder as the test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe.parent().and_then(|d| d.parent()).ok_or("test executable outside a target folder")?.to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "replid",
            "-p",
            "repli-cli",
            "-p",
            "repli-graph-sim",
            "-p",
            "repli-bench",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() { Ok(dir) } else { Err(format!("cargo build of the binaries failed: {status}")) }
    });
    match dir {
        Ok(d) => d.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => panic!("{e}"),
    }
}

/// A real BIND `named` on a loopback port, authoritative for one zone, accepting RFC 2136
/// updates signed with one TSIG key (HMAC-SHA256) and only for names strictly below the zone's
/// apex (the least-privilege `update-policy` of docs/DNS.md). Stopped when dropped.
#[derive(Debug)]
pub struct Named {
    pub addr: std::net::SocketAddr,
    pub zone: String,
    pub key_name: String,
    /// The key's secret, base64 (as in `named.conf`).
    pub secret: String,
    child: std::process::Child,
    pub dir: tempfile::TempDir,
}

/// A new TSIG key for a test server: its base64 secret and its name.
fn test_key() -> (String, String) {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    (base64::engine::general_purpose::STANDARD.encode(key), "repli-test".to_owned())
}

/// The test zone: SOA and NS `ns1` (127.0.0.1), an apex TXT and `www`, both outside the policy.
fn write_zone(dir: &std::path::Path, zone: &str) {
    std::fs::write(
        dir.join("zone.db"),
        format!(
            "$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 127.0.0.1\n\
                 @ IN TXT \"apex: hors de la politique\"\nwww IN TXT \"ne pas toucher\"\n"
        ),
    )
    .unwrap();
}

/// A loopback port free for both UDP and TCP.
fn free_dns_port() -> std::net::SocketAddr {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        if std::net::UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
}

pub const NAMED: &str = "/usr/sbin/named";
pub const KNOTD: &str = "/usr/sbin/knotd";

impl Named {
    /// Starts `named` with the least-privilege policy of docs/DNS.md (the key may write only
    /// TXT, MX, CNAME and SRV, strictly below the apex, and never at the zone's own names
    /// `www` and `ns1`), or returns None (the test is skipped, and says why) when it is not
    /// installed and `REPLI_DNS_TESTS` is not `required` (`.ci/run` sets it).
    pub fn start(test: &str, zone: &str) -> Option<Named> {
        let required = std::env::var("REPLI_DNS_TESTS").is_ok_and(|v| v == "required");
        if !std::path::Path::new(NAMED).exists() {
            let why = format!("{NAMED} not installed (apt-get install bind9)");
            assert!(!required, "DNS test {test}: REPLI_DNS_TESTS=required but {why}");
            eprintln!("DNS test {test} SKIPPED: {why}; set REPLI_DNS_TESTS=required to make this a failure");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (secret, key_name) = test_key();
        let addr = free_dns_port();
        let d = dir.path().display();
        write_zone(dir.path(), zone);
        std::fs::write(
            dir.path().join("named.conf"),
            format!(
                "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
                 listen-on-v6 {{ none; }};\n  recursion no;\n  allow-query {{ any; }};\n  dnssec-validation no;\n  notify no;\n}};\n\
                 controls {{ }};\n\
                 key \"{key_name}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
                 zone \"{zone}\" {{\n  type primary;\n  file \"{d}/zone.db\";\n  \
                 update-policy {{\n    deny {key_name}. name www.{zone}. ANY;\n    deny {key_name}. subdomain ns1.{zone}. ANY;\n    \
                 grant {key_name}. wildcard *.{zone}. TXT MX CNAME SRV;\n  }};\n}};\n",
                port = addr.port()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(NAMED)
            .args(["-g", "-c"])
            .arg(dir.path().join("named.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("named.log")).unwrap())
            .spawn()
            .unwrap();
        let named = Named { addr, zone: zone.to_owned(), key_name, secret, child, dir };
        // Listening comes before the zone is loaded: wait for named's own « running ».
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !named.log().lines().any(|l| l.ends_with(" running")) {
            assert!(std::time::Instant::now() < deadline, "named did not start: {}", named.log());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(named)
    }

    /// Starts Knot DNS (`knotd`) as the zone's primary, with the ACL docs/DNS.md gives for Knot
    /// (the key may write only TXT, MX, CNAME and SRV strictly below the apex, never at `www`
    /// or `ns1`), or None when Knot is not installed and `REPLI_KNOT_TESTS` is not `required`
    /// (`.ci/run` installs it and sets it).
    pub fn knot(test: &str, zone: &str) -> Option<Named> {
        let required = std::env::var("REPLI_KNOT_TESTS").is_ok_and(|v| v == "required");
        if !std::path::Path::new(KNOTD).exists() {
            let why = format!("{KNOTD} not installed (apt-get install knot)");
            assert!(!required, "Knot test {test}: REPLI_KNOT_TESTS=required but {why}");
            eprintln!("Knot test {test} SKIPPED: {why}; set REPLI_KNOT_TESTS=required to make this a failure");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (secret, key_name) = test_key();
        let addr = free_dns_port();
        let d = dir.path().display();
        write_zone(dir.path(), zone);
        // The ACL block is docs/DNS.md's, with this test's zone and key.
        std::fs::write(
            dir.path().join("knot.conf"),
            format!(
                "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n\
                 log:\n  - target: stderr\n    any: info\n\
                 database:\n  storage: \"{d}/db\"\n\
                 control:\n  listen: \"{d}/knot.sock\"\n\
                 key:\n  - id: {key_name}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
                 acl:\n  - id: repli-protected\n    key: {key_name}\n    action: update\n    deny: on\n    \
                 update-owner: name\n    update-owner-match: sub-or-equal\n    update-owner-name: [www.{zone}., ns1.{zone}.]\n  \
                 - id: repli-update\n    key: {key_name}\n    action: update\n    update-type: [TXT, MX, CNAME, SRV]\n    \
                 update-owner: name\n    update-owner-match: sub\n    update-owner-name: [{zone}.]\n\
                 zone:\n  - domain: {zone}\n    storage: \"{d}\"\n    file: zone.db\n    zonefile-sync: -1\n    \
                 acl: [repli-protected, repli-update]\n",
                port = addr.port()
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let child = std::process::Command::new(KNOTD)
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("named.log")).unwrap())
            .spawn()
            .unwrap();
        let knot = Named { addr, zone: zone.to_owned(), key_name, secret, child, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !knot.log().contains("loaded, serial") {
            assert!(std::time::Instant::now() < deadline, "knotd did not load the zone: {}", knot.log());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(knot)
    }

    /// `named`'s own log (started with `-g`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// The adapter's configuration for this server, with this key.
    pub fn rfc2136(&self) -> repli_m365::Rfc2136Config {
        use base64::Engine as _;
        repli_m365::Rfc2136Config {
            primary: Some(self.addr),
            zone: self.zone.clone(),
            key_name: self.key_name.clone(),
            key: base64::engine::general_purpose::STANDARD.decode(&self.secret).unwrap(),
            algorithm: "hmac-sha256".into(),
            // The zone's NS points at 127.0.0.1:53, not this test's port.
            servers: vec![self.addr],
            propagation_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal SMTP server on loopback that records what it is sent.
pub async fn smtp_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    smtp_server_refusing(&[]).await
}

/// A mail as a mail client reads it: its decoded headers and its text.
#[derive(Debug, Clone)]
pub struct ReadMail {
    pub subject: String,
    pub to: String,
    pub mime_version: Option<String>,
    pub content_type: String,
    pub charset: String,
    pub transfer_encoding: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<i64>,
    pub text: String,
}

impl Received {
    /// Parses the mail with a real MIME parser (mailparse).
    pub fn read(&self) -> ReadMail {
        use mailparse::MailHeaderMap;
        let m = mailparse::parse_mail(self.data.as_bytes()).unwrap();
        let h = m.get_headers();
        ReadMail {
            subject: h.get_first_value("Subject").unwrap_or_default(),
            to: h.get_first_value("To").unwrap_or_default(),
            mime_version: h.get_first_value("MIME-Version"),
            content_type: m.ctype.mimetype.clone(),
            charset: m.ctype.charset.clone(),
            transfer_encoding: h.get_first_value("Content-Transfer-Encoding"),
            message_id: h.get_first_value("Message-ID"),
            date: h.get_first_value("Date").and_then(|d| mailparse::dateparse(&d).ok()),
            text: m.get_body().unwrap(),
        }
    }
}

/// A mail an [`smtp_server_refusing`] accepted: its envelope and its data (dot-unstuffed, lines
/// ending in CRLF as on the wire).
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP server on loopback (EHLO, MAIL, RCPT, DATA, RSET, QUIT) that answers
/// `550` to a recipient containing any of `refuse`, and records each mail it accepted.
pub async fn smtp_server_refusing(refuse: &[&str]) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, serve_smtp(listener, refuse))
}

/// [`smtp_server_refusing`] on a listener of the caller's (a port that was closed before).
pub fn serve_smtp(
    listener: tokio::net::TcpListener,
    refuse: &[&str],
) -> std::sync::Arc<std::sync::Mutex<Vec<Received>>> {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mails: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = mails.clone();
    let refuse: Arc<Vec<String>> = Arc::new(refuse.iter().map(|s| s.to_string()).collect());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let (store, refuse) = (store.clone(), refuse.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 localhost ESMTP test\r\n").await.unwrap();
                let mut data: Option<String> = None;
                let (mut from, mut to) = (String::new(), Vec::new());
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            let mail =
                                Received { from: from.clone(), to: std::mem::take(&mut to), data: std::mem::take(d) };
                            store.lock().unwrap().push(mail);
                            data = None;
                            w.write_all(b"250 OK queued\r\n").await.unwrap();
                        } else {
                            d.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
                            d.push_str("\r\n");
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let arg = |l: &str| l.split_once(':').map(|(_, a)| a.trim().trim_matches(['<', '>']).to_owned());
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 localhost\r\n",
                        "MAIL" => {
                            from = arg(&line).unwrap_or_default();
                            b"250 OK\r\n"
                        }
                        "RCPT" => {
                            let rcpt = arg(&line).unwrap_or_default();
                            if refuse.iter().any(|r| rcpt.contains(r.as_str())) {
                                b"550 5.1.1 mailbox unavailable\r\n"
                            } else {
                                to.push(rcpt);
                                b"250 OK\r\n"
                            }
                        }
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    mails
}

/// Points replid's DGS channels at the local stand-ins: the SMS gateway at `sms_url` (token
/// read from `token_file` when given) and the SMTP server on `smtp_port`, no ops recipients.
pub fn dgs_channels(c: &mut Config, sms_url: String, token_file: Option<PathBuf>, smtp_port: u16) {
    c.notify.sms =
        Some(replid::config::SmsConfig { url: sms_url, token_file, sender: "AMP Repli".into(), to: Vec::new() });
    c.notify.smtp = Some(replid::config::SmtpConfig {
        host: "127.0.0.1".into(),
        port: smtp_port,
        security: replid::config::SmtpSecurity::None,
        from: "repli@ampmetropole.example".into(),
        to: Vec::new(),
        username: None,
        password_file: None,
    });
}

/// What the SMS gateway stand-in received: the JSON body and the Authorization header.
#[derive(Debug, Clone)]
pub struct SmsReceived {
    pub body: serde_json::Value,
    pub authorization: Option<String>,
}

/// An SMS gateway stand-in on loopback, taking the generic JSON shape replid sends
/// (`{"to", "from", "text"}`): answers 503 to its first `fail_first` messages, then 201,
/// and records every message it accepted. Returns its URL and what it received.
pub async fn sms_gateway(fail_first: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<SmsReceived>>>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<SmsReceived>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, c) = (got.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                g.lock().unwrap().push(SmsReceived { body, authorization });
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, got)
}

/// The visible text of an HTML page or document: no style or script, no tags, the few
/// entities our templates write decoded.
pub fn visible_text(html: &str) -> String {
    let mut s = html.to_owned();
    for tag in ["style", "script"] {
        while let Some(start) = s.find(&format!("<{tag}")) {
            let end = s[start..].find(&format!("</{tag}>")).map_or(s.len(), |e| start + e + tag.len() + 3);
            s.replace_range(start..end, " ");
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x3D;", "=")
        .replace("&amp;", "&")
}

/// What a French text shown to a commune must not hold: a raw code (`start_handback`), English
/// words of errors and states, a command line (`repli step retry`, backquotes), a doubled
/// article (« le le »), a crisis in the masculine (« la crise … activé »). Addresses, links and
/// domain names are not words. Returns each fault with its context.
pub fn french_faults(text: &str) -> Vec<String> {
    const ENGLISH: [&str; 22] = [
        "the",
        "error",
        "failed",
        "invalid",
        "unknown",
        "missing",
        "expected",
        "step",
        "pending",
        "succeeded",
        "provisioning",
        "handback",
        "null",
        "none",
        "true",
        "false",
        "field",
        "waiting",
        "requested",
        "activated",
        "delivered",
        "cancelled",
    ];
    const CLI: [&str; 12] = [
        "step",
        "task",
        "handback",
        "crisis",
        "inventory",
        "loan",
        "audit",
        "notifications",
        "dns",
        "sla",
        "playbook",
        "agents",
    ];
    const SMALL: [&str; 12] = ["le", "la", "les", "de", "du", "des", "un", "une", "à", "et", "au", "aux"];
    let words: Vec<&str> = text.split_whitespace().collect();
    let context = |i: usize| words[i.saturating_sub(4)..(i + 5).min(words.len())].join(" ");
    let mut out = Vec::new();
    if text.contains('`') {
        out.push("a backquote (command line)".to_owned());
    }
    for (i, raw) in words.iter().enumerate() {
        let w = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
        if raw.contains('@') || raw.contains("://") {
            continue;
        }
        if w.contains('.') {
            // A dotted word is a domain name (« aubagne.secours-amp.fr »), or a code
            // (« crisis.activate », « m365.accounts »).
            let parts: Vec<&str> = w.split('.').collect();
            let code = parts.iter().all(|p| {
                p.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
            let domain = ["fr", "com", "org", "net", "eu", "example", "io"].contains(parts.last().unwrap_or(&""));
            if code && !domain {
                out.push(format!("raw code « {w} »: {}", context(i)));
            }
            continue;
        }
        let lower = w.to_lowercase();
        if w.contains('_') && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(format!("raw code « {w} »: {}", context(i)));
        }
        if ENGLISH.contains(&lower.as_str()) {
            out.push(format!("English « {w} »: {}", context(i)));
        }
        if lower == "repli" && words.get(i + 1).is_some_and(|n| CLI.contains(n)) {
            out.push(format!("command line: {}", context(i)));
        }
        if SMALL.contains(&lower.as_str()) && words.get(i + 1).is_some_and(|n| n.to_lowercase() == lower) {
            out.push(format!("doubled « {w} »: {}", context(i)));
        }
        if lower == "crise"
            && words[i + 1..(i + 6).min(words.len())].iter().any(|n| {
                ["activé", "annulé", "clos", "livré"].contains(&n.trim_matches(|c: char| !c.is_alphanumeric()))
            })
        {
            out.push(format!("crisis in the masculine: {}", context(i)));
        }
    }
    out
}

/// One request written as raw bytes on `stream` (plain or TLS), for what an HTTP library
/// refuses to send (a target over 64 KiB): the status, the head (lower-case), the body.
pub async fn raw_http<S>(mut stream: S, method_and_target: &str, extra_headers: &str) -> (u16, String, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!("{method_and_target} HTTP/1.1\r\nhost: localhost\r\n{extra_headers}connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A server may close before reading everything sent: what it answered is still read.
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[cfg(test)]
mod french {
    #[test]
    fn the_checks_find_each_fault_and_pass_correct_french() {
        let good = "La crise 13005-2026-001 est activée. Écrivez à astreinte@exemple.fr ou voyez \
                    https://exemple.fr/a_b ; selector1._domainkey.aubagne.secours-amp.fr. Le kit de repli est prêt.";
        assert_eq!(super::french_faults(good), Vec::<String>::new());
        for bad in [
            "État : start_handback",
            "Échec : invalid type",
            "Lancez repli step retry 13005-2026-001 accounts",
            "Tapez `repli`",
            "Voir le le dossier",
            "La crise est activé",
            "Action : crisis.agents.added",
        ] {
            assert!(!super::french_faults(bad).is_empty(), "{bad}");
        }
    }
}
