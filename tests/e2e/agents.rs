//! Complete agent lists: the accounts step waits while fewer names than declared were given,
//! unless ops accept the smaller number; names can be added until the hand-back, and added
//! agents get their accounts.

use repli_core::run::{PlaybookName, RunState};
use repli_core::{CrisisAction, CrisisState, Role, StepState};
use repli_proto::api::{AgentInput, AgentsRequest, AuditQuery, StepsView};
use repli_tests::{StatusCode, TestApp, request, step_state};

fn names(from: u32, to: u32) -> AgentsRequest {
    AgentsRequest {
        agents: (from..=to)
            .map(|i| AgentInput { name: format!("Agent Liste{i}"), service: "Accueil".into() })
            .collect(),
    }
}

fn accounts_step(v: &StepsView) -> &repli_proto::api::StepView {
    v.runs
        .iter()
        .filter(|r| r.playbook == PlaybookName::Activation)
        .flat_map(|r| &r.steps)
        .find(|s| s.step == "accounts")
        .unwrap()
}

fn accounts_made(v: &StepsView) -> usize {
    accounts_step(v).output.as_ref().and_then(|o| o["accounts"].as_array()).map_or(0, Vec::len)
}

#[tokio::test]
async fn a_partial_list_waits_for_its_names_and_added_agents_get_accounts() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.agents = 5;
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    app.dgs.set_agents(id, &names(1, 2)).await.unwrap();
    app.activate(&c.id).await;
    // The accounts step waits, says why, and spends no attempt.
    let v = app
        .wait_steps(&c.id, "the accounts step to wait", |v| {
            accounts_step(v).last_error.as_deref().is_some_and(|e| e.contains("2 nom(s) sur 5 agent(s)"))
        })
        .await;
    let s = accounts_step(&v);
    assert_eq!((s.state, s.attempts), (StepState::Pending, 0), "{s:?}");
    let view = app.dgs.crisis(id).await.unwrap();
    assert_eq!((view.agents, view.agents_named, view.agents_accepted), (5, 2, false));
    assert_ne!(view.state, CrisisState::Ready);
    // A DGS cannot accept the smaller number; nothing hostile goes in.
    assert_eq!(app.dgs.accept_agents(id).await.status_code(), 403);
    let bidi = AgentsRequest { agents: vec![AgentInput { name: "Anne\u{202E}nitraM".into(), service: "A".into() }] };
    assert_eq!(app.dgs.add_agents(id, &bidi).await.status_code(), 422);
    assert_eq!(app.dgs.add_agents(id, &AgentsRequest { agents: vec![] }).await.status_code(), 422);
    assert_eq!(app.dgs.add_agents(id, &names(1000, 1500)).await.status_code(), 422, "501 names at once");
    assert_eq!(app.ops.agents(id).await.unwrap().len(), 2, "nothing added by a refused list");

    // The commune completes its list: the accounts are made for all five.
    app.dgs.add_agents(id, &names(3, 5)).await.unwrap();
    app.make_ready(&c.id).await;
    assert_eq!(accounts_made(&app.ops.steps(id).await.unwrap()), 5);

    // A name added to a ready kit: its account is made, the others are kept.
    assert_eq!(app.dgs.set_agents(id, &names(1, 6)).await.status_code(), 409);
    let list = app.dgs.add_agents(id, &names(6, 6)).await.unwrap();
    assert_eq!(list.len(), 6);
    let v = app
        .wait_steps(&c.id, "the new account", |v| {
            accounts_made(v) == 6
                && v.runs.iter().all(|r| r.state == RunState::Succeeded)
                && step_state(v, "activation", "team") == Some(StepState::Succeeded)
        })
        .await;
    let accounts = accounts_step(&v).output.clone().unwrap();
    let created: Vec<bool> =
        accounts["accounts"].as_array().unwrap().iter().map(|a| a["created"].as_bool().unwrap()).collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "only the new agent's account is new: {accounts}");
    assert_eq!(app.ops.crisis(id).await.unwrap().state, CrisisState::Ready);
    let q = AuditQuery { crisis: Some(id.into()), action: Some("engine.step.reopened".into()), ..Default::default() };
    assert_eq!(app.auditor.audit_entries(&q).await.unwrap().entries.len(), 2, "accounts and team reopened");

    // Parallel additions lose nothing.
    let adds = (0..8).map(|i| {
        let dgs = &app.dgs;
        async move { dgs.add_agents(id, &names(100 + i, 100 + i)).await }
    });
    for r in futures_util::future::join_all(adds).await {
        r.unwrap();
    }
    assert_eq!(app.ops.crisis(id).await.unwrap().agents_named, 14);
    assert_eq!(app.ops.agents(id).await.unwrap().len(), 14);

    // Once the hand-back opens, the list is closed.
    app.ops.act(&c.id, CrisisAction::StartHandback, Some("fin")).await.unwrap();
    let e = app.dgs.add_agents(id, &names(50, 50)).await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 409);
    assert!(e.problem().unwrap().detail.contains("ne peut plus changer"));
}

#[tokio::test]
async fn ops_may_accept_a_smaller_list_once() {
    let app = TestApp::spawn().await;
    let mut r = request("13005");
    r.agents = 4;
    let c = app.dgs.request_crisis(&r, None).await.unwrap();
    let id = c.id.as_str();
    // Nothing to accept before a name is given.
    assert_eq!(app.ops.accept_agents(id).await.status_code(), 409);
    app.dgs.set_agents(id, &names(1, 1)).await.unwrap();
    app.activate(&c.id).await;
    app.wait_steps(&c.id, "the accounts step to wait", |v| {
        accounts_step(v).last_error.as_deref().is_some_and(|e| e.contains("1 nom(s) sur 4"))
    })
    .await;
    let view = app.ops.accept_agents(id).await.unwrap();
    assert!(view.agents_accepted);
    assert_eq!(app.ops.accept_agents(id).await.status_code(), 409);
    app.make_ready(&c.id).await;
    assert_eq!(accounts_made(&app.ops.steps(id).await.unwrap()), 1);
    let q = AuditQuery { crisis: Some(id.into()), action: Some("crisis.agents.accepted".into()), ..Default::default() };
    let e = app.auditor.audit_entries(&q).await.unwrap().entries;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].actor_role, Role::Ops.as_str());
}
