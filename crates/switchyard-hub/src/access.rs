//! Who may call, and the organizations and secrets they hold: API keys looked up by hash
//! (cached, bounded, dropped on this node and announced to the others when revoked), the
//! organizations known to exist (for the instance admin's requests), and the writes of
//! organizations, keys and secrets, each in one place.

use crate::{Hub, HubError};
use std::time::Duration;
use switchyard_core::ids::{KeyId, OrgId};
use switchyard_core::time::now_ms;
use switchyard_core::{Org, Principal, Role};
use switchyard_store::Notice;

/// How long a key is trusted without asking the store again; its use is recorded then, so a
/// revocation this node did not hear of takes effect within this time.
const KEY_TTL: Duration = Duration::from_secs(60);
/// Keys and organizations kept at most (each a few hundred bytes).
const KEPT: u64 = 100_000;

/// Authenticated keys by hash.
pub(crate) type KeyCache = moka::future::Cache<String, Principal>;
/// Organizations known to exist.
pub(crate) type OrgCache = moka::future::Cache<OrgId, ()>;

pub(crate) fn key_cache() -> KeyCache {
    moka::future::Cache::builder()
        .max_capacity(KEPT)
        .time_to_live(KEY_TTL)
        .support_invalidation_closures()
        .build()
}

pub(crate) fn org_cache() -> OrgCache {
    moka::future::Cache::builder()
        .max_capacity(KEPT)
        .time_to_live(KEY_TTL)
        .build()
}

/// Credentials minted for one `sdk.api` call of a run (never stored, never shown to the
/// code), by hash, until the call answers.
#[derive(Default)]
pub(crate) struct RunCredentials(std::sync::Mutex<std::collections::HashMap<String, Principal>>);

/// How code reaches this hub's API: where it listens, and credentials for one call.
pub(crate) struct SelfApi {
    pub(crate) address: Option<std::net::SocketAddr>,
    pub(crate) credentials: std::sync::Arc<RunCredentials>,
}

impl switchyard_exec::SelfApi for SelfApi {
    fn address(&self) -> Option<std::net::SocketAddr> {
        self.address
    }

    fn mint(&self, org: &OrgId, role: Role) -> String {
        let credential = switchyard_core::crypto::generate_api_key();
        let principal = Principal {
            org: Some(org.clone()),
            role,
            key_id: KeyId::generate(),
        };
        if let Ok(mut m) = self.credentials.0.lock() {
            m.insert(
                switchyard_core::crypto::hash_api_key(&credential),
                principal,
            );
        }
        credential
    }

    fn revoke(&self, credential: &str) {
        if let Ok(mut m) = self.credentials.0.lock() {
            m.remove(&switchyard_core::crypto::hash_api_key(credential));
        }
    }
}

impl Hub {
    /// The caller a stored key (by its hash) stands for, or `None` for a key that is not one.
    /// A key found in the store has its use recorded, at most once per [`KEY_TTL`].
    pub async fn principal_of(&self, key_hash: &str) -> Result<Option<Principal>, HubError> {
        if let Some(p) = self.inner.keys.get(key_hash).await {
            return Ok(Some(p));
        }
        // A credential of an `sdk.api` call in progress: never cached, never stored.
        if let Some(p) = self
            .inner
            .run_credentials
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(key_hash).cloned())
        {
            return Ok(Some(p));
        }
        let Some(p) = self.inner.store.find_api_key(key_hash).await? else {
            return Ok(None);
        };
        self.inner.keys.insert(key_hash.to_owned(), p.clone()).await;
        // Recorded without making the request wait for it.
        let (store, id) = (self.inner.store.clone(), p.key_id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, now_ms()).await {
                tracing::debug!(error = %e, "recording a key's use failed");
            }
        });
        Ok(Some(p))
    }

    /// Whether organization `org` exists (`NotFound` if not).
    pub async fn org_exists(&self, org: &OrgId) -> Result<(), HubError> {
        if self.inner.orgs.contains_key(org) {
            return Ok(());
        }
        self.inner.store.get_org(org).await?;
        self.inner.orgs.insert(org.clone(), ()).await;
        Ok(())
    }

    /// Creates an organization.
    pub async fn create_org(&self, org: &Org) -> Result<Org, HubError> {
        Ok(self.inner.store.create_org(org).await?)
    }

    /// Replaces an organization's name and retentions.
    pub async fn update_org(&self, org: &Org) -> Result<Org, HubError> {
        Ok(self.inner.store.update_org(org).await?)
    }

    /// Stores a new key of `org` (the instance's with `None`) by its hash and prefix.
    pub async fn create_api_key(
        &self,
        org: Option<&OrgId>,
        role: Role,
        key_hash: &str,
        prefix: &str,
    ) -> Result<KeyId, HubError> {
        Ok(self
            .inner
            .store
            .create_api_key(org, role, key_hash, prefix)
            .await?)
    }

    /// Revokes a key: refused from its next request on, at once on this node, and on the
    /// others when they hear of it (within [`KEY_TTL`] if they do not).
    pub async fn revoke_api_key(&self, org: &OrgId, id: &KeyId) -> Result<(), HubError> {
        self.inner.store.delete_api_key(org, id).await?;
        self.forget_key(id.as_str());
        self.announce(Notice::Key {
            key_id: id.to_string(),
        });
        Ok(())
    }

    /// Drops key `key_id` from this node's cache.
    pub(crate) fn forget_key(&self, key_id: &str) {
        let key_id = key_id.to_owned();
        if let Err(e) = self
            .inner
            .keys
            .invalidate_entries_if(move |_, p| p.key_id.as_str() == key_id)
        {
            // Closures are enabled on the cache; were they not, forget every key.
            tracing::warn!(error = %e, "dropping a revoked key from the cache");
            self.inner.keys.invalidate_all();
        }
    }

    /// Stores (or replaces) one of `org`'s secrets, encrypted.
    pub async fn put_secret(&self, org: &OrgId, name: &str, value: &str) -> Result<(), HubError> {
        Ok(self.inner.store.put_secret(org, name, value).await?)
    }

    /// Deletes one of `org`'s secrets.
    pub async fn delete_secret(&self, org: &OrgId, name: &str) -> Result<(), HubError> {
        Ok(self.inner.store.delete_secret(org, name).await?)
    }
}
