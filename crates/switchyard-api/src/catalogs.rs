//! The platforms' catalogs: list them, read one with its schemas, and import one into an
//! organization as its event types.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Auth;
use axum::Json;
use axum::extract::{Path, State};
use std::collections::HashMap;
use switchyard_core::Role;
use switchyard_core::catalog::{catalog, catalogs};
pub use switchyard_wire::catalogs::*;

/// The catalogs: Enneo's, Enreach's and Enate's event types (without their schemas).
#[utoipa::path(get, tag = "catalogs", path = "/v1/catalogs", responses((status = 200, body = Vec<CatalogOut>)))]
pub async fn list(_caller: Auth) -> Json<Vec<CatalogOut>> {
    Json(
        catalogs()
            .iter()
            .map(|c| CatalogOut::from(c, false))
            .collect(),
    )
}

/// One catalog, with each type's JSON Schema.
#[utoipa::path(get, tag = "catalogs", path = "/v1/catalogs/{name}", responses((status = 200, body = CatalogOut)))]
pub async fn get(_caller: Auth, Path(name): Path<String>) -> ApiResult<Json<CatalogOut>> {
    let c = catalog(&name).ok_or_else(|| ApiError::not_found("catalog"))?;
    Ok(Json(CatalogOut::from(c, true)))
}

/// Makes every type of a catalog the organization's, with the catalog's description, entity
/// type and schema: in one transaction, and idempotent (a type that already has exactly the
/// catalog's definition is left as it is).
#[utoipa::path(post, tag = "catalogs", path = "/v1/orgs/{org}/catalogs/{name}/import",
    responses((status = 200, body = ImportedOut), (status = 404, description = "no such catalog")))]
pub async fn import(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<Json<ImportedOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let c = catalog(&name).ok_or_else(|| ApiError::not_found("catalog"))?;
    let existing: HashMap<String, _> = s
        .reads
        .list_event_types(&org)
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut out = ImportedOut {
        catalog: c.name.clone(),
        created: vec![],
        replaced: vec![],
        unchanged: vec![],
    };
    let mut writes = vec![];
    for t in &c.event_types {
        let wanted = t.event_type();
        match existing.get(&t.name) {
            None => out.created.push(t.name.clone()),
            Some(had)
                if had.description == wanted.description
                    && had.entity_type == wanted.entity_type
                    && had.schema == wanted.schema =>
            {
                out.unchanged.push(t.name.clone());
                continue;
            }
            Some(_) => out.replaced.push(t.name.clone()),
        }
        writes.push(wanted);
    }
    if !writes.is_empty() {
        s.hub.put_event_types(&org, &writes).await?;
    }
    Ok(Json(out))
}
