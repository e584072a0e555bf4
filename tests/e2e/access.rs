//! Who may do what: tokens, roles, and a DGS scoped to their own commune.

use repli_core::{CrisisAction, Role};
use repli_proto::Client;
use repli_proto::api::CrisisQuery;
use repli_tests::{TestApp, request};

fn status(r: Result<impl std::fmt::Debug, repli_proto::ClientError>) -> u16 {
    r.unwrap_err().status().unwrap().as_u16()
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let app = TestApp::spawn().await;
    assert_eq!(app.anon.health().await.unwrap().status, "ok");
    assert_eq!(status(app.anon.communes().await), 401);
    let forged = app.anon.with_token(format!("rpl_{}", "0".repeat(64)));
    assert_eq!(status(forged.communes().await), 401);
    let e = app
        .anon
        .with_token("x".repeat(10_000))
        .me()
        .await
        .unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 401);
    assert!(
        e.problem()
            .unwrap()
            .detail
            .contains("Authentification requise")
    );
    let me = app.dgs.me().await.unwrap();
    assert_eq!(
        (me.role, me.commune.unwrap().as_str()),
        (Role::Dgs, "13005")
    );
}

#[tokio::test]
async fn a_dgs_sees_and_touches_only_their_commune() {
    let app = TestApp::spawn().await;
    let aix: Client = app.client(Role::Dgs, Some("13001")).await;
    let c = app
        .dgs
        .request_crisis(&request("13005"), None)
        .await
        .unwrap();

    // Another commune's crisis does not exist for them (no existence leak).
    let e = aix.crisis(c.id.as_str()).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 404);
    assert_eq!(e.problem().unwrap().code, "crisis_not_found");
    assert_eq!(
        status(aix.act(&c.id, CrisisAction::Cancel, Some("x")).await),
        404
    );
    assert_eq!(
        status(
            aix.crises(&CrisisQuery {
                commune: Some(c.commune.clone()),
                ..Default::default()
            })
            .await
        ),
        403
    );
    assert!(
        aix.crises(&CrisisQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        status(aix.request_crisis(&request("13005"), None).await),
        403
    );
    assert_eq!(status(aix.commune("13005").await), 404);
    assert_eq!(aix.communes().await.unwrap().len(), 1);

    // Their own: readable, cancellable, not operable.
    assert_eq!(
        app.dgs.crises(&CrisisQuery::default()).await.unwrap().len(),
        1
    );
    assert_eq!(
        status(app.dgs.act(&c.id, CrisisAction::Activate, None).await),
        403
    );
    assert_eq!(status(app.dgs.audit_verify().await), 403);
}

#[tokio::test]
async fn auditors_read_everything_and_change_nothing() {
    let app = TestApp::spawn().await;
    let c = app
        .dgs
        .request_crisis(&request("13005"), None)
        .await
        .unwrap();
    assert_eq!(app.auditor.crisis(c.id.as_str()).await.unwrap().id, c.id);
    assert!(app.auditor.audit_verify().await.unwrap().verified);
    assert_eq!(
        status(app.auditor.request_crisis(&request("13001"), None).await),
        403
    );
    for a in CrisisAction::ALL {
        assert_eq!(
            status(app.auditor.act(&c.id, a, Some("x")).await),
            403,
            "{a}"
        );
    }
    let admin = app.client(Role::Admin, None).await;
    assert_eq!(
        status(admin.act(&c.id, CrisisAction::Activate, None).await),
        403
    );
}
