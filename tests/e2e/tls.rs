//! HTTPS through rustls when a certificate is configured.

use std::sync::Arc;

use repli_core::Role;
use repli_proto::Client;
use replid::Daemon;
use replid::clock::ManualClock;
use replid::config::{Config, TlsConfig};
use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn replid_serves_https_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();

    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.tls = Some(TlsConfig { cert_file: cert.clone(), key_file: key.clone() });
    config.database.path = dir.path().join("repli.db");
    let clock = Arc::new(ManualClock::new(repli_tests::MONDAY_8AM.parse().unwrap()));
    let daemon = Daemon::start(&config, clock.clone()).await.unwrap();
    assert!(daemon.url().starts_with("https://localhost:"));
    assert!(daemon.state().secure_cookies);

    let pem = std::fs::read(&cert).unwrap();
    let req =
        repli_proto::api::NewUserRequest { name: "Ops".into(), role: Role::Ops, commune: None, expires_days: None };
    let token = repli_app::accounts::create(daemon.state(), replid::By::System, &req).await.unwrap().token.token;
    let c = Client::with_ca(&daemon.url(), Some(token.clone()), Some(&pem)).unwrap();
    assert_eq!(c.health().await.unwrap().status, "ok");
    assert_eq!(c.me().await.unwrap().role, Role::Ops);

    // Without trusting the certificate, or in plain HTTP, nothing gets through.
    assert!(Client::new(&daemon.url(), Some(token)).unwrap().health().await.is_err());
    let plain = format!("http://{}", daemon.addr());
    assert!(Client::new(&plain, None).unwrap().health().await.is_err());
    // The daemon survives garbage on the TLS port and keeps serving.
    use tokio::io::AsyncWriteExt;
    let mut junk = tokio::net::TcpStream::connect(daemon.addr()).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    drop(junk);
    assert_eq!(c.health().await.unwrap().status, "ok");

    // Session cookies are Secure under TLS.
    let r = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
        .get(format!("{}/connexion", daemon.url()))
        .send()
        .await
        .unwrap();
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    // Over TLS: HSTS and the usual headers, on pages, the API and refusals alike.
    let https =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap();
    let long = "a".repeat(10_000);
    for path in ["/connexion", "/api/v1/me", "/healthz", "/nulle-part", &format!("/api/v1/crises?c={long}")] {
        let r = https.get(format!("{}{path}", daemon.url())).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["strict-transport-security"], replid::HSTS, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin", "{path}");
        assert!(h["permissions-policy"].to_str().unwrap().contains("camera=()"), "{path}");
        assert!(h.contains_key("content-security-policy"), "{path}");
    }
    // hyper's own refusal (a target over 64 KiB, sent raw through rustls) is replaced too.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let tls_cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(daemon.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls_cfg)).connect(name, tcp).await.unwrap();
    let huge = "a".repeat(70_000);
    let (status, head, body) = repli_tests::raw_http(stream, &format!("GET /api/v1/crises?c={huge}"), "").await;
    assert_eq!(status, 414, "{head}");
    assert!(head.contains(&format!("strict-transport-security: {}", replid::HSTS.to_ascii_lowercase())), "{head}");
    assert!(body.contains("uri_too_long"), "{body}");
    daemon.shutdown().await.unwrap();

    // A missing or bad certificate stops the start, with the file named.
    config.server.tls = Some(TlsConfig { cert_file: dir.path().join("none.pem"), key_file: key });
    let e = Daemon::start(&config, clock).await.unwrap_err();
    assert!(e.to_string().contains("none.pem"), "{e}");
}
