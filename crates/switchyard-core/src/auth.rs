//! Who calls: API keys' roles, the caller a key stands for, and a key as it is listed.

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Publisher,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "publisher" => Some(Role::Publisher),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Who is calling: a key of one organization, or the instance admin (`org == None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub org: Option<crate::ids::OrgId>,
    pub role: Role,
    pub key_id: crate::ids::KeyId,
}

/// An API key as listed: never the key, only what identifies it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    pub id: crate::ids::KeyId,
    /// `None` for instance admin keys.
    pub org_id: Option<crate::ids::OrgId>,
    pub role: Role,
    /// The first characters of the key (`sy_AbCd`), to tell keys apart.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Principal {
    /// May this caller act in `org` with at least `role`? The instance admin may act anywhere.
    pub fn may(&self, org: &str, role: Role) -> bool {
        match &self.org {
            None => true,
            Some(o) => o == org && self.role >= role,
        }
    }
}
