//! Crisis API handlers: each parses, calls one operation of `repli_app::crises`, and answers.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use repli_app::{AppError, crises};
use repli_core::CrisisAction;
use repli_proto::IDEMPOTENCY_HEADER;
use repli_proto::api::{
    ActionRequest, CampaignView, CommuneView, CrisisQuery, CrisisRequest, CrisisView, HistoryPage, HistoryQuery,
    LegalDoneRequest, LegalFactsRequest, LogEntryRequest, LogEntryView, NotificationView, RetexView, SlaReportLine,
    SuspendRequest,
};

use crate::AppState;
use crate::http::auth::Authed;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath};

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

pub async fn list_communes(State(st): State<AppState>, Authed(a): Authed) -> Result<Json<Vec<CommuneView>>, ApiError> {
    Ok(Json(crises::communes(&st, &a).await?))
}

pub async fn get_commune(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(insee): ApiPath<String>,
) -> Result<Json<CommuneView>, ApiError> {
    Ok(Json(crises::commune(&st, &a, &insee).await?))
}

pub async fn list(
    State(st): State<AppState>,
    Authed(a): Authed,
    q: QueryResult<CrisisQuery>,
) -> Result<Json<Vec<CrisisView>>, ApiError> {
    let Query(q) = q?;
    Ok(Json(crises::list(&st, &a, q).await?))
}

pub async fn get(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::get(&st, &a, &id).await?))
}

/// A page of a crisis's history, going back in time.
pub async fn history(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    q: QueryResult<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(q) = q?;
    Ok(Json(crises::history(&st, &a, &id, q).await?))
}

pub async fn create(
    State(st): State<AppState>,
    Authed(a): Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CrisisRequest>,
) -> Result<Response, ApiError> {
    let key = crises::idempotency_key(headers.get(IDEMPOTENCY_HEADER).map(HeaderValue::as_bytes))?;
    let (rec, created) = crises::request(&st, &a, &req, key.as_deref()).await?;
    let view = crises::view(&st, rec).await?;
    let mut resp = (if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)).into_response();
    if !created {
        resp.headers_mut().insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Any action but `cancel` (its own route, with its own permission).
pub async fn act(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, action)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    let action = crises::parse_action(&action)?;
    if action == CrisisAction::Cancel {
        // Unreachable through the router (the static route wins); refuse rather than bypass.
        return Err(AppError::Forbidden("Action non autorisée pour votre rôle.").into());
    }
    Ok(Json(crises::apply(&st, &a, &id, action, body).await?))
}

/// `cancel`: ops, or the commune's DGS.
pub async fn cancel(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::apply(&st, &a, &id, CrisisAction::Cancel, body).await?))
}

pub async fn suspend_sla(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SuspendRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::suspend_sla(&st, &a, &id, &body.reason).await?))
}

pub async fn resume_sla(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::resume_sla(&st, &a, &id).await?))
}

pub async fn set_legal_facts(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LegalFactsRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::set_legal_facts(&st, &a, &id, body).await?))
}

