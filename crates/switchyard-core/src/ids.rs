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

/// Declares an id kind: a newtype over its text that derefs to `&str` (so it reads like one)
/// but is not one (so one kind is never passed where another is expected). `generate` makes a
/// new one with the kind's prefix; `parse` checks one given from outside — the prefix, then
/// 32 lower-case hex digits — so a malformed id is refused before any look-up.
macro_rules! id_kind {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        id_common!($(#[$doc])* $name);

        impl $name {
            /// The prefix before `_` of every id of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// A new id: the prefix and a time-ordered UUID.
            pub fn generate() -> $name {
                $name(new_id($prefix))
            }

            /// An id given from outside, if it has this kind's shape.
            pub fn parse(s: &str) -> Option<$name> {
                has_shape(s, $prefix).then(|| $name(s.to_string()))
            }
        }
    };
}

/// What every id kind has: the newtype, reading it as text, and storing it.
macro_rules! id_common {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// An id read back from where this hub stored it (trusted: it was made here or
            /// checked when it came in; older rows may predate the shape check).
            pub fn stored(s: String) -> $name {
                $name(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        #[cfg(feature = "sqlite")]
        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        /// Read back as stored (see [`Self::stored`]).
        #[cfg(feature = "sqlite")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(v).map($name)
            }
        }

        #[cfg(feature = "postgres")]
        impl postgres_types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &postgres_types::Type,
                out: &mut postgres_types::private::BytesMut,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.as_str().to_sql(ty, out)
            }
            fn accepts(ty: &postgres_types::Type) -> bool {
                <&str as postgres_types::ToSql>::accepts(ty)
            }
            postgres_types::to_sql_checked!();
        }

        /// Read back as stored (see [`Self::stored`]).
        #[cfg(feature = "postgres")]
        impl<'a> postgres_types::FromSql<'a> for $name {
            fn from_sql(
                ty: &postgres_types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                String::from_sql(ty, raw).map($name)
            }
            fn accepts(ty: &postgres_types::Type) -> bool {
                <String as postgres_types::FromSql>::accepts(ty)
            }
        }
    };
}

id_common!(
    /// An organization's id: chosen by whoever creates it, 1–64 characters of letters, digits
    /// and `-_.:@` (no prefix).
    OrgId
);

impl OrgId {
    /// An organization id given from outside, if it is a valid one.
    pub fn parse(s: &str) -> Option<OrgId> {
        is_valid_name(s, 64).then(|| OrgId(s.to_string()))
    }

    /// The same for a string the caller owns (no copy).
    pub fn parse_owned(s: String) -> Option<OrgId> {
        is_valid_name(&s, 64).then_some(OrgId(s))
    }
}

id_common!(
    /// An event's id: the publisher's own (its idempotency key: 1–200 characters of letters,
    /// digits and `-_.:@`), or a generated `evt_…`.
    EventId
);

impl EventId {
    /// A new id for an event published without one.
    pub fn generate() -> EventId {
        EventId(new_id("evt"))
    }

    /// An event id given from outside, if it is a valid one.
    pub fn parse(s: &str) -> Option<EventId> {
        is_valid_name(s, 200).then(|| EventId(s.to_string()))
    }

    /// The same for a string the caller owns (no copy).
    pub fn parse_owned(s: String) -> Option<EventId> {
        is_valid_name(&s, 200).then_some(EventId(s))
    }
}

/// Whether `s` is `PREFIX_` followed by 32 lower-case hex digits (what [`new_id`] makes).
fn has_shape(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

id_kind!(
    /// An endpoint's id (`ep_…`).
    EndpointId,
    "ep"
);
id_kind!(
    /// A subscription's id (`sub_…`).
    SubscriptionId,
    "sub"
);
id_kind!(
    /// A delivery's id (`dlv_…`).
    DeliveryId,
    "dlv"
);
id_kind!(
    /// An attempt's id (`att_…`).
    AttemptId,
    "att"
);
id_kind!(
    /// An executor run's id (`run_…`).
    RunId,
    "run"
);
id_kind!(
    /// An API key's id (`key_…`; never the key itself).
    KeyId,
    "key"
);

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
    fn typed_ids_have_their_kinds_shape() {
        let ep = EndpointId::generate();
        assert!(ep.starts_with("ep_"));
        assert_eq!(EndpointId::parse(&ep), Some(ep.clone()));
        assert_eq!(ep, *ep.as_str());
        for bad in [
            "",
            "ep_",
            "sub_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ep_0193AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "ep_0193aaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ep_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ep-0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ep_../../etc/passwd_aaaaaaaaaaaaaa",
        ] {
            assert_eq!(EndpointId::parse(bad), None, "{bad:?}");
        }
        assert!(SubscriptionId::parse(&SubscriptionId::generate()).is_some());
        assert_eq!(
            serde_json::to_string(&ep).expect("json"),
            format!("\"{ep}\""),
            "an id is its text on the wire"
        );
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
