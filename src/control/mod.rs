//! The control port: an axum server with native routes under `/v1` and thin adapters that keep
//! the wire formats of GoodMem, AutoMem and Memory Service.

mod audit_routes;
pub mod auth;
mod automem;
mod events;
pub mod extract;
mod goodmem;
mod health;
pub mod jobs;
mod lifecycle_routes;
pub mod openapi;
pub mod problem;
mod queues;
mod reembed_sync;
mod schedules;
pub mod work;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Role;
use auth::{Need, PublicRoute};
use problem::{Problem, REQUEST_PATH};

/// Routes grouped by what they require; each group gets one authorization layer.
pub fn router(app: App) -> Router {
    let guard = |need: Need| middleware::from_fn_with_state((app.clone(), need), auth::require);

    let public = |route: &str, handler, which| {
        Router::new()
            .route(route, handler)
            .route_layer(guard(Need::Public(which)))
    };

    let auditor = Router::new()
        .route("/v1/status", get(lifecycle_routes::status))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/queues", get(queues::list))
        .route("/v1/audit", get(audit_routes::list))
        .route("/v1/schedules", get(schedules::list))
        .route("/v1/events", get(events::stream))
        .route("/v1/admin/events", get(events::admin_stream))
        .route_layer(guard(Need::Role(Role::Auditor)));
    let auditor_list = Router::new()
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/schedules/{name}", get(schedules::get_one))
        .route_layer(guard(Need::Role(Role::Auditor)));

    let indexer = Router::new()
        .route("/v1/jobs", post(jobs::enqueue))
        .route("/enrichment/reprocess", post(automem::reprocess))
        .route("/v1/work/reprocess", post(automem::work_reprocess))
        .route("/admin/reembed", post(reembed_sync::automem_reembed))
        .route("/v1/work/reembed", post(reembed_sync::work_reembed))
        .route_layer(guard(Need::AdminOrIndexer));

    let admin = Router::new()
        .route("/v1/admin/drain", post(lifecycle_routes::drain))
        .route("/v1/admin/resume", post(lifecycle_routes::resume))
        .route("/v1/admin/config/reload", post(goodmem::config_reload))
        // GoodMem's routes: the same core; requests take camelCase too.
        .route("/v1/admin:drain", post(lifecycle_routes::goodmem_drain))
        .route("/v1/admin/background-jobs:purge", post(goodmem::purge))
        .route("/v1/admin/license:reload", post(goodmem::license_reload))
        .route("/v1/admin/evict", post(work::memory_service_evict))
        .route("/v1/work/evict", post(work::evict))
        .route("/admin/sync", post(reembed_sync::automem_sync))
        .route("/v1/work/sync", post(reembed_sync::work_sync))
        .route("/v1/jobs/purge", post(jobs::purge_jobs))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route(
            "/v1/schedules/{name}",
            put(schedules::put).delete(schedules::delete),
        )
        .route_layer(guard(Need::Role(Role::Admin)));

    Router::new()
        .merge(public(
            "/healthz",
            get(health::healthz),
            PublicRoute::Healthz,
        ))
        .merge(public("/readyz", get(health::readyz), PublicRoute::Readyz))
        .merge(public(
            "/metrics",
            get(health::metrics),
            PublicRoute::Metrics,
        ))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(public(
            "/enrichment/status",
            get(automem::status),
            PublicRoute::EnrichmentStatus,
        ))
        .merge(auditor)
        .merge(auditor_list)
        .merge(indexer)
        .merge(admin)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
            )
            .with_detail("this route does not take that method")
        })
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
