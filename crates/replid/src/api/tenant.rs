//! The Microsoft 365 preflight over the API.

use axum::Json;
use axum::extract::State;
use repli_proto::api::PreflightView;

use crate::AppState;
use crate::http::auth::Authed;

/// Runs the preflight now (read-only checks and one idempotent canary meeting).
pub async fn preflight(State(st): State<AppState>, _: Authed) -> Json<PreflightView> {
    Json(repli_app::preflight::run(st.app.services()).await)
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Requires;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    use repli_proto::api::PreflightView;
    vec![(
        Method::GET,
        "/api/v1/m365/preflight",
        Requires(P::OperateCrisis),
        routing::get(preflight),
        Doc::api::<PreflightView>("Check the Microsoft 365 tenant now"),
    )]
}
