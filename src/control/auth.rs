//! Who is calling, and may they? API token, AutoMem's dual admin token, and keys with roles.
//! Tokens are compared in constant time, as sha256 digests, and never logged. What a call is
//! for (its justification) and the record of it are the audit layer's (`audit_layer`).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::Problem;
use crate::app::App;
use crate::config::{Role, Settings};

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No credentials, unless config says otherwise for this route.
    Public(PublicRoute),
    /// A valid API token or key.
    Api,
    /// One of these roles (admin always qualifies).
    Role(Role),
    /// Admin or indexer.
    AdminOrIndexer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicRoute {
    Healthz,
    Readyz,
    Metrics,
    EnrichmentStatus,
    /// A signed download URL: its token is the credential, so no setting makes it need more.
    SignedDownload,
}

/// The caller, as the audit log names them.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub client_id: String,
    pub role: Option<Role>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Caller {
            client_id: "anonymous".into(),
            role: None,
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The tokens a request presents, in API-token position and in admin-token position.
pub struct Presented {
    api: Option<String>,
    admin: Option<String>,
}

impl Presented {
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Self {
        let bearer = header(headers, "authorization").and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        });
        let api = bearer
            .or_else(|| header(headers, "x-api-key").map(str::to_string))
            .or_else(|| query_param(query, "api_key"));
        let admin = header(headers, "x-admin-token")
            .or_else(|| header(headers, "x-admin-api-key"))
            .map(str::to_string)
            .or_else(|| query_param(query, "admin_token"));
        Presented { api, admin }
    }
}

/// The outcome of checking a request against a need.
pub fn authorize(
    settings: &Settings,
    presented: &Presented,
    need: Need,
) -> Result<Caller, Problem> {
    if let Need::Public(route) = need {
        let required = match route {
            PublicRoute::Healthz => settings.control.require_auth_healthz,
            PublicRoute::Readyz => settings.control.require_auth_readyz,
            PublicRoute::Metrics => settings.control.require_auth_metrics,
            PublicRoute::EnrichmentStatus => settings.control.require_auth_enrichment_status,
            PublicRoute::SignedDownload => false,
        };
        if !required {
            return Ok(Caller::anonymous());
        }
    }

    let auth = &settings.auth;
    let api_digest = presented.api.as_deref().map(digest);
    // A key with a role, in any API-token position, is a whole identity by itself.
    if let Some(d) = &api_digest {
        if let Some(key) = auth.keys.iter().find(|k| same(&k.digest(), d)) {
            let caller = Caller {
                client_id: key.client_id.clone(),
                role: Some(key.role),
            };
            return check_role(caller, need, settings);
        }
    }

    let api_ok = match (&auth.api_token, &api_digest) {
        (Some(expected), Some(got)) => same(&digest(expected), got),
        // Nothing configured to check against: the API level is open (loopback by default).
        (None, _) if auth.keys.is_empty() => true,
        _ => false,
    };
    if !api_ok {
        return Err(unauthorized());
    }

    let admin_ok = match (&auth.admin_token, &presented.admin) {
        (Some(expected), Some(got)) => same(&digest(expected), &digest(got)),
        _ => false,
    };
    let caller = if admin_ok {
        Caller {
            client_id: "admin-token".into(),
            role: Some(Role::Admin),
        }
    } else {
        Caller {
            client_id: if auth.api_token.is_some() {
                "api-token".into()
            } else {
                "anonymous".into()
            },
            role: None,
        }
    };
    check_role(caller, need, settings)
}

fn check_role(caller: Caller, need: Need, settings: &Settings) -> Result<Caller, Problem> {
    let allowed: &[Role] = match need {
        Need::Public(_) | Need::Api => return Ok(caller),
        Need::Role(Role::Admin) => &[Role::Admin],
        Need::Role(Role::Auditor) => &[Role::Auditor],
        Need::Role(Role::Indexer) => &[Role::Indexer],
        Need::AdminOrIndexer => &[Role::Indexer],
    };
    match caller.role {
        Some(role) if allowed.iter().any(|needed| role.grants(*needed)) => Ok(caller),
        Some(_) => Err(Problem::forbidden(
            "this key's role does not allow this operation",
        )),
        None => {
            let admin_configured =
                settings.auth.admin_token.is_some() || !settings.auth.keys.is_empty();
            if admin_configured {
                Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "admin_unauthorized",
                    "Admin authorization required",
                )
                .with_detail(
                    "send a valid admin token (X-Admin-Token; the CLI sends MEMWARDEN_ADMIN_TOKEN) with the API token, or a key with a sufficient role",
                ))
            } else {
                Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "admin_not_configured",
                    "Admin token not configured",
                )
                .with_detail(
                    "set auth.admin_token (MEMWARDEN_ADMIN_TOKEN) or add an [[auth.keys]] entry",
                ))
            }
        }
    }
}

