//! The notifications page (ops): the queue, and a failed notification sent again.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use repli_app::crises;
use repli_proto::api::NotificationView;
use serde::Serialize;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::{Flash, Flashes};
use crate::web::view::{CsrfForm, Layout, NoFields, page};
use crate::web::{
    SessionCsrf, api_error_page, channel_fr, error_page, notification_status, notification_to, redirect_with, when,
};

/// One notification of the list.
#[derive(Debug, Serialize)]
struct Row {
    id: i64,
    /// Created.
    at: String,
    crisis: Option<String>,
    channel: &'static str,
    to: String,
    subject: String,
    body: String,
    /// Its state in words, and the colour class beside them.
    status: &'static str,
    class: &'static str,
    attempts: i64,
    error: Option<String>,
    sent: Option<String>,
    /// Failed for good: the button sends it again.
    retry: bool,
}

#[derive(Debug, Serialize)]
struct NotificationsPage {
    rows: Vec<Row>,
    /// How many failed for good.
    failed: usize,
}

fn row(st: &AppState, n: &NotificationView) -> Row {
    let (status, class) = notification_status(n);
    Row {
        id: n.id,
        at: when(st, Some(n.created_at)),
        crisis: n.crisis.clone(),
        channel: channel_fr(&n.channel),
        to: notification_to(n),
        subject: n.subject.clone(),
        body: n.body.clone(),
        status,
        class,
        attempts: n.attempts,
        error: n.last_error.clone(),
        sent: n.sent_at.map(|t| when(st, Some(t))),
        retry: n.status == "failed",
    }
}

/// The notifications page: what was sent to whom, what failed, and a button to send a failed
/// one again.
pub async fn notifications(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    flashes: Flashes,
) -> Response {
    let list = match crises::notifications(&st).await {
        Ok(l) => l,
        Err(e) => return api_error_page(&st, &e),
    };
    let body = NotificationsPage {
        rows: list.iter().map(|n| row(&st, n)).collect(),
        failed: list.iter().filter(|n| n.status == "failed").count(),
    };
    let layout = Layout::signed_in(&a, &csrf, "Notifications").flashes(&flashes);
    page(&st, StatusCode::OK, "notifications", &layout, &body)
}

/// Sends a failed notification again.
pub async fn retry_notification(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(nid): Path<String>,
    _: CsrfForm<NoFields>,
) -> Response {
    let Ok(nid) = nid.parse::<i64>() else {
        return error_page(&st, StatusCode::NOT_FOUND, "Introuvable", "Notification inconnue.");
    };
    let message = match repli_app::notify::retry(&st, &a, nid).await {
        Ok(()) => Flash::ok("Notification renvoyée : voir son état ci-dessous."),
        Err(e) => Flash::error(e.to_problem().detail),
    };
    redirect_with("/notifications", message)
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/notifications",
            Page(P::OperateCrisis),
            routing::get(notifications),
            Doc::page("Notifications: to whom, delivered or failed"),
        ),
        (
            Method::POST,
            "/notifications/{nid}/renvoyer",
            Page(P::OperateCrisis),
            routing::post(retry_notification),
            Doc::form("Send a failed notification again"),
        ),
    ]
}
