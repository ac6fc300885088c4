//! Organizations (tenants) and their API keys.

use crate::AppState;
use crate::error::{ApiError, ApiResult, path_id};
use crate::extract::{Auth, JsonBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::Org;
use switchyard_core::Role;
use switchyard_core::crypto::{api_key_prefix, generate_api_key, hash_api_key};
use switchyard_core::ids::KeyId;
use switchyard_core::org::OrgChanges;
use switchyard_core::time::{now_ms, to_rfc3339};
use switchyard_wire::List;
pub use switchyard_wire::orgs::*;

fn instance_admin(p: &switchyard_core::Principal) -> ApiResult<()> {
    if p.org.is_none() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the instance admin key manages organizations",
        ))
    }
}

/// The calling key: its organization and role.
#[utoipa::path(get, tag = "orgs", path = "/v1/whoami", responses((status = 200, body = WhoAmIOut)))]
pub async fn whoami(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<WhoAmIOut>> {
    let org_name = match &p.org {
        Some(org) => Some(s.reads.get_org(org).await?.name),
        None => None,
    };
    Ok(Json(WhoAmIOut {
        org: p.org.map(String::from),
        org_name,
        role: p.role.as_str().to_string(),
        key_id: p.key_id.into(),
    }))
}

/// Create an organization (instance admin key).
#[utoipa::path(post, tag = "orgs", path = "/v1/orgs", request_body = OrgIn,
    responses((status = 201, body = OrgOut), (status = 409, description = "the id is taken")))]
pub async fn create(
    State(s): State<AppState>,
    Auth(p): Auth,
    JsonBody(body): JsonBody<OrgIn>,
) -> ApiResult<(StatusCode, Json<OrgOut>)> {
    instance_admin(&p)?;
    let (id, changes) = body.changes();
    let org = Org::new(&id, changes, now_ms())?;
    let org = s.hub.create_org(&org).await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// Change an organization's name or retentions. An organization's own admin may shorten its
/// retention, or lengthen it up to the hub's; beyond that takes the instance admin key.
#[utoipa::path(patch, tag = "orgs", path = "/v1/orgs/{org}", request_body = OrgPatch,
    responses((status = 200, body = OrgOut), (status = 403, description = "longer than the hub's retention")))]
pub async fn patch(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<OrgPatch>,
) -> ApiResult<Json<OrgOut>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let mut o = s.reads.get_org(&org).await?;
    let changes: OrgChanges = body.into();
    let ceiling = s.hub.retention().max_age.map(|d| d.as_secs());
    if p.org.is_some()
        && let (Some(ceiling), Some(Some(asked))) = (ceiling, changes.retention_s)
        && asked > ceiling
    {
        return Err(ApiError::forbidden(format!(
            "`retention_s` {asked} is longer than this hub keeps data ({ceiling} s); \
             only the instance admin key can set it"
        )));
    }
    o.apply(changes)?;
    let o = s.hub.update_org(&o).await?;
    Ok(Json(o.into()))
}

/// An organization's limits: its shares of what the hub runs at once, its quotas on what it
/// stores and publishes, and what it uses of them.
#[utoipa::path(get, tag = "orgs", path = "/v1/orgs/{org}/limits", responses((status = 200, body = LimitsOut)))]
pub async fn get_limits(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<LimitsOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let o = s.reads.get_org(&org).await?;
    limits_out(&s, o).await
}

/// Set an organization's own limits (instance admin key): each given limit replaces the hub's
/// for it; the ones left out follow the hub's `[limits]`. In force at once on every node.
#[utoipa::path(put, tag = "orgs", path = "/v1/orgs/{org}/limits", request_body(content = Object),
    responses((status = 200, body = LimitsOut), (status = 403, description = "not the instance admin key")))]
pub async fn put_limits(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<switchyard_core::limits::OrgLimits>,
) -> ApiResult<Json<LimitsOut>> {
    if p.org.is_some() {
        return Err(ApiError::forbidden(
            "only the instance admin key sets an organization's limits",
        ));
    }
    let org = s.authorize(&p, org, Role::Admin).await?;
    body.check()?;
    let o = s.hub.set_org_limits(&org, body).await?;
    limits_out(&s, o).await
}

async fn limits_out(s: &AppState, o: Org) -> ApiResult<Json<LimitsOut>> {
    let usage = s.hub.usage(&o.id).await?;
    Ok(Json(LimitsOut {
        limits: s.hub.limits(&o.id),
        own: o.limits,
        usage,
    }))
}

/// List organizations (instance admin key).
#[utoipa::path(get, tag = "orgs", path = "/v1/orgs", responses((status = 200, body = List<OrgOut>)))]
pub async fn list(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<List<OrgOut>>> {
    instance_admin(&p)?;
    Ok(Json(List::whole(
        s.reads
            .list_orgs()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    )))
}

/// Read an organization.
#[utoipa::path(get, tag = "orgs", path = "/v1/orgs/{org}", responses((status = 200, body = OrgOut)))]
pub async fn get(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<OrgOut>> {
    let org = s.authorize(&p, org, Role::Viewer).await?;
    let o = s.reads.get_org(&org).await?;
    Ok(Json(o.into()))
}

/// Create an API key in an organization; the key is in the answer only.
#[utoipa::path(post, tag = "orgs", path = "/v1/orgs/{org}/keys", request_body = KeyIn, responses((status = 201, body = KeyOut)))]
pub async fn create_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<KeyIn>,
) -> ApiResult<(StatusCode, Json<KeyOut>)> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::invalid("`role` must be `admin`, `publisher` or `viewer`"))?;
    let key = generate_api_key();
    let id = s
        .hub
        .create_api_key(Some(&org), role, &hash_api_key(&key), &api_key_prefix(&key))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyOut {
            id: id.into(),
            key,
            role: role.as_str().into(),
            org: org.into(),
        }),
    ))
}

/// List an organization's keys: ids, prefixes, roles and use; never the keys.
#[utoipa::path(get, tag = "orgs", path = "/v1/orgs/{org}/keys", responses((status = 200, body = List<KeyInfoOut>)))]
pub async fn list_keys(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(org): Path<String>,
) -> ApiResult<Json<List<KeyInfoOut>>> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    let keys = s.reads.list_api_keys(&org).await?;
    Ok(Json(List::whole(
        keys.into_iter()
            .map(|k| KeyInfoOut {
                id: k.id.into(),
                prefix: k.prefix,
                role: k.role.as_str().into(),
                created_at: to_rfc3339(k.created_at),
                last_used_at: k.last_used_at.map(to_rfc3339),
            })
            .collect(),
    )))
}

/// Revoke a key: refused from the next request on, on this node at once.
#[utoipa::path(delete, tag = "orgs", path = "/v1/orgs/{org}/keys/{id}", responses((status = 204), (status = 404)))]
pub async fn revoke_key(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = s.authorize(&p, org, Role::Admin).await?;
    s.hub
        .revoke_api_key(&org, &path_id(KeyId::parse(&id), "key")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
