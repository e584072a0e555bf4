//! What the Debian package and the container image rely on, checked on the real binary:
//! replid tells systemd it is ready (sd_notify) once it serves and that it stops on SIGTERM,
//! and `replid probe` is a health check (0 when /readyz answers 200, 1 otherwise). The package
//! itself is built and inspected by `scripts/package-check` (CI: `REPLI_PACKAGE_TESTS=required`);
//! the Dockerfile is checked here against the repository it names.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use repli_tests::workspace_bin;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replid_tells_systemd_it_is_ready_and_probe_checks_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("replid.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\npath = \"{}\"\n",
            dir.path().join("repli.db").display()
        ),
    )
    .unwrap();
    let replid = workspace_bin("replid");
    let probe = || std::process::Command::new(&replid).arg("--config").arg(&config).arg("probe").output().unwrap();
    // Nothing listens yet: the probe fails, saying why.
    let out = probe();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"), "{out:?}");

    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut child = tokio::process::Command::new(&replid)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::task::block_in_place(|| socket.recv(&mut buf)).expect("READY=1 within a minute");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving: the probe passes at once.
    let out = probe();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ready");
    // An explicit address works too; a wrong one fails.
    let out = std::process::Command::new(&replid)
        .args(["probe", "--url", &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(&replid).args(["probe", "--url", "http://127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success());
    // SIGTERM: STOPPING=1, then a clean exit.
    let pid = child.id().unwrap();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let n = tokio::task::block_in_place(|| socket.recv(&mut buf)).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

/// No Docker engine runs on the project's machines: the image cannot be built here. What can
/// be checked is that the Dockerfile and the compose example name what exists: the binaries
/// and packages it builds, the files it copies, the port and the probe it uses.
#[test]
fn the_container_files_name_what_exists() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let compose = std::fs::read_to_string(repo().join("packaging/docker/compose.yaml")).unwrap();
    let config = std::fs::read_to_string(repo().join("packaging/docker/replid.toml")).unwrap();
    // Multi-stage, non-root, a volume for the state, the health check on /readyz.
    assert!(dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2);
    assert!(dockerfile.contains("USER 10001:10001"), "non-root");
    assert!(dockerfile.contains("VOLUME [\"/var/lib/repli\"]"));
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("replid\", \"probe\""));
    assert!(dockerfile.contains("EXPOSE 8640"));
    // Every COPY source from the build context exists.
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            if !src.starts_with("--") {
                assert!(repo().join(src).exists(), "{line}: {src} is not in the repository");
            }
        }
    }
    // The packages it builds are the workspace's.
    for p in ["replid", "repli-cli"] {
        assert!(dockerfile.contains(&format!("-p {p}")), "{p}");
        assert!(repo().join("crates").join(p).join("Cargo.toml").exists());
    }
    // The container's configuration parses, listens on the exposed port, keeps state in the volume.
    let c = replid::config::Config::load(Some(&repo().join("packaging/docker/replid.toml")), Vec::new()).unwrap();
    assert_eq!(c.server.listen.port(), 8640);
    assert!(c.database.path.starts_with("/var/lib/repli"), "{config}");
    // The relay shares replid's network namespace, so it is on loopback, as plain SMTP must be.
    let smtp = c.notify.smtp.as_ref().unwrap();
    assert_eq!((smtp.host.as_str(), smtp.port), ("127.0.0.1", 25));
    // Compose: read-only root, the volume, the relay in replid's namespace, the port.
    assert!(compose.contains("read_only: true"));
    assert!(compose.contains("repli-data:/var/lib/repli"));
    assert!(compose.contains("relay:") && compose.contains("network_mode: \"service:replid\""));
    assert!(compose.contains("127.0.0.1:8640:8640"));
    assert!(compose.contains("dockerfile: Dockerfile") && compose.contains("context: ../.."));
}
