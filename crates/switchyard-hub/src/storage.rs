//! An organization's key-value storage through the hub's door: the API reads and writes it as
//! code's `sdk.storage` does, under the same rules (`switchyard_core::storage`) and the
//! organization's `kv_bytes` quota.

use crate::{Hub, HubError};
use serde_json::Value;
use switchyard_core::ids::OrgId;
use switchyard_core::storage::{check_key, check_value};

impl Hub {
    /// The value stored under `key` (`None`: nothing is).
    pub async fn storage_get(&self, org: &OrgId, key: &str) -> Result<Option<Value>, HubError> {
        check_key(key)?;
        Ok(self.inner.store.kv_get(org, key).await?)
    }

    /// Stores `value` under `key`, within the organization's `kv_bytes`.
    pub async fn storage_set(&self, org: &OrgId, key: &str, value: &Value) -> Result<(), HubError> {
        check_key(key)?;
        check_value(value)?;
        let quota = self.inner.shares.limits(org.as_str()).kv_bytes;
        Ok(self.inner.store.kv_set(org, key, value, quota).await?)
    }

    /// Deletes `key`; whether there was one.
    pub async fn storage_delete(&self, org: &OrgId, key: &str) -> Result<bool, HubError> {
        check_key(key)?;
        Ok(self.inner.store.kv_delete(org, key).await?)
    }
}
