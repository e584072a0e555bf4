//! The route table: every route of the API and the pages with its access rule, and the layer
//! that enforces it. Handlers live in their own modules and never import one another; they
//! parse, call one operation of `repli-app`, and render.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use repli_app::AppError;
use repli_app::metrics::SignInFailure;
use repli_core::Checkpoint;
use repli_core::Permission;
use repli_core::audit::AuditBundle;
use repli_proto::ProblemCode;
use repli_proto::api::{
    ActionRequest, AgentView, AgentsRequest, AuditPage, AuditQuery, AuditVerifyView, CampaignView, CheckinRequest,
    CommuneView, CreatedUser, CrisisQuery, CrisisRequest, CrisisView, DnsCheckView, ExerciseRequest, ExerciseView,
    Health, ImportRequest, ImportView, InventoryStatusLine, ItemDetail, ItemView, LegalDoneRequest, LegalFactsRequest,
    LendRequest, LoanView, LogEntryRequest, LogEntryView, Me, NewUserRequest, NotificationView, PasswordRequest,
    PreflightView, Readiness, ReissueRequest, RetexView, RevokeView, ServiceRequest, SlaReportLine, StepActionRequest,
    StepView, StepsView, SuspendRequest, TaskDoneRequest, TaskView, TokenRequest, TokenView, UserView, WipeRequest,
    WriteOffRequest,
};

use crate::auth::Authed;
use crate::error::ApiError;
pub use crate::spec::{Access, RouteSpec};
use crate::spec::{Answer, Doc};
use crate::{
    AppState, accounts, actions, crises, documents, exercises, inventory, journal, operate, pages, sheets, signin,
    steps, tenant, users, web,
};

