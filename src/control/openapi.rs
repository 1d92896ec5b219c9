//! The OpenAPI 3 document's frame: title, security schemes, shared schemas. Its paths come
//! from the routes themselves (utoipa-axum collects them as the router is built, in
//! `control::router`), so the document cannot drift from what the handlers serve.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::problem::ProblemDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Admin-Token"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "memwarden control port", description = "Native routes under /v1 and the GoodMem, AutoMem and Memory Service compatibility routes."),
    components(schemas(ProblemDoc)),
    modifiers(&Security),
    security(("bearer" = [], "admin_token" = []), ("api_key" = []))
)]
pub struct Frame;

/// The document as the router built it, handed to `openapi_json`.
pub type Document = Arc<utoipa::openapi::OpenApi>;

/// The OpenAPI document of this control port.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> Json<utoipa::openapi::OpenApi> {
    Json((*doc).clone())
}
