//! Prefixed, time-sortable identifiers (`evt_…`, `ep_…`, `sub_…`, `dlv_…`, `att_…`).
//!
//! A UUIDv7 rendered as lowercase hex: ids sort by creation time, which keeps B-tree inserts
//! at the right edge of the index and makes ids useful as pagination cursors.

/// A new id with the given prefix, e.g. `new_id("evt")` → `evt_0193…`.
pub fn new_id(prefix: &str) -> String {
    let uuid = uuid::Uuid::now_v7();
    let mut out = String::with_capacity(prefix.len() + 33);
    out.push_str(prefix);
    out.push('_');
    out.push_str(&uuid.simple().to_string());
    out
}

/// Checks a caller-chosen identifier (organization ids, caller event ids, resource names):
/// 1–200 characters of ASCII letters, digits and `-_.:@`.
/// At least one letter or digit is required, so `.` and `..` (which URL paths resolve away)
/// are never names.
pub fn is_valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'))
        && s.bytes().any(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_alone_are_not_names() {
        for bad in [".", "..", "...", "-", "", "a/b", "a b"] {
            assert!(!is_valid_name(bad, 200), "{bad:?}");
        }
        for good in ["a", "Ticket.Created", "..a", "x-1", "my-id-1"] {
            assert!(is_valid_name(good, 200), "{good:?}");
        }
    }

    #[test]
    fn ids_are_prefixed_unique_and_sorted() {
        let a = new_id("evt");
        let b = new_id("evt");
        assert!(a.starts_with("evt_"));
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("acme", 64));
        assert!(is_valid_name("my-id-1", 64));
        assert!(!is_valid_name("", 64));
        assert!(!is_valid_name("a b", 64));
        assert!(!is_valid_name("a/b", 64));
        assert!(!is_valid_name(&"x".repeat(65), 64));
    }
}
