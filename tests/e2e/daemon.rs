//! The real `replid` and `repli` processes: configuration, graceful shutdown, the CLI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use repli_tests::workspace_bin;

#[test]
fn replid_prints_a_valid_example_config() {
    let out = Command::new(workspace_bin("replid")).args(["config", "example"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("version = 1"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("replid.toml");
    std::fs::write(&p, &text).unwrap();
    let check =
        Command::new(workspace_bin("replid")).arg("--config").arg(&p).args(["config", "check"]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    std::fs::write(&p, text.replace("version = 1", "version = 1\nbogus = true")).unwrap();
    let bad = Command::new(workspace_bin("replid")).arg("--config").arg(&p).args(["config", "check"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bogus"));
}

/// Starts replid on a free port, creates a user with `replid user add`, drives it with `repli`,
/// then stops it with SIGTERM and expects a clean exit.
#[test]
fn replid_serves_the_cli_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("repli.db");
    let env = [("REPLI_DATABASE__PATH", db.to_str().unwrap()), ("REPLI_SERVER__LISTEN", "127.0.0.1:0")];

    let add = Command::new(workspace_bin("replid"))
        .envs(env)
        .args(["user", "add", "--role", "ops", "--name", "Astreinte"])
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let token = String::from_utf8(add.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("rpl_"));

    let mut child =
        Command::new(workspace_bin("replid")).envs(env).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines.next().expect("replid exited before listening").unwrap();
        if let Some(u) = line.strip_prefix("replid listening on ") {
            break u.to_owned();
        }
    };
    // Keep draining stderr so replid never blocks on a full pipe; collect the log.
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));

    let repli = |args: &[&str]| {
        Command::new(workspace_bin("repli"))
            .env("REPLI_SERVER", &url)
            .env("REPLI_TOKEN", &token)
            .args(args)
            .output()
            .unwrap()
    };
    let out = repli(&[
        "crisis",
        "request",
        "--commune",
        "13005",
        "--contact-name",
        "Anne",
        "--contact-phone",
        "0612345678",
        "--agents",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "13005-2026-001".replace("2026", &v["id"].as_str().unwrap()[6..10]));
    let id = v["id"].as_str().unwrap().to_owned();
    let out = repli(&["crisis", "activate", &id]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("activé"));
    let out = repli(&["handback", "close", &id]);
    assert!(!out.status.success(), "close during activation must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("« clôturer » impossible")
            && !err.contains("(activated)")
            && (err.contains("activé") || err.contains("préparation")),
        "{err}"
    );
    // Cancelling a kit whose provisioning began asks first: without a terminal and without
    // --yes, nothing is done, and the consequences are named.
    let out = Command::new(workspace_bin("repli"))
        .env("REPLI_SERVER", &url)
        .env("REPLI_TOKEN", &token)
        .args(["crisis", "cancel", &id, "--reason", "fausse alerte"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Annuler le kit en cours de préparation ?") && err.contains("--yes"), "{err}");
    let out = repli(&["crisis", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v["state"], "cancelled", "nothing was done");
    // The credential sheets never overwrite a file.
    let existing = dir.path().join("fiches.html");
    std::fs::write(&existing, "à garder").unwrap();
    let out = repli(&["crisis", "sheets", &id, "--out", existing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ne doit pas exister"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "à garder");
    let out = repli(&["communes", "show", "13055", "--json"]);
    let marseille: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(marseille["convention"].is_null());

    // The equipment pool through the CLI.
    let planted = dir.path().join("planted.csv");
    std::fs::write(
        &planted,
        "asset_tag,serial,kind,model,imei,iccid,msisdn,apn,location\nL-1,FICTIF-Z1,laptop,P,,,,,\nL-2,FICTIF-Z1,laptop,P,,,,,\nT-1,FICTIF-Z2,tablet,T,,,,,\nP-1,FICTIF-Z3,phone,S,490154203237519,,,,\nS-1,FICTIF-Z4,sim,S,,89331503190000000013,,,\n",
    )
    .unwrap();
    let out = repli(&["inventory", "import", planted.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in ["planted.csv:3:", "planted.csv:4:", "planted.csv:5:", "planted.csv:6:"] {
        assert!(err.contains(line), "{err}");
    }
    let pool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/pool.csv");
    let out = repli(&["inventory", "import", pool.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("270"));
    // The activated crisis was waiting for 3 laptops: served by the import.
    let out = repli(&["inventory", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let laptops = status.as_array().unwrap().iter().find(|l| l["kind"] == "laptop").unwrap().clone();
    assert_eq!((laptops["available"].as_i64(), laptops["reserved"].as_i64()), (Some(117), Some(3)));
    let out = repli(&["inventory", "export", "--csv"]);
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(csv.contains("FICTIF-LAP-0001") && csv.contains(",'+33639980001,"), "MSISDN cells are formula-safe");
    let out = repli(&["inventory", "show", "AMP-LAP-0001"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("réservé") && shown.contains(&id), "{shown}");
    let agents_csv = dir.path().join("agents.csv");
    std::fs::write(&agents_csv, "name,service\nAnne Martin,État civil\n").unwrap();
    assert!(repli(&["crisis", "agents", &id, "--set", agents_csv.to_str().unwrap()]).status.success());
    let out = repli(&["crisis", "agents", &id, "--json"]);
    let agents: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent = agents[0]["id"].as_i64().unwrap().to_string();
    let out = repli(&["loan", "add", &id, "--serial", "FICTIF-LAP-0001", "--agent", &agent]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = repli(&["loan", "list", &id, "--csv"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Anne Martin"));
    let scan = dir.path().join("scan.txt");
    std::fs::write(&scan, "AMP-LAP-0001\nINCONNU-42\n").unwrap();
    let out = repli(&["handback", "checkin", &id, "--scan", scan.to_str().unwrap()]);
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(summary.contains("Attendus : 1 — rendus : 1 — encore dehors : 0 — inconnus : 1"), "{summary}");
    assert!(summary.contains("INCONNU-42"));

    // Accounts through the CLI, as the admin.
    let admin = String::from_utf8(
        Command::new(workspace_bin("replid"))
            .envs(env)
            .args(["user", "add", "--role", "admin", "--name", "Admin"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let as_admin = |args: &[&str]| {
        Command::new(workspace_bin("repli"))
            .env("REPLI_SERVER", &url)
            .env("REPLI_TOKEN", &admin)
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_admin(&["user", "add", "--role", "dgs", "--commune", "13005", "--name", "DGS Aubagne", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dgs_token = created["token"]["token"].as_str().unwrap().to_owned();
    let dgs_id = created["user"]["id"].as_i64().unwrap().to_string();
    let out = as_admin(&["user", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listed.contains("DGS Aubagne") && !listed.contains(&dgs_token));
    let out = as_admin(&["user", "add", "--role", "dgs", "--name", "Sans commune"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("commune"));
    let out = as_admin(&["token", "revoke", &dgs_id]);
    assert!(out.status.success());
    let out = Command::new(workspace_bin("repli"))
        .env("REPLI_SERVER", &url)
        .env("REPLI_TOKEN", &dgs_token)
        .arg("whoami")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a revoked token still works");

    // Probes leave no line at the default level; a refused request leaves one, carrying the
    // caller's request id, which the problem document and the response header repeat.
    let addr = url.trim_start_matches("http://").to_owned();
    for _ in 0..300 {
        assert!(http_get(&addr, "/healthz", None).0.starts_with("HTTP/1.1 200"));
    }
    let (head, body) = http_get(&addr, "/api/v1/crises", Some("essai-42"));
    assert!(head.starts_with("HTTP/1.1 401") && head.contains("x-request-id: essai-42"), "{head}");
    assert!(body.contains(r#""request_id":"essai-42""#), "{body}");
    let (head, _) = http_get(&addr, "/healthz", Some("<script>alert(1)</script>"));
    let echoed = head.lines().find_map(|l| l.strip_prefix("x-request-id: ")).unwrap_or_default().to_owned();
    assert!(echoed.len() == 16 && echoed.bytes().all(|b| b.is_ascii_hexdigit()), "a hostile id is replaced: {head}");

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(waited < Duration::from_secs(20), "replid did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    };
    assert!(status.success(), "replid exit status {status}");
    let log = log.join().unwrap();
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(!log.contains(&token), "the token leaked into the log");
    assert!(log.lines().any(|l| l.contains("request_id=essai-42") && l.contains("code=unauthenticated")), "{log}");
    let probes = log.lines().filter(|l| l.contains("/healthz")).count();
    assert!(probes < 3, "{probes} log lines for 300 probes");
    assert!(!log.contains("<script>"), "a hostile request id reached the log");
}

/// A bare HTTP/1.1 GET (no client library in a blocking test): the head, then the body.
fn http_get(addr: &str, path: &str, request_id: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let id = request_id.map(|i| format!("X-Request-Id: {i}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{id}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.to_ascii_lowercase().replace("http/1.1", "HTTP/1.1"), body.to_owned())
}

#[test]
fn repli_prints_completions_and_refuses_missing_tokens() {
    let out = Command::new(workspace_bin("repli")).args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("repli"));
    let out = Command::new(workspace_bin("repli"))
        .env_remove("REPLI_TOKEN")
        .env("REPLI_SERVER", "http://127.0.0.1:9")
        .args(["crisis", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("jeton"));
}

#[test]
fn replid_init_creates_the_first_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("repli.db");
    let init = || {
        Command::new(workspace_bin("replid"))
            .env("REPLI_DATABASE__PATH", db.to_str().unwrap())
            .args(["init", "--admin-name", "Admin métropole"])
            .output()
            .unwrap()
    };
    let first = init();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let token = String::from_utf8(first.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("rpl_") && token.len() == 68);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(err.contains("public key"), "{err}");
    let key = dir.path().join("repli.db.audit-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let second = init();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already initialised"));
}

#[test]
fn repli_playbook_check_names_every_template_error() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ok =
        Command::new(workspace_bin("repli")).args(["playbook", "check"]).arg(repo.join("playbooks")).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("templates");
    std::fs::create_dir(&t).unwrap();
    std::fs::write(t.join("affiche.hbs"), "x").unwrap();
    std::fs::write(t.join("bon-de-pret.hbs"), "a\nb {{#if x}}{{/each}}\n").unwrap();
    std::fs::write(t.join("pv-restitution.hbs"), "{{#> page title=\"x\"}}\n{{nope}}{{/page}}").unwrap();
    let out = Command::new(workspace_bin("repli")).args(["playbook", "check"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("affiche.hbs:1:1") && text.contains("bon-de-pret.hbs:2:"), "{text}");
}