fn unauthorized() -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
        .with_detail("a valid API token is required (Authorization: Bearer, X-API-Key or ?api_key; the CLI sends MEMWARDEN_API_TOKEN)")
}

/// Who a request says it is, whether or not it may do what it asks: for the audit log.
fn identify(settings: &Settings, presented: &Presented) -> Caller {
    let api_digest = presented.api.as_deref().map(digest);
    if let Some(d) = &api_digest {
        if let Some(key) = settings.auth.keys.iter().find(|k| same(&k.digest(), d)) {
            return Caller {
                client_id: key.client_id.clone(),
                role: Some(key.role),
            };
        }
    }
    let client_id = match (&presented.api, &settings.auth.api_token) {
        (Some(_), Some(t)) if api_digest.as_ref().is_some_and(|d| same(&digest(t), d)) => {
            "api-token"
        }
        (Some(_), _) => "unknown-token",
        (None, _) => "anonymous",
    };
    Caller {
        client_id: client_id.into(),
        role: None,
    }
}

fn with_challenge(problem: Problem) -> Response {
    let mut resp = problem.into_response();
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// The middleware of every route group: authorizes the request for the group's need and
/// hands the `Caller` to the handler, and to the audit layer in the response, refused or not.
pub async fn require(
    State((app, need)): State<(App, Need)>,
    mut req: Request,
    next: Next,
) -> Response {
    let settings = app.settings();
    let presented = Presented::from_request(req.headers(), req.uri().query());
    match authorize(&settings, &presented, need) {
        Ok(caller) => {
            req.extensions_mut().insert(caller.clone());
            let mut response = next.run(req).await;
            response.extensions_mut().insert(caller);
            response
        }
        Err(problem) => {
            let mut response = with_challenge(problem);
            response
                .extensions_mut()
                .insert(identify(&settings, &presented));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyConfig, Overrides};

    fn settings(extra: &str) -> Settings {
        Settings::from_parts(extra, None, &[], &Overrides::default()).unwrap()
    }

    fn presented(api: Option<&str>, admin: Option<&str>) -> Presented {
        Presented {
            api: api.map(String::from),
            admin: admin.map(String::from),
        }
    }

    #[test]
    fn dual_token_gives_admin() {
        let s = settings("[auth]\napi_token = \"a\"\nadmin_token = \"b\"\n");
        let c = authorize(
            &s,
            &presented(Some("a"), Some("b")),
            Need::Role(Role::Admin),
        )
        .unwrap();
        assert_eq!(c.role, Some(Role::Admin));
        let e = authorize(
            &s,
            &presented(Some("a"), Some("x")),
            Need::Role(Role::Admin),
        )
        .unwrap_err();
        assert_eq!(e.title, "Admin authorization required");
        let e = authorize(
            &s,
            &presented(Some("x"), Some("b")),
            Need::Role(Role::Admin),
        )
        .unwrap_err();
        assert_eq!(e.title, "Unauthorized");
    }

    #[test]
    fn admin_not_configured_is_403() {
        let s = settings("[auth]\napi_token = \"a\"\n");
        let e = authorize(&s, &presented(Some("a"), None), Need::Role(Role::Admin)).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.title.as_str()),
            (403, "Admin token not configured")
        );
    }

    #[test]
    fn keys_carry_roles() {
        let mut s = settings("[auth]\napi_token = \"a\"\n");
        s.auth.keys.push(KeyConfig {
            client_id: "audit".into(),
            role: Role::Auditor,
            token: None,
            token_sha256: Some(hex::encode(digest("aud"))),
        });
        let c = authorize(&s, &presented(Some("aud"), None), Need::Role(Role::Auditor)).unwrap();
        assert_eq!(c.client_id, "audit");
        let e = authorize(&s, &presented(Some("aud"), None), Need::Role(Role::Admin)).unwrap_err();
        assert_eq!((e.status.as_u16(), e.title.as_str()), (403, "Forbidden"));
        let e = authorize(&s, &presented(Some("aud"), None), Need::AdminOrIndexer).unwrap_err();
        assert_eq!(e.status.as_u16(), 403);
    }

    #[test]
    fn public_routes_open_unless_configured() {
        let s = settings("[auth]\napi_token = \"a\"\n[control]\nrequire_auth_metrics = true\n");
        assert!(authorize(
            &s,
            &presented(None, None),
            Need::Public(PublicRoute::Healthz)
        )
        .is_ok());
        assert!(authorize(
            &s,
            &presented(None, None),
            Need::Public(PublicRoute::Metrics)
        )
        .is_err());
        assert!(authorize(
            &s,
            &presented(Some("a"), None),
            Need::Public(PublicRoute::Metrics)
        )
        .is_ok());
    }
}
