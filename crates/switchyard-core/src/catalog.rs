//! The platforms' event catalogs (Enneo, Enreach, Enate): every event type their documents
//! name, with its entity type, description and a JSON Schema for its data.
//!
//! The catalogs are data files (`catalogs/*.json`) generated from the platforms' own documents
//! by `tests/catalogs.rs`, which also checks them against those documents on every test run.
//! They are compiled into the binary and parsed once.

use crate::EventType;
use serde::Deserialize;
use serde_json::Value;
use std::sync::LazyLock;

/// One platform's catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    /// `enneo`, `enreach` or `enate`.
    pub name: String,
    pub title: String,
    pub description: String,
    pub event_types: Vec<CatalogType>,
    /// The built-in schedules (by name) that publish some of these types (Enneo's Cron events).
    #[serde(default)]
    pub schedule_presets: Vec<String>,
}

/// One event type of a catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogType {
    pub name: String,
    pub entity_type: Option<String>,
    pub description: String,
    pub schema: Value,
}

impl CatalogType {
    /// The event type an import stores.
    pub fn event_type(&self) -> EventType {
        EventType {
            name: self.name.clone(),
            description: self.description.clone(),
            entity_type: self.entity_type.clone(),
            schema: Some(self.schema.clone()),
            updated_at: 0,
        }
    }
}

/// The catalogs' source files, by name.
const SOURCES: [(&str, &str); 3] = [
    ("enneo", include_str!("../catalogs/enneo.json")),
    ("enreach", include_str!("../catalogs/enreach.json")),
    ("enate", include_str!("../catalogs/enate.json")),
];

static CATALOGS: LazyLock<Vec<Catalog>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(name, text)| {
            // A malformed catalog is a build defect that every test run catches.
            let c: Catalog = serde_json::from_str(text).expect("built-in catalogs are valid");
            debug_assert_eq!(&c.name, name);
            c
        })
        .collect()
});

/// Every built-in catalog.
pub fn catalogs() -> &'static [Catalog] {
    &CATALOGS
}

/// The catalog called `name`.
pub fn catalog(name: &str) -> Option<&'static Catalog> {
    catalogs().iter().find(|c| c.name == name)
}

/// The raw text of the catalog called `name`, as checked in (for the generator's comparison).
pub fn catalog_source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn every_catalog_type_has_a_valid_name_and_a_schema_that_compiles() {
        for c in catalogs() {
            assert!(!c.event_types.is_empty(), "{}", c.name);
            for t in &c.event_types {
                assert!(crate::valid_type_name(&t.name), "{}", t.name);
                Schema::compile(&t.schema).unwrap_or_else(|e| panic!("{}/{}: {e}", c.name, t.name));
            }
        }
        assert!(catalog("enreach").is_some());
        assert!(catalog("nope").is_none());
    }
}
