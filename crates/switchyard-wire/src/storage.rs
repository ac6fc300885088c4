//! An organization's key-value storage: one key's JSON value.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageIn {
    /// Any JSON, at most 256 KiB as text.
    #[schema(value_type = Object)]
    pub value: Value,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct StorageOut {
    pub key: String,
    #[schema(value_type = Object)]
    pub value: Value,
}
