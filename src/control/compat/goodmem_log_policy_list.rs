//! `GET /v1/admin/retrieve-memory-log-policies`: GoodMem's filtered list of RetrieveMemory log
//! policies. Filters `includeDeleted`, `activeAt` (milliseconds), `nameFilter` (a
//! case-insensitive substring of the display name), labels as `label.<k>=<v>` or
//! `label[k]=v` (all must match); `maxResults` (default 50, at most 500), `sortBy`
//! (`created_at`, `updated_at`, `display_name`), `sortOrder` (`ASCENDING`, `DESCENDING`,
//! default `DESCENDING`), and an opaque `nextToken`, tied to the sort it was issued for. Every
//! parameter is also accepted in snake_case.

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use super::goodmem_log_policies::{check_millis, Policy, POLICY_COLUMNS};
use crate::control::cursor::{self, List, LIST_DEFAULT, LIST_MAX};
use crate::control::extract::{QueryParams, ReadyQueue};
use crate::control::problem::{CommonErrors, Problem};

/// The query as documented; the handler reads the raw pairs (for the label keys).
#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    #[param(rename = "includeDeleted")]
    include_deleted: Option<bool>,
    /// Only policies active at this time (milliseconds since the epoch).
    #[param(rename = "activeAt")]
    active_at: Option<i64>,
    /// Case-insensitive substring of the display name.
    #[param(rename = "nameFilter")]
    name_filter: Option<String>,
    /// 1 or more, default 50; more than 500 is read as 500.
    #[param(rename = "maxResults")]
    max_results: Option<i64>,
    #[param(rename = "nextToken")]
    next_token: Option<String>,
    /// `created_at` (default), `updated_at` or `display_name`.
    #[param(rename = "sortBy")]
    sort_by: Option<String>,
    /// `ASCENDING` or `DESCENDING` (default).
    #[param(rename = "sortOrder")]
    sort_order: Option<String>,
}

/// GoodMem's `ListRetrieveMemoryLogPoliciesResponse`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPage {
    pub policies: Vec<Policy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SortBy {
    Created,
    Updated,
    Name,
}

impl SortBy {
    fn tag(self) -> &'static str {
        match self {
            SortBy::Created => "c",
            SortBy::Updated => "u",
            SortBy::Name => "n",
        }
    }
    /// The sort key as SQL; the keyset position is this value, as text.
    fn key(self) -> &'static str {
        match self {
            SortBy::Created => "(round(extract(epoch FROM created_at) * 1000000)::bigint)::text",
            SortBy::Updated => "(round(extract(epoch FROM updated_at) * 1000000)::bigint)::text",
            SortBy::Name => "lower(display_name)",
        }
    }
    /// How the key compares: time keys as numbers, names byte by byte.
    fn cast(self) -> &'static str {
        match self {
            SortBy::Name => " COLLATE \"C\"",
            _ => "",
        }
    }
}

#[derive(Debug)]
struct Filters {
    include_deleted: bool,
    active_at: Option<i64>,
    name: Option<String>,
    labels: BTreeMap<String, String>,
    limit: i64,
    sort: SortBy,
    ascending: bool,
    after: Option<(String, Uuid)>,
}

fn bad(name: &str, why: impl std::fmt::Display) -> Problem {
    Problem::bad_request("invalid_query", format!("query parameter `{name}`: {why}"))
}

fn label_key(name: &str) -> Option<&str> {
    name.strip_prefix("label.")
        .or_else(|| name.strip_prefix("label[")?.strip_suffix(']'))
        .filter(|k| !k.is_empty())
}

fn parse(pairs: Vec<(String, String)>) -> Result<Filters, Problem> {
    let mut f = Filters {
        include_deleted: false,
        active_at: None,
        name: None,
        labels: BTreeMap::new(),
        limit: LIST_DEFAULT,
        sort: SortBy::Created,
        ascending: false,
        after: None,
    };
    let mut token = None;
    for (name, value) in pairs {
        if let Some(key) = label_key(&name) {
            f.labels.insert(key.to_string(), value);
            continue;
        }
        match name.as_str() {
            "includeDeleted" | "include_deleted" => {
                f.include_deleted = value
                    .parse()
                    .map_err(|_| bad(&name, "must be true or false"))?
            }
            "activeAt" | "active_at" => {
                let ms = value
                    .parse()
                    .map_err(|_| bad(&name, "must be an integer (milliseconds)"))?;
                f.active_at =
                    Some(check_millis(&name, ms).map_err(|_| bad(&name, "out of range"))?);
            }
            "nameFilter" | "name_filter" => f.name = Some(value).filter(|v| !v.is_empty()),
            "maxResults" | "max_results" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| bad(&name, "must be an integer"))?;
                if n < 1 {
                    return Err(bad(&name, format!("must be at least 1, got {n}")));
                }
                f.limit = n.min(LIST_MAX);
            }
            "nextToken" | "next_token" => token = Some(value).filter(|v| !v.is_empty()),
            "sortBy" | "sort_by" => {
                f.sort = match value.to_ascii_lowercase().as_str() {
                    "created_at" | "createdat" | "" => SortBy::Created,
                    "updated_at" | "updatedat" => SortBy::Updated,
                    "display_name" | "displayname" => SortBy::Name,
                    _ => return Err(bad(&name, "must be created_at, updated_at or display_name")),
                }
            }
            "sortOrder" | "sort_order" => {
                f.ascending = match value.to_ascii_uppercase().as_str() {
                    "ASCENDING" | "ASC" => true,
                    "DESCENDING" | "DESC" | "SORT_ORDER_UNSPECIFIED" | "" => false,
                    _ => return Err(bad(&name, "must be ASCENDING or DESCENDING")),
                }
            }
            _ => {}
        }
    }
    if let Some(t) = token {
        f.after = Some(decode_token(&t, f.sort, f.ascending)?);
    }
    Ok(f)
}

