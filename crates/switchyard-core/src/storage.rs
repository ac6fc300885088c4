//! An organization's key-value storage (`sdk.storage` in code, `/v1/orgs/{org}/storage/{key}`
//! in the API): what a key and a value may be. The whole organization's storage is held to its
//! `kv_bytes` limit by the store.

use crate::CoreError;
use serde_json::Value;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value, as JSON text.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

/// A key: at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), CoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(CoreError::invalid(format!(
            "a storage key is at most {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A value: any JSON of at most [`MAX_VALUE_BYTES`] as text.
pub fn check_value(value: &Value) -> Result<(), CoreError> {
    if value.to_string().len() > MAX_VALUE_BYTES {
        return Err(CoreError::invalid("a stored value is at most 256 KiB"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_values_are_bounded() {
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(check_value(&json!({"a": [1, 2, 3]})).is_ok());
        let big = json!("x".repeat(MAX_VALUE_BYTES));
        assert!(check_value(&big).is_err(), "256 KiB of text and its quotes");
    }
}
