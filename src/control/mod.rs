//! The control port: an axum server with native routes under `/v1` and, in `compat`, thin
//! adapters that keep the wire formats of GoodMem, AutoMem and Memory Service.
//!
//! Every route group gets one authorization layer for what it requires; every group but the
//! public one also gets the audit layer (justification and one audit entry per call). The
//! OpenAPI document is collected from the same routes as the router is built.

pub mod audit_layer;
pub mod audit_log;
pub mod auth;
pub mod compat;
pub mod config_reload;
pub mod cursor;
pub mod download_token;
pub mod events;
pub mod extract;
pub mod follow;
pub mod health;
pub mod jobs;
pub mod lifecycle;
pub mod memories;
pub mod openapi;
pub mod problem;
pub mod queues;
pub mod schedules;
pub mod work;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::config::Role;
use auth::{Need, PublicRoute};
use compat::compozy;
use compat::memory_service_admin::{attachment_content, attachments, conversations};
use compat::{automem, goodmem, goodmem_log_policies, goodmem_log_policy_list, memory_service};
use problem::{Problem, REQUEST_PATH};

type Routes = OpenApiRouter<App>;

/// The routes that need `need`, behind its authorization (and, unless public, the audit).
fn guarded(app: &App, need: Need, routes: Routes) -> Routes {
    let authorize = middleware::from_fn_with_state((app.clone(), need), auth::require);
    if matches!(need, Need::Public(_)) {
        return routes.route_layer(authorize);
    }
    // route_layer wraps what is already there: the justification check runs after the
    // authorization, and the audit layer around both.
    routes
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            audit_layer::require_justification,
        ))
        .route_layer(authorize)
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            audit_layer::record,
        ))
}

/// Every route, and the OpenAPI document of exactly those routes.
pub fn routes(app: &App) -> (Router<App>, utoipa::openapi::OpenApi) {
    let public = |route: PublicRoute, routes: Routes| guarded(app, Need::Public(route), routes);
    let open = Routes::new().routes(routes!(openapi::openapi_json));
    // AutoMem's `/health` is a health probe too: `control.require_auth_healthz` covers both.
    let healthz = public(
        PublicRoute::Healthz,
        Routes::new()
            .routes(routes!(health::healthz))
            .routes(routes!(automem::health)),
    );
    let readyz = public(
        PublicRoute::Readyz,
        Routes::new().routes(routes!(health::readyz)),
    );
    let metrics = public(
        PublicRoute::Metrics,
        Routes::new().routes(routes!(health::metrics)),
    );
    let enrichment_status = public(
        PublicRoute::EnrichmentStatus,
        Routes::new().routes(routes!(automem::status)),
    );
    let signed_download = public(
        PublicRoute::SignedDownload,
        Routes::new().routes(routes!(attachment_content::signed_download)),
    );

    let auditor = Routes::new()
        .routes(routes!(lifecycle::status))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(queues::list))
        .routes(routes!(memories::list))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::get_one))
        .routes(routes!(audit_log::list))
        .routes(routes!(events::stream))
        .routes(routes!(memory_service::events))
        .routes(routes!(goodmem_log_policy_list::list))
        .routes(routes!(goodmem_log_policies::get_one))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::get_one))
        .routes(routes!(attachments::list))
        .routes(routes!(attachments::get_one))
        .routes(routes!(attachment_content::content))
        .routes(routes!(attachment_content::download_url))
        .routes(routes!(compozy::list::list))
        .routes(routes!(compozy::memory::get_one));

    let indexer = Routes::new()
        .routes(routes!(jobs::enqueue))
        .routes(routes!(work::reprocess))
        .routes(routes!(work::reembed))
        .routes(routes!(automem::reprocess))
        .routes(routes!(automem::reembed));

    let admin = Routes::new()
        .routes(routes!(lifecycle::drain))
        .routes(routes!(lifecycle::resume))
        .routes(routes!(config_reload::config_reload))
        .routes(routes!(jobs::purge_jobs))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(schedules::put, schedules::delete))
        .routes(routes!(work::evict))
        .routes(routes!(work::sync))
        .routes(routes!(goodmem::drain))
        .routes(routes!(goodmem::purge))
        .routes(routes!(goodmem::license_reload))
        .routes(routes!(goodmem_log_policies::create))
        .routes(routes!(goodmem_log_policies::delete))
        .routes(routes!(automem::sync))
        .routes(routes!(memory_service::evict))
        .routes(routes!(conversations::delete))
        .routes(routes!(conversations::restore))
        .routes(routes!(attachments::delete))
        .routes(routes!(compozy::memory::put, compozy::memory::delete));

    OpenApiRouter::with_openapi(openapi::Frame::openapi())
        .merge(open)
        .merge(healthz)
        .merge(readyz)
        .merge(metrics)
        .merge(enrichment_status)
        .merge(signed_download)
        .merge(guarded(app, Need::Role(Role::Auditor), auditor))
        .merge(guarded(app, Need::AdminOrIndexer, indexer))
        .merge(guarded(app, Need::Role(Role::Admin), admin))
        .split_for_parts()
}

pub fn router(app: App) -> Router {
    let (routes, doc) = routes(&app);
    routes
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
            )
            .with_detail("this route does not take that method")
        })
        .layer(Extension::<openapi::Document>(Arc::new(doc)))
        .layer(middleware::from_fn(remember_path))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(redacted_span))
        .with_state(app)
}

/// Keeps the path at hand for problem+json's `instance`.
async fn remember_path(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    REQUEST_PATH.scope(path, next.run(req)).await
}

/// The request span names the path only: the query string may carry a token.
fn redacted_span(req: &Request) -> tracing::Span {
    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
}

/// Serves until `stop` fires. In-flight requests get a moment to finish.
pub async fn serve(
    app: App,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.cancelled().await })
    .await
}