pub async fn legal_done(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath((id, kind)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<LegalDoneRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    Ok(Json(crises::legal_done(&st, &a, &id, &kind, body.at).await?))
}

pub async fn sla_report(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<SlaReportLine>>, ApiError> {
    Ok(Json(crises::sla_report(&st).await?))
}

/// Every open crisis together: SLA clocks, shared stock, waiting list, Graph budget.
pub async fn campaign(State(st): State<AppState>, _: Authed) -> Result<Json<CampaignView>, ApiError> {
    Ok(Json(repli_app::campaign::view(&st).await?))
}

pub async fn notifications(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<NotificationView>>, ApiError> {
    Ok(Json(crises::notifications(&st).await?))
}

pub async fn retex(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RetexView>, ApiError> {
    Ok(Json(repli_app::retex::report(&st, &a, &id).await?))
}

pub async fn retry_notification(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    repli_app::notify::retry(&st, &a, id).await?;
    Ok(Json(crises::notifications(&st).await?))
}

pub async fn log(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<LogEntryView>>, ApiError> {
    Ok(Json(crises::log(&st, &a, &id).await?))
}

pub async fn add_log(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LogEntryRequest>,
) -> Result<(StatusCode, Json<LogEntryView>), ApiError> {
    Ok((StatusCode::CREATED, Json(crises::add_log(&st, &a, &id, &body.kind, &body.text).await?)))
}

/// The crisis zone as each authoritative server serves it.
pub async fn dns(
    State(st): State<AppState>,
    Authed(a): Authed,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<repli_proto::api::DnsCheckView>, ApiError> {
    Ok(Json(repli_app::dns::check(&st, &a, &id).await?))
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::ProblemCode as C;
    use repli_proto::api::{
        ActionRequest, CampaignView, CommuneView, CrisisQuery, CrisisRequest, CrisisView, DnsCheckView, HistoryPage,
        HistoryQuery, LegalDoneRequest, LegalFactsRequest, LogEntryRequest, LogEntryView, NotificationView, RetexView,
        SlaReportLine, SuspendRequest,
    };
    vec![
        (
            Method::GET,
            "/api/v1/communes",
            Requires(P::ReadCommunes),
            routing::get(list_communes),
            Doc::list::<CommuneView>("The communes and their conventions"),
        ),
        (
            Method::GET,
            "/api/v1/communes/{insee}",
            Requires(P::ReadCommunes),
            routing::get(get_commune),
            Doc::api::<CommuneView>("A commune").problems(&[C::UnknownCommune]),
        ),
        (
            Method::GET,
            "/api/v1/crises",
            Requires(P::ReadCrises),
            routing::get(list),
            Doc::list::<CrisisView>("Crises (a DGS: their commune's)").query::<CrisisQuery>(),
        ),
        (
            Method::POST,
            "/api/v1/crises",
            Requires(P::RequestCrisis),
            routing::post(create),
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
            routing::get(get),
            Doc::api::<CrisisView>("A crisis, with its most recent history"),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/history",
            Requires(P::ReadCrises),
            routing::get(history),
            Doc::api::<HistoryPage>("A page of a crisis's history, going back in time").query::<HistoryQuery>(),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/actions/cancel",
            Requires(P::CancelCrisis),
            routing::post(cancel),
            Doc::api::<CrisisView>("Cancel a crisis that was not provisioned")
                .body::<ActionRequest>()
                .problems(&[C::IllegalTransition, C::ReasonRequired]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/actions/{action}",
            Requires(P::OperateCrisis),
            routing::post(act),
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
            routing::get(log),
            Doc::list::<LogEntryView>("The main courante"),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/log",
            Requires(P::WriteCrisisLog),
            routing::post(add_log),
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
            routing::post(suspend_sla),
            Doc::api::<CrisisView>("Suspend the SLA clock, with a reason")
                .body::<SuspendRequest>()
                .problems(&[C::SlaConflict, C::ReasonRequired]),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/sla/resume",
            Requires(P::OperateCrisis),
            routing::post(resume_sla),
            Doc::api::<CrisisView>("Resume the SLA clock").problems(&[C::SlaConflict]),
        ),
        (
            Method::PUT,
            "/api/v1/crises/{id}/legal",
            Requires(P::WriteCrisisLog),
            routing::put(set_legal_facts),
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
            routing::post(legal_done),
            Doc::api::<CrisisView>("Record a legal obligation as done")
                .body::<LegalDoneRequest>()
                .beyond_schema(&["`at` not more than 5 minutes in the future"])
                .problems(&[C::UnknownLegalClock, C::CrisisEnded]),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/dns",
            Requires(P::OperateCrisis),
            routing::get(dns),
            Doc::api::<DnsCheckView>("The crisis zone on each authoritative server, against what was published"),
        ),
        (
            Method::GET,
            "/api/v1/campaign",
            Requires(P::OperateCrisis),
            routing::get(campaign),
            Doc::api::<CampaignView>(
                "Every open crisis together: SLA clocks, the shared stock, the waiting list and its rule, the Graph budget",
            ),
        ),
        (
            Method::GET,
            "/api/v1/sla/report",
            Requires(P::ReadSlaReport),
            routing::get(sla_report),
            Doc::list::<SlaReportLine>("The SLA compliance report"),
        ),
        (
            Method::GET,
            "/api/v1/notifications",
            Requires(P::OperateCrisis),
            routing::get(notifications),
            Doc::list::<NotificationView>("Notifications and their delivery"),
        ),
        (
            Method::GET,
            "/api/v1/crises/{id}/retex",
            Requires(P::ReadSlaReport),
            routing::get(retex),
            Doc::api::<RetexView>(
                "The after-action report (RETEX): each step planned against actual, the longest waits",
            ),
        ),
        (
            Method::POST,
            "/api/v1/notifications/{nid}/retry",
            Requires(P::OperateCrisis),
            routing::post(retry_notification),
            Doc::list::<NotificationView>("Send a failed notification again; answers the queue")
                .problems(&[C::NotificationConflict]),
        ),
    ]
}