/// Every route with its access rule and its documentation: the router and the OpenAPI
/// document are both built from this table, so a route cannot exist without a policy entry
/// or without its entry in the document.
fn table() -> Vec<(Method, &'static str, Access, MethodRouter<AppState>, Doc)> {
    use Access::{Page, Public, Requires};
    use Permission as P;
    use ProblemCode as C;
    vec![
        (Method::GET, "/healthz", Public, get(health), Doc::api::<Health>("Liveness: the process answers")),
        (
            Method::GET,
            "/readyz",
            Public,
            get(ready),
            Doc::api::<Readiness>(
                "Readiness: database writable, engine running, last Microsoft 365 preflight not failed",
            )
            .may_be_unavailable(),
        ),
        (
            Method::GET,
            "/metrics",
            Requires(P::ReadMetrics),
            get(metrics),
            Doc::answering("Supervision metrics (Prometheus / OpenMetrics text)", Answer::Metrics),
        ),
        (
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            get(openapi_json),
            Doc::answering("This document (OpenAPI 3.1)", Answer::Object),
        ),
        (
            Method::GET,
            "/static/repli.css",
            Public,
            get(signin::stylesheet),
            Doc::answering("The web pages' stylesheet", Answer::Css),
        ),
        (Method::GET, "/connexion", Public, get(signin::show_login), Doc::page("Sign-in page")),
        (Method::GET, "/accessibilite", Public, get(signin::accessibility), Doc::page("The accessibility statement")),
        (
            Method::GET,
            "/mot-de-passe/{secret}",
            Public,
            get(accounts::choose_form),
            Doc::page("A one-time password link: the form to choose one's web password"),
        ),
        (
            Method::POST,
            "/mot-de-passe/{secret}",
            Public,
            post(accounts::choose),
            Doc::page("Set one's web password through a one-time link (the link is then spent)"),
        ),
        (Method::GET, "/comptes", Page(P::ManageUsers), get(accounts::page), Doc::page("Accounts (admins)")),
        (Method::POST, "/comptes", Page(P::ManageUsers), post(accounts::create), Doc::page("Create an account")),
        (
            Method::POST,
            "/comptes/{uid}/lien",
            Page(P::ManageUsers),
            post(accounts::link),
            Doc::page("Create a one-time link for the person to choose their web password"),
        ),
        (
            Method::POST,
            "/comptes/{uid}/revocation",
            Page(P::ManageUsers),
            post(accounts::revoke),
            Doc::form("Revoke every token and session of an account (a ticked confirmation)"),
        ),
        (Method::POST, "/connexion", Public, post(signin::login), Doc::form("Sign in with a login and password")),
        (
            Method::GET,
            "/",
            Page(P::OwnAccount),
            get(pages::home),
            Doc::page("Home: the caller's crises, tasks and dashboard"),
        ),
        (
            Method::GET,
            "/m365",
            Page(P::OperateCrisis),
            get(tenant::page),
            Doc::page("The Microsoft 365 tenant's preflight"),
        ),
        (Method::POST, "/m365", Page(P::OperateCrisis), post(tenant::rerun), Doc::form("Run the preflight again")),
        (
            Method::GET,
            "/exercices",
            Page(P::ReadExercises),
            get(exercises::page),
            Doc::page("The exercises, and the form that starts one from a scenario"),
        ),
        (
            Method::POST,
            "/exercices",
            Page(P::RunExercises),
            post(exercises::start_form),
            Doc::form("Start an exercise"),
        ),
        (Method::POST, "/deconnexion", Page(P::OwnAccount), post(signin::logout), Doc::form("Sign out")),
        (Method::GET, "/demande", Page(P::RequestCrisis), get(pages::request_form), Doc::page("The kit request form")),
        (Method::POST, "/demande", Page(P::RequestCrisis), post(pages::request_submit), Doc::form("Request a kit")),
        (Method::GET, "/crises/{id}", Page(P::ReadCrises), get(pages::crisis), Doc::page("A crisis")),
        (
            Method::GET,
            "/crises/{id}/retex",
            Page(P::ReadSlaReport),
            get(operate::retex),
            Doc::page("The after-action report (RETEX), for print"),
        ),
        (
            Method::GET,
            "/crises/{id}/demande-enregistree",
            Page(P::ReadCrises),
            get(pages::request_recorded),
            Doc::page("What happens after a request"),
        ),
        (
            Method::POST,
            "/crises/{id}/action",
            Page(P::OperateCrisis),
            post(pages::crisis_action),
            Doc::form("A crisis transition"),
        ),
        (
            Method::GET,
            "/crises/{id}/annulation",
            Page(P::CancelCrisis),
            get(actions::cancel_page),
            Doc::page("Cancelling a crisis: its consequences, and the confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/annulation",
            Page(P::CancelCrisis),
            post(actions::cancel),
            Doc::form("Cancel a crisis"),
        ),
        (
            Method::GET,
            "/crises/{id}/restitution",
            Page(P::OperateCrisis),
            get(actions::handback_page),
            Doc::page("Starting the hand-back: its consequences, and the confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/restitution",
            Page(P::OperateCrisis),
            post(actions::handback),
            Doc::form("Start the hand-back"),
        ),
        (
            Method::GET,
            "/crises/{id}/etapes/{step}/ignorer",
            Page(P::OperateCrisis),
            get(actions::skip_page),
            Doc::page("Skipping a step: its consequences, and the confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/etapes/{step}/ignorer",
            Page(P::OperateCrisis),
            post(actions::skip),
            Doc::form("Skip a step"),
        ),
        (
            Method::POST,
            "/crises/{id}/etapes/{step}/relancer",
            Page(P::OperateCrisis),
            post(actions::retry),
            Doc::form("Retry a failed step"),
        ),
        (
            Method::GET,
            "/crises/{id}/fiches-identifiants",
            Page(P::OperateCrisis),
            get(sheets::page),
            Doc::page("Credential sheets"),
        ),
        (
            Method::POST,
            "/crises/{id}/fiches-identifiants",
            Page(P::OperateCrisis),
            post(sheets::issue),
            Doc::answering("Issue the credential sheets (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/crises/{id}/fiches-identifiants/reinitialiser",
            Page(P::OperateCrisis),
            get(sheets::reissue_page),
            Doc::page("Reissuing the credential sheets: consequences and confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/fiches-identifiants/reinitialiser",
            Page(P::OperateCrisis),
            post(sheets::reissue),
            Doc::answering("Reissue the credential sheets (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/crises/{id}/pertes/{serial}",
            Page(P::ManageInventory),
            get(actions::write_off_page),
            Doc::page("Writing an item off: consequences and confirmation"),
        ),
        (
            Method::POST,
            "/crises/{id}/pertes/{serial}",
            Page(P::ManageInventory),
            post(actions::write_off),
            Doc::form("Write an item off"),
        ),
        (
            Method::POST,
            "/crises/{id}/main-courante",
            Page(P::WriteCrisisLog),
            post(pages::add_log),
            Doc::form("Add a main-courante entry"),
        ),
        (
            Method::POST,
            "/crises/{id}/agents",
            Page(P::WriteCrisisLog),
            post(pages::set_agents),
            Doc::form("Name the agents"),
        ),
        (
            Method::POST,
            "/crises/{id}/agents/effectif",
            Page(P::OperateCrisis),
            post(pages::accept_agents),
            Doc::form("Accept the named agents as the whole list"),
        ),
        (
            Method::POST,
            "/crises/{id}/taches/{step}",
            Page(P::OperateCrisis),
            post(pages::confirm_task),
            Doc::form("Confirm a manual task"),
        ),
        (
            Method::POST,
            "/crises/{id}/retour",
            Page(P::ManageInventory),
            post(pages::check_in),
            Doc::form("Check an item in at the hand-back"),
        ),
        (
            Method::POST,
            "/crises/{id}/prets",
            Page(P::ManageInventory),
            post(operate::lend),
            Doc::form("Lend items to named agents or to the commune, all or none"),
        ),
        (
            Method::POST,
            "/crises/{id}/delai",
            Page(P::OperateCrisis),
            post(operate::sla_clock),
            Doc::form("Suspend or resume the SLA clock"),
        ),
        (
            Method::POST,
            "/crises/{id}/echeances",
            Page(P::WriteCrisisLog),
            post(operate::legal_facts),
            Doc::form("Record the facts that start the legal clocks"),
        ),
        (
            Method::POST,
            "/crises/{id}/echeances/{kind}/faite",
            Page(P::WriteCrisisLog),
            post(operate::legal_done),
            Doc::form("Record a legal obligation as done"),
        ),
        (
            Method::POST,
            "/inventaire/{serial}/effacement",
            Page(P::ManageInventory),
            post(operate::wipe),
            Doc::form("Record an item's wipe and its certificate"),
        ),
        (
            Method::POST,
            "/inventaire/{serial}/service",
            Page(P::ManageInventory),
            post(operate::service),
            Doc::form("Maintenance, back to service, start of a wipe, retirement"),
        ),
        (Method::GET, "/taches", Page(P::OperateCrisis), get(pages::tasks), Doc::page("Manual tasks waiting for ops")),
        (
            Method::GET,
            "/notifications",
            Page(P::OperateCrisis),
            get(operate::notifications),
            Doc::page("Notifications: to whom, delivered or failed"),
        ),
        (
            Method::POST,
            "/notifications/{nid}/renvoyer",
            Page(P::OperateCrisis),
            post(operate::retry_notification),
            Doc::form("Send a failed notification again"),
        ),
        (Method::GET, "/inventaire", Page(P::ReadInventory), get(pages::inventory), Doc::page("The equipment pool")),
        (
            Method::POST,
            "/inventaire/import",
            Page(P::ManageInventory),
            post(operate::import_pool),
            Doc::page("Check a pool CSV file (every refused line), then import it, all or nothing"),
        ),
        (
            Method::GET,
            "/inventaire/export",
            Page(P::ReadInventory),
            get(operate::export_pool),
            Doc::answering("The pool as CSV, in the import's columns (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/inventaire/{serial}",
            Page(P::ReadInventory),
            get(pages::item),
            Doc::page("An item and its history"),
        ),
        (Method::GET, "/journal", Page(P::ReadAudit), get(pages::journal), Doc::page("The audit log")),
        (
            Method::GET,
            "/journal/export",
            Page(P::ReadAudit),
            get(pages::journal_export),
            Doc::answering("The audit log as CSV or a bundle (a download)", Answer::Html),
        ),
        (
            Method::GET,
            "/rapport-sla",
            Page(P::ReadSlaReport),
            get(pages::sla_report),
            Doc::page("The SLA compliance report"),
        ),
        (Method::GET, "/api/v1/me", Requires(P::OwnAccount), get(me), Doc::api::<Me>("Who the caller is")),
        (
            Method::GET,
            "/api/v1/communes",
            Requires(P::ReadCommunes),
            get(crises::list_communes),
            Doc::list::<CommuneView>("The communes and their conventions"),
        ),
        (
            Method::GET,
            "/api/v1/communes/{insee}",
            Requires(P::ReadCommunes),
            get(crises::get_commune),
            Doc::api::<CommuneView>("A commune").problems(&[C::UnknownCommune]),
        ),
        (
            Method::GET,
            "/api/v1/crises",
            Requires(P::ReadCrises),
            get(crises::list),
            Doc::list::<CrisisView>("Crises (a DGS: their commune's)").query::<CrisisQuery>(),
        ),
        (
            Method::POST,
            "/api/v1/crises",
            Requires(P::RequestCrisis),
            post(crises::create),
            Doc::api::<CrisisView>("Request a kit")
                .body::<CrisisRequest>()
                .beyond_schema(&[
                    "`aware_at` not more than 5 minutes in the future",
                    "the commune has signed the convention (`convention_missing`)",
                ])
                .status(201)
                .also(200)
                .idempotent()
                .problems(&[C::UnknownCommune, C::ConventionMissing, C::OpenCrisisExists]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}",
            Requires(P::ReadCrises),
            get(crises::get),
            Doc::api::<CrisisView>("A crisis, with its history"),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/actions/cancel",
            Requires(P::CancelCrisis),
            post(crises::cancel),
            Doc::api::<CrisisView>("Cancel a crisis that was not provisioned")
                .body::<ActionRequest>()
                .problems(&[C::IllegalTransition, C::ReasonRequired]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/actions/{action}",
            Requires(P::OperateCrisis),
            post(crises::act),
            Doc::api::<CrisisView>("A crisis transition").body::<ActionRequest>().problems(&[
                C::UnknownAction,
                C::IllegalTransition,
                C::ReasonRequired,
                C::ItemsOutstanding,
                C::HandbackInProgress,
                C::ReceptionIncomplete,
            ]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/log",
            Requires(P::ReadCrises),
            get(crises::log),
            Doc::list::<LogEntryView>("The main courante"),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/log",
            Requires(P::WriteCrisisLog),
            post(crises::add_log),
            Doc::api::<LogEntryView>("Add a main-courante entry")
                .body::<LogEntryRequest>()
                .beyond_schema(&["`inject` in an exercise's crisis only"])
                .status(201)
                .problems(&[C::CrisisEnded]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/sla/suspend",
            Requires(P::OperateCrisis),
            post(crises::suspend_sla),
            Doc::api::<CrisisView>("Suspend the SLA clock, with a reason")
                .body::<SuspendRequest>()
                .problems(&[C::SlaConflict, C::ReasonRequired]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/sla/resume",
            Requires(P::OperateCrisis),
            post(crises::resume_sla),
            Doc::api::<CrisisView>("Resume the SLA clock").problems(&[C::SlaConflict]),
        ),
        (
            Method::PUT,
            "/api/v1/crises/{id}/legal",
            Requires(P::WriteCrisisLog),
            put(crises::set_legal_facts),
            Doc::api::<CrisisView>("Record the facts that start the legal clocks")
                .body::<LegalFactsRequest>()
                .beyond_schema(&[
                    "`aware_at` or `personal_data` given, not null",
                    "`aware_at` not more than 5 minutes in the future",
                ])
                .problems(&[C::CrisisEnded]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/legal/{kind}/done",
            Requires(P::WriteCrisisLog),
            post(crises::legal_done),
            Doc::api::<CrisisView>("Record a legal obligation as done")
                .body::<LegalDoneRequest>()
                .beyond_schema(&["`at` not more than 5 minutes in the future"])
                .problems(&[C::UnknownLegalClock, C::CrisisEnded]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/steps",
            Requires(P::ReadCrises),
            get(steps::list),
            Doc::api::<StepsView>("The playbook runs and their steps"),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/dns",
            Requires(P::OperateCrisis),
            get(crises::dns),
            Doc::api::<DnsCheckView>("The crisis zone on each authoritative server, against what was published"),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/steps/{step}/done",
            Requires(P::OperateCrisis),
            post(steps::done),
            Doc::api::<StepView>("Confirm a manual step")
                .body::<TaskDoneRequest>()
                .problems(&[C::UnknownStep, C::StepConflict]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/steps/{step}/retry",
            Requires(P::OperateCrisis),
            post(steps::retry),
            Doc::api::<StepView>("Retry a failed step").body::<StepActionRequest>().problems(&[
                C::UnknownStep,
                C::StepConflict,
                C::ReasonRequired,
            ]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/steps/{step}/skip",
            Requires(P::OperateCrisis),
            post(steps::skip),
            Doc::api::<StepView>("Skip a step").body::<StepActionRequest>().problems(&[
                C::UnknownStep,
                C::StepConflict,
                C::ReasonRequired,
            ]),
        ),
        (
            Method::GET,
            "/api/v1/tasks",
            Requires(P::OperateCrisis),
            get(steps::tasks),
            Doc::list::<TaskView>("Manual steps waiting for ops"),
        ),
        (
            Method::GET,
            "/api/v1/campaign",
            Requires(P::OperateCrisis),
            get(crises::campaign),
            Doc::api::<CampaignView>(
                "Every open crisis together: SLA clocks, the shared stock, the waiting list and its rule, the Graph budget",
            ),
        ),
        (
            Method::GET,
            "/api/v1/exercises",
            Requires(P::ReadExercises),
            get(exercises::list),
            Doc::list::<ExerciseView>("Exercises (drills marked EXERCICE), the most recent first"),
        ),
        (
            Method::POST,
            "/api/v1/exercises",
            Requires(P::RunExercises),
            post(exercises::start),
            Doc::api::<ExerciseView>("Start an exercise: its communes' crises, requested together")
                .body::<ExerciseRequest>()
                .beyond_schema(&[
                    "each commune once",
                    "an inject's `commune` is one of the exercise's",
                    "an inject's `effect` needs the exercise simulator (`[exercise] target = \"simulator\"`)",
                    "the communes have signed the convention (`convention_missing`)",
                ])
                .status(201)
                .problems(&[C::UnknownCommune, C::ConventionMissing, C::OpenCrisisExists]),
        ),
        (
            Method::GET,
            "/api/v1/exercises/{xid}",
            Requires(P::ReadExercises),
            get(exercises::get),
            Doc::api::<ExerciseView>("One exercise, its crises and injects").problems(&[C::ExerciseNotFound]),
        ),
        (
            Method::GET,
            "/api/v1/sla/report",
            Requires(P::ReadSlaReport),
            get(crises::sla_report),
            Doc::list::<SlaReportLine>("The SLA compliance report"),
        ),
        (
            Method::GET,
            "/api/v1/notifications",
            Requires(P::OperateCrisis),
            get(crises::notifications),
            Doc::list::<NotificationView>("Notifications and their delivery"),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/retex",
            Requires(P::ReadSlaReport),
            get(crises::retex),
            Doc::api::<RetexView>(
                "The after-action report (RETEX): each step planned against actual, the longest waits",
            ),
        ),
        (
            Method::POST,
            "/api/v1/notifications/{nid}/retry",
            Requires(P::OperateCrisis),
            post(crises::retry_notification),
            Doc::list::<NotificationView>("Send a failed notification again; answers the queue")
                .problems(&[C::NotificationConflict]),
        ),
        (
            Method::POST,
            "/api/v1/inventory/import",
            Requires(P::ManageInventory),
            post(inventory::import),
            Doc::api::<ImportView>("Import the pool from CSV, all files or none")
                .body::<ImportRequest>()
                .beyond_schema(&["each `csv` is a pool file whose lines parse (`import_refused`, `invalid_fields`)"])
                .problems(&[C::ImportRefused]),
        ),
        (
            Method::GET,
            "/api/v1/inventory",
            Requires(P::ReadInventory),
            get(inventory::status),
            Doc::list::<InventoryStatusLine>("Pool counts by kind"),
        ),
        (
            Method::GET,
            "/api/v1/inventory/items",
            Requires(P::ReadInventory),
            get(inventory::items),
            Doc::list::<ItemView>("Every item"),
        ),
        (
            Method::GET,
            "/api/v1/inventory/items/{serial}",
            Requires(P::ReadInventory),
            get(inventory::item),
            Doc::api::<ItemDetail>("An item and its history").problems(&[C::UnknownItem]),
        ),
        (
            Method::POST,
            "/api/v1/inventory/items/{serial}/wipe",
            Requires(P::ManageInventory),
            post(inventory::wipe),
            Doc::api::<ItemDetail>("Record a wipe and its certificate")
                .body::<WipeRequest>()
                .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::POST,
            "/api/v1/inventory/items/{serial}/service",
            Requires(P::ManageInventory),
            post(inventory::service),
            Doc::api::<ItemDetail>("Move an item in or out of service")
                .body::<ServiceRequest>()
                .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/agents",
            Requires(P::ReadCrises),
            get(inventory::agents),
            Doc::list::<AgentView>("The named agents"),
        ),
        (
            Method::PUT,
            "/api/v1/crises/{id}/agents",
            Requires(P::WriteCrisisLog),
            put(inventory::set_agents),
            Doc::list::<AgentView>("Replace the named agents").body::<AgentsRequest>().problems(&[C::CrisisEnded]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/agents",
            Requires(P::WriteCrisisLog),
            post(inventory::add_agents),
            Doc::list::<AgentView>("Add agents")
                .body::<AgentsRequest>()
                .problems(&[C::CrisisEnded])
                .beyond_schema(&["one agent at least"]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/agents/accept",
            Requires(P::OperateCrisis),
            post(inventory::accept_agents),
            Doc::api::<CrisisView>("Accept the named agents as the whole list").problems(&[C::CrisisEnded]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/loans",
            Requires(P::ReadCrises),
            get(inventory::loans),
            Doc::list::<LoanView>("The loans of a crisis"),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/documents",
            Requires(P::ReadCrises),
            get(documents::list),
            Doc::answering("The procedures pack's file names", Answer::Strings),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/documents.zip",
            Requires(P::ReadCrises),
            get(documents::zip),
            Doc::answering("The procedures pack as a zip", Answer::Zip),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/documents/{file}",
            Requires(P::ReadCrises),
            get(documents::one),
            Doc::answering("One document of the pack", Answer::Document).problems(&[C::UnknownDocument]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/credential-sheets",
            Requires(P::OperateCrisis),
            post(documents::issue_sheets),
            Doc::answering("Issue the credential sheets of the accounts without one (an HTML download)", Answer::Html)
                .problems(&[C::NoAccountsYet, C::CredentialSheetsIssued]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/credential-sheets/reissue",
            Requires(P::OperateCrisis),
            post(documents::reissue_sheets),
            Doc::answering("Set every password again, with a reason (an HTML download)", Answer::Html)
                .body::<ReissueRequest>()
                .problems(&[C::NoAccountsYet, C::ReasonRequired]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/loans",
            Requires(P::ManageInventory),
            post(inventory::lend),
            Doc::list::<LoanView>("Lend an item").body::<LendRequest>().status(201).problems(&[
                C::UnknownItem,
                C::ItemConflict,
                C::CrisisEnded,
            ]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/checkin",
            Requires(P::ManageInventory),
            post(inventory::check_in),
            Doc::list::<LoanView>("Check an item in")
                .body::<CheckinRequest>()
                .problems(&[C::UnknownItem, C::ItemConflict]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/write-off",
            Requires(P::ManageInventory),
            post(inventory::write_off),
            Doc::list::<LoanView>("Write a lent item off").body::<WriteOffRequest>().problems(&[
                C::UnknownItem,
                C::ItemConflict,
                C::ReasonRequired,
            ]),
        ),
        (
            Method::GET,
            "/api/v1/audit/verify",
            Requires(P::ReadAudit),
            get(journal::verify),
            Doc::api::<AuditVerifyView>("Verify the audit chain and its signed checkpoints"),
        ),
        (
            Method::GET,
            "/api/v1/audit/entries",
            Requires(P::ReadAudit),
            get(journal::entries),
            Doc::api::<AuditPage>("Audit entries, filtered and paged").query::<AuditQuery>(),
        ),
        (
            Method::GET,
            "/api/v1/audit/bundle",
            Requires(P::ReadAudit),
            get(journal::bundle),
            Doc::api::<AuditBundle>("Everything needed to verify the log offline"),
        ),
        (
            Method::GET,
            "/api/v1/audit/head",
            Requires(P::ReadAudit),
            get(journal::head),
            Doc::api::<Checkpoint>("The last signed checkpoint").problems(&[C::NoCheckpoint]),
        ),
        (
            Method::GET,
            "/api/v1/m365/preflight",
            Requires(P::OperateCrisis),
            get(tenant::preflight),
            Doc::api::<PreflightView>("Check the Microsoft 365 tenant now"),
        ),
        (Method::GET, "/api/v1/users", Requires(P::ManageUsers), get(users::list), Doc::list::<UserView>("Users")),
        (
            Method::POST,
            "/api/v1/users",
            Requires(P::ManageUsers),
            post(users::create),
            Doc::api::<CreatedUser>("Create a user and their first token")
                .body::<NewUserRequest>()
                .status(201)
                .beyond_schema(&["`commune` given for a DGS, and for a DGS only"]),
        ),
        (
            Method::POST,
            "/api/v1/users/{uid}/tokens",
            Requires(P::ManageUsers),
            post(users::issue_token),
            Doc::api::<TokenView>("Issue a token").body::<TokenRequest>().status(201).problems(&[C::UnknownUser]),
        ),
        (
            Method::DELETE,
            "/api/v1/users/{uid}/tokens",
            Requires(P::ManageUsers),
            delete(users::revoke_tokens),
            Doc::api::<RevokeView>("Revoke every token and web session of a user").problems(&[C::UnknownUser]),
        ),
        (
            Method::PUT,
            "/api/v1/users/{uid}/password",
            Requires(P::ManageUsers),
            put(users::set_password),
            Doc::api::<UserView>("Set the web login and password")
                .body::<PasswordRequest>()
                .problems(&[C::UnknownUser, C::LoginTaken]),
        ),
    ]
}

/// The route table without its handlers.
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(method, path, access, _, doc)| RouteSpec { method, path, access, doc }).collect()
}

/// The API router: each route behind the check of its access rule.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (_, path, access, handler, _) in table() {
        let handler = match access {
            Access::Public => handler,
            Access::Requires(_) | Access::Page(_) => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |st: State<AppState>, req: Request, next: Next| authorize(st, access, req, next),
            )),
        };
        router = router.route(path, handler);
    }
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// Authenticates the caller and checks the route's permission; the handler then finds the
/// actor in the request's extensions ([`Authed`]) and applies resource scoping. A caller who
/// came with a session cookie must also present the session's CSRF token on API writes (pages
/// check the token of their forms).
async fn authorize(State(st): State<AppState>, access: Access, mut req: Request, next: Next) -> Response {
    let (permission, page) = match access {
        Access::Public => return next.run(req).await,
        Access::Requires(p) => (p, false),
        Access::Page(p) => (p, true),
    };
    let (actor, csrf) = match crate::auth::authenticate(&st, req.headers()).await {
        Ok(v) => v,
        Err(AppError::Unauthenticated) => {
            // Counted when credentials were presented and refused, not when none came.
            let telemetry = &st.app.services().telemetry;
            if req.headers().contains_key(axum::http::header::AUTHORIZATION) {
                telemetry.sign_in_failed(SignInFailure::Token);
            } else if crate::auth::has_session_cookie(req.headers()) {
                telemetry.sign_in_failed(SignInFailure::Session);
            }
            if page {
                return Redirect::to("/connexion").into_response();
            }
            return ApiError(AppError::Unauthenticated).into_response();
        }
        Err(e) => return ApiError(e).into_response(),
    };
    if page && csrf.is_none() {
        // Pages are for browser sessions; a bearer token does not open them.
        return Redirect::to("/connexion").into_response();
    }
    if !actor.may(permission) {
        if page {
            return web::error_page(
                &st,
                StatusCode::FORBIDDEN,
                "Accès refusé",
                "Cette page n'est pas ouverte à votre rôle.",
            );
        }
        return ApiError(AppError::Forbidden("Action non autorisée pour votre rôle.")).into_response();
    }
    if let Some(expected) = &csrf {
        let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD);
        let header_ok = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| web::same_secret(expected, v));
        if unsafe_method && !page && !header_ok {
            return ApiError(AppError::Forbidden("Jeton CSRF absent ou invalide (en-tête X-CSRF-Token)."))
                .into_response();
        }
        req.extensions_mut().insert(web::SessionCsrf(expected.clone()));
    }
    tracing::Span::current().record("user", actor.user_id);
    req.extensions_mut().insert(actor);
    next.run(req).await
}

/// Longest request target served (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header section served, and most header fields.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const MAX_HEADERS: usize = 64;

/// Refuses an oversized request target (414) or header section (431) with a body a client can
/// read: a problem document under `/api`, a French page elsewhere. These limits sit below
/// hyper's own (a 400 KiB head, 100 fields), so only requests beyond those get hyper's bare
/// answer, before any of Repli's code runs.
pub async fn request_limits(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if target > MAX_URI_BYTES {
        if for_api(uri) {
            let detail = format!("Adresse trop longue : {MAX_URI_BYTES} octets au plus.");
            return ApiError::problem(ProblemCode::UriTooLong, detail).into_response();
        }
        return web::error_page(
            &st,
            StatusCode::URI_TOO_LONG,
            "Adresse trop longue",
            "Cette adresse est trop longue pour être une page de Repli. Revenez à l'accueil.",
        );
    }
    if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADERS {
        if for_api(uri) {
            let detail =
                format!("En-têtes trop volumineux : {MAX_HEADER_BYTES} octets et {MAX_HEADERS} champs au plus.");
            return ApiError::problem(ProblemCode::HeadersTooLarge, detail).into_response();
        }
        return web::error_page(
            &st,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Requête refusée",
            "Votre navigateur a envoyé trop de données avec la page (cookies trop nombreux ?). Effacez les cookies de ce site puis réessayez.",
        );
    }
    next.run(req).await
}

/// Under `/api`, a problem document; elsewhere (a person's browser), a French page.
fn for_api(uri: &Uri) -> bool {
    uri.path().starts_with("/api/") || matches!(uri.path(), "/api" | "/healthz" | "/readyz" | "/metrics")
}

async fn not_found(State(st): State<AppState>, uri: Uri) -> Response {
    if for_api(&uri) {
        return ApiError::problem(ProblemCode::NotFound, "Ressource introuvable.").into_response();
    }
    web::error_page(
        &st,
        StatusCode::NOT_FOUND,
        "Page introuvable",
        "Cette adresse ne correspond à aucune page de Repli. Revenez à l'accueil pour retrouver vos crises.",
    )
}

async fn method_not_allowed(State(st): State<AppState>, uri: Uri) -> Response {
    if for_api(&uri) {
        return ApiError::problem(ProblemCode::MethodNotAllowed, "Méthode non autorisée sur cette ressource.")
            .into_response();
    }
    web::error_page(
        &st,
        StatusCode::METHOD_NOT_ALLOWED,
        "Action impossible",
        "Cette page ne s'utilise pas ainsi. Revenez à l'accueil et utilisez les boutons de la page.",
    )
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Ready to work: the database takes writes, the engine runs, the last Microsoft 365 preflight
/// did not fail. 503 otherwise, saying which (and nothing more: the route is public).
async fn ready(State(st): State<AppState>) -> Response {
    let database = st.store.writable().await.is_ok();
    let engine = st.engine_running.load(std::sync::atomic::Ordering::Acquire);
    let m365 = repli_app::preflight::last(st.app.services()).is_none_or(|run| run.report.ok);
    let r = Readiness { ready: database && engine && m365, database, engine, m365 };
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r)).into_response()
}

/// The supervision metrics, read now.
async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let body = repli_app::metrics::render(st.app.services()).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, repli_app::metrics::CONTENT_TYPE)], body).into_response())
}

/// The OpenAPI document, built once from the route table.
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| serde_json::to_vec(&crate::openapi::document(&route_specs())).unwrap_or_default());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body.as_slice()).into_response()
}

async fn me(Authed(a): Authed) -> Json<Me> {
    Json(Me { user_id: a.user_id, name: a.name, role: a.role, commune: a.commune })
}
