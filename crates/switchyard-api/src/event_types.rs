//! Event types: names, descriptions, entity types and optional JSON Schemas for their data.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;
use switchyard_core::schema::Schema;
use switchyard_core::{EventType, Role};
use switchyard_wire::List;
pub use switchyard_wire::event_types::*;

pub use switchyard_core::valid_type_name;

/// Create or replace an event type.
#[utoipa::path(put, tag = "event_types", path = "/v1/orgs/{org}/event-types/{name}", request_body = EventTypeIn,
    responses((status = 200, body = EventTypeOut), (status = 422, description = "invalid name or schema")))]
pub async fn put(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<EventTypeIn>,
) -> ApiResult<Json<EventTypeOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    if !valid_type_name(&name) {
        return Err(ApiError::invalid(
            "event type names are 1–200 characters of letters, digits and -_.:",
        ));
    }
    let schema = match body.schema {
        None | Some(Value::Null) => None,
        Some(doc) => {
            Schema::compile(&doc).map_err(ApiError::from)?;
            Some(doc)
        }
    };
    let t = EventType {
        name: name.clone(),
        description: body.description,
        entity_type: body.entity_type,
        schema,
        updated_at: 0,
    };
    let saved = s.hub.put_event_type(&org, &t).await?;
    Ok(Json(saved.into()))
}

/// Read one event type.
#[utoipa::path(get, tag = "event_types", path = "/v1/orgs/{org}/event-types/{name}", responses((status = 200, body = EventTypeOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, name)): Path<(String, String)>,
) -> ApiResult<Json<EventTypeOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let t = s.reads.get_event_type(&org, &name).await?;
    Ok(Json(t.into()))
}

/// List event types.
#[utoipa::path(get, tag = "event_types", path = "/v1/orgs/{org}/event-types", responses((status = 200, body = List<EventTypeOut>)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<EventTypeOut>>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    Ok(Json(List::whole(
        s.reads
            .list_event_types(&org)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    )))
}