fn order_tag(ascending: bool) -> &'static str {
    if ascending {
        "a"
    } else {
        "d"
    }
}

/// A token is `<sort>|<order>|<policy id>|<key>`; one of another sort is refused.
fn decode_token(token: &str, sort: SortBy, ascending: bool) -> Result<(String, Uuid), Problem> {
    let text: String = cursor::decode(List::LogPolicies, token)
        .map_err(|_| bad("nextToken", "not a token this server issued"))?;
    let mut parts = text.splitn(4, '|');
    let (s, o, id, key) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (s, o, id.and_then(|i| i.parse().ok()), key) {
        (Some(s), Some(o), Some(id), Some(key))
            if s == sort.tag()
                && o == order_tag(ascending)
                && (sort == SortBy::Name || key.parse::<i64>().is_ok()) =>
        {
            Ok((key.to_string(), id))
        }
        _ => Err(bad(
            "nextToken",
            "issued for another sortBy or sortOrder, or not one of ours",
        )),
    }
}

#[utoipa::path(get, path = "/v1/admin/retrieve-memory-log-policies", tag = "goodmem",
    params(ListQuery),
    responses((status = 200, body = PolicyPage), CommonErrors))]
pub async fn list(
    ReadyQueue(queue): ReadyQueue,
    QueryParams(pairs): QueryParams<Vec<(String, String)>>,
) -> Result<Json<PolicyPage>, Problem> {
    let f = parse(pairs)?;
    let key = f.sort.key();
    let cast = f.sort.cast();
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {POLICY_COLUMNS}, {key} AS sort_key FROM retrieve_memory_log_policies WHERE true"
    ));
    if !f.include_deleted {
        q.push(" AND deleted_at IS NULL");
    }
    if let Some(ms) = f.active_at {
        q.push(" AND active_from <= 'epoch'::timestamptz + ")
            .push_bind(ms)
            .push(" * interval '1 millisecond' AND (active_until IS NULL OR active_until > 'epoch'::timestamptz + ")
            .push_bind(ms)
            .push(" * interval '1 millisecond')");
    }
    if let Some(name) = &f.name {
        q.push(" AND strpos(lower(display_name), lower(")
            .push_bind(name.clone())
            .push(")) > 0");
    }
    if !f.labels.is_empty() {
        q.push(" AND labels @> ")
            .push_bind(sqlx::types::Json(f.labels.clone()));
    }
    let (cmp, dir) = if f.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some((after_key, after_id)) = &f.after {
        let typed = |v: &str| match f.sort {
            SortBy::Name => format!("{v}{cast}"),
            _ => format!("({v})::bigint"),
        };
        q.push(format!(" AND ({}, policy_id) {cmp} (", typed(key)))
            .push_bind(after_key.clone())
            .push(format!(
                "{}, ",
                if f.sort == SortBy::Name {
                    cast
                } else {
                    "::bigint"
                }
            ))
            .push_bind(*after_id)
            .push(")");
    }
    let order_key = match f.sort {
        SortBy::Name => format!("{key}{cast}"),
        _ => format!("({key})::bigint"),
    };
    q.push(format!(
        " ORDER BY {order_key} {dir}, policy_id {dir} LIMIT "
    ))
    .push_bind(f.limit + 1);
    let rows: Vec<(Policy, String)> = q
        .build()
        .try_map(|row: sqlx::postgres::PgRow| {
            use sqlx::{FromRow, Row};
            Ok((
                Policy::from_row(&row)?,
                row.try_get::<String, _>("sort_key")?,
            ))
        })
        .fetch_all(queue.pool())
        .await?;
    let more = rows.len() as i64 > f.limit;
    let mut policies = Vec::with_capacity(rows.len());
    let mut last = None;
    for (p, k) in rows.into_iter().take(f.limit as usize) {
        last = Some((p.policy_id, k));
        policies.push(p);
    }
    let next_token = more.then_some(last).flatten().map(|(id, k)| {
        cursor::encode(
            List::LogPolicies,
            format!("{}|{}|{id}|{k}", f.sort.tag(), order_tag(f.ascending)),
        )
    });
    Ok(Json(PolicyPage {
        policies,
        next_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_in_both_spellings_and_tokens_tied_to_their_sort() {
        let f = parse(pairs(&[
            ("label.env", "prod"),
            ("label[team]", "nlp"),
            ("maxResults", "900"),
        ]))
        .unwrap();
        assert_eq!(f.labels.len(), 2);
        assert_eq!(f.limit, LIST_MAX);
        let t = cursor::encode(List::LogPolicies, format!("c|d|{}|123", Uuid::nil()));
        assert!(parse(pairs(&[("nextToken", &t)])).is_ok());
        let e = parse(pairs(&[("nextToken", &t), ("sortOrder", "ASCENDING")])).unwrap_err();
        assert_eq!(e.code, "invalid_query");
        assert!(parse(pairs(&[("sortBy", "size")])).is_err());
        assert!(parse(pairs(&[("maxResults", "0")])).is_err());
    }
}
