//! Dot paths into an event (`data.ticketId`, `entity.id`, `data.items.0`): parsed once, and
//! walked the same way by subscription filters, ordering keys and executor parameters.

use serde_json::Value;

/// A path of one or more non-empty segments; a segment that is a number also picks an array
/// element by index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DotPath(Vec<String>);

impl DotPath {
    /// The longest path written, in bytes.
    pub const MAX_LEN: usize = 200;

    /// `None` for an empty path, an empty segment (`data..id`, `.id`) or one over
    /// [`DotPath::MAX_LEN`].
    pub fn parse(s: &str) -> Option<DotPath> {
        if s.is_empty() || s.len() > Self::MAX_LEN || s.split('.').any(str::is_empty) {
            return None;
        }
        Some(DotPath(s.split('.').map(str::to_string).collect()))
    }

    /// The path below `first` (`data.ticketId` below `data` is `ticketId`); `None` when the
    /// path does not start with it or is nothing more.
    pub fn below(&self, first: &str) -> Option<DotPath> {
        match self.0.split_first() {
            Some((head, rest)) if head == first && !rest.is_empty() => Some(DotPath(rest.to_vec())),
            _ => None,
        }
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in `doc`, if there is one.
    pub fn lookup<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(doc, |v, seg| match v {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
    }
}

impl std::fmt::Display for DotPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_only_whole_segments() {
        for bad in ["", ".", "a.", ".a", "a..b"] {
            assert_eq!(DotPath::parse(bad), None, "{bad:?}");
        }
        assert_eq!(DotPath::parse(&"a".repeat(201)), None);
        let p = DotPath::parse("data.items.1.id").expect("valid");
        assert_eq!(p.segments().len(), 4);
        assert_eq!(p.to_string(), "data.items.1.id");
        assert_eq!(
            p.below("data").map(|p| p.to_string()).as_deref(),
            Some("items.1.id")
        );
        assert_eq!(p.below("entity"), None);
        assert_eq!(DotPath::parse("data").expect("valid").below("data"), None);
    }

    #[test]
    fn walks_objects_and_arrays() {
        let doc = json!({"data": {"items": [{"id": 1}, {"id": "two"}], "n": null}});
        let at = |p: &str| DotPath::parse(p).and_then(|p| p.lookup(&doc).cloned());
        assert_eq!(at("data.items.1.id"), Some(json!("two")));
        assert_eq!(at("data.items.0"), Some(json!({"id": 1})));
        assert_eq!(at("data.n"), Some(Value::Null));
        assert_eq!(at("data.items.x"), None);
        assert_eq!(at("data.items.5.id"), None);
        assert_eq!(at("data.missing.deeper"), None);
    }
}
