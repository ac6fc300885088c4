//! Secrets: names and update times only, never values.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretIn {
    pub value: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretOut {
    pub name: String,
    pub updated_at: String,
}
