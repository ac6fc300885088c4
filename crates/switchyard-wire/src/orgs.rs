//! Organizations and their API keys.

use serde::{Deserialize, Serialize};
use switchyard_core::time::to_rfc3339;
use switchyard_core::*;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgIn {
    /// 1–64 characters: letters, digits, `-_.:@`.
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrgOut {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl From<Org> for OrgOut {
    fn from(o: Org) -> Self {
        OrgOut {
            id: o.id,
            name: o.name,
            created_at: to_rfc3339(o.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// `admin`, `publisher` or `viewer`.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    pub id: String,
    /// The key itself: shown once, stored only as a hash.
    pub key: String,
    pub role: String,
    pub org: String,
}

#[derive(Serialize, ToSchema)]
pub struct KeyInfoOut {
    pub id: String,
    /// The first characters of the key, to tell keys apart (never the key).
    pub prefix: String,
    pub role: String,
    pub created_at: String,
    /// When the key was last used (to the minute), if ever.
    pub last_used_at: Option<String>,
}
