//! The platforms' catalogs (Enneo, Enreach, Enate) and what importing one did.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::catalog::{Catalog, CatalogType};
use utoipa::ToSchema;

/// A catalog: its event types, each with its schema when the catalog is read alone.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CatalogOut {
    /// `enneo`, `enreach` or `enate`: `POST /v1/orgs/{org}/catalogs/{name}/import`.
    pub name: String,
    pub title: String,
    pub description: String,
    pub event_types: Vec<CatalogTypeOut>,
    /// Built-in schedules that publish some of these types (`GET /v1/schedule-presets`).
    pub schedule_presets: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CatalogTypeOut {
    pub name: String,
    pub entity_type: Option<String>,
    pub description: String,
    /// The JSON Schema of the type's data (left out of the list of all catalogs).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

impl CatalogOut {
    pub fn from(c: &Catalog, with_schemas: bool) -> Self {
        CatalogOut {
            name: c.name.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            event_types: c
                .event_types
                .iter()
                .map(|t: &CatalogType| CatalogTypeOut {
                    name: t.name.clone(),
                    entity_type: t.entity_type.clone(),
                    description: t.description.clone(),
                    schema: with_schemas.then(|| t.schema.clone()),
                })
                .collect(),
            schedule_presets: c.schedule_presets.clone(),
        }
    }
}

/// What an import did: every type of the catalog is now the organization's, as the catalog
/// defines it (importing again changes nothing more).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImportedOut {
    pub catalog: String,
    /// The types that did not exist before.
    pub created: Vec<String>,
    /// The types that existed and now have the catalog's definition.
    pub replaced: Vec<String>,
    /// The types that already had exactly the catalog's definition.
    pub unchanged: Vec<String>,
}
