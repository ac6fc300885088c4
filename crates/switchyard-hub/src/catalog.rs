//! The catalog's writes: every change to an organization's endpoints, subscriptions, event
//! types, executors, hooks and schedules goes through here, so that each one checks its quota,
//! writes, drops what it makes stale on this node and tells the other nodes, in one place. A
//! front (the API, the CLI through the API, a configuration loader) never pairs a write with
//! its invalidation itself.

use crate::{Hub, HubError};
use switchyard_core::executor::Executor;
use switchyard_core::ids::{EndpointId, OrgId, SubscriptionId};
use switchyard_core::{Endpoint, EventType, Schedule, Subscription, SyncHook};
use switchyard_store::{Missing, StoreError};

impl Hub {
    /// Creates an endpoint (no subscription routes to it yet), within the endpoints quota.
    pub async fn create_endpoint(&self, ep: &Endpoint) -> Result<Endpoint, HubError> {
        self.within_quota(&ep.org_id, |u| u.endpoints += 1).await?;
        Ok(self.inner.store.create_endpoint(ep).await?)
    }

    /// Replaces an endpoint's settings (a patch, a rotated secret): every node uses the new
    /// ones from its next request.
    pub async fn update_endpoint(&self, ep: &Endpoint) -> Result<Endpoint, HubError> {
        let saved = self.inner.store.update_endpoint(ep).await?;
        self.endpoint_changed(&ep.org_id, ep.id.as_str());
        Ok(saved)
    }

    /// Deletes an endpoint with its subscriptions; its pending deliveries become `failed`.
    pub async fn delete_endpoint(&self, org: &OrgId, id: &EndpointId) -> Result<(), HubError> {
        self.inner.store.delete_endpoint(org, id).await?;
        self.endpoint_changed(org, id.as_str());
        Ok(())
    }

    /// Creates subscriptions (and, with `new_endpoint`, the endpoint they own) in one
    /// transaction, within the subscriptions and endpoints quotas; routing changes at once.
    pub async fn create_subscriptions(
        &self,
        org: &OrgId,
        subs: &[Subscription],
        new_endpoint: Option<&Endpoint>,
    ) -> Result<Vec<Subscription>, HubError> {
        self.within_quota(org, |u| {
            u.subscriptions += subs.len() as u64;
            u.endpoints += u64::from(new_endpoint.is_some());
        })
        .await?;
        let saved = self
            .inner
            .store
            .create_subscriptions(subs, new_endpoint)
            .await?;
        self.routing_changed(org);
        Ok(saved)
    }

    /// One subscription, as [`Hub::create_subscriptions`] creates them.
    pub async fn create_subscription(
        &self,
        sub: &Subscription,
        new_endpoint: Option<&Endpoint>,
    ) -> Result<Subscription, HubError> {
        let mut saved = self
            .create_subscriptions(&sub.org_id, std::slice::from_ref(sub), new_endpoint)
            .await?;
        saved
            .pop()
            .ok_or(HubError::Store(StoreError::NotFound(Missing::Subscription)))
    }

    /// Deletes a subscription (and the endpoint made for its inline URL).
    pub async fn delete_subscription(
        &self,
        org: &OrgId,
        id: &SubscriptionId,
    ) -> Result<(), HubError> {
        self.inner.store.delete_subscription(org, id).await?;
        self.routing_changed(org);
        Ok(())
    }

    /// Creates or replaces event types, all or none; every node checks events against the
    /// new schemas from now on.
    pub async fn put_event_types(
        &self,
        org: &OrgId,
        types: &[EventType],
    ) -> Result<Vec<EventType>, HubError> {
        let saved = self.inner.store.put_event_types(org, types).await?;
        for t in types {
            self.event_type_changed(org, &t.name).await;
        }
        Ok(saved)
    }

    /// One event type, as [`Hub::put_event_types`] saves them.
    pub async fn put_event_type(&self, org: &OrgId, t: &EventType) -> Result<EventType, HubError> {
        let mut saved = self.put_event_types(org, std::slice::from_ref(t)).await?;
        saved
            .pop()
            .ok_or(HubError::Store(StoreError::NotFound(Missing::EventType)))
    }

    /// Saves a new version of an executor (a new name within the executors quota); runs use
    /// it from now on, on every node.
    pub async fn put_executor(&self, ex: &Executor) -> Result<Executor, HubError> {
        let new_name = matches!(
            self.inner.store.get_executor(&ex.org_id, ex.name()).await,
            Err(StoreError::NotFound(_))
        );
        let owner = crate::tools::ToolTarget::Executor(ex.name().to_string());
        self.check_tool_name_free(&ex.org_id, ex.tool(), &owner)
            .await?;
        self.within_quota(&ex.org_id, |u| u.executors += u64::from(new_name))
            .await?;
        let saved = self.inner.store.put_executor(ex).await?;
        self.executor_changed(&saved.org_id, saved.name()).await;
        if let Some(set) = saved.packages().cloned() {
            self.install_packages(&saved, set);
        }
        Ok(saved)
    }

    /// Installs the packages of version `ex` in the background (never at run time): its state
    /// goes from `installing` to `ready` with the lock, or `failed` with the installer's
    /// output, on every node.
    pub(crate) fn install_packages(
        &self,
        ex: &Executor,
        set: switchyard_core::packages::PackageSet,
    ) {
        let hub = self.clone();
        let (org, name, version) = (ex.org_id.clone(), ex.name().to_string(), ex.version);
        tokio::spawn(async move {
            use switchyard_core::packages::PackageState;
            let state = match hub.inner.runner.install_packages(&set).await {
                Ok(installed) => PackageState::Ready {
                    key: installed.key,
                    lock: installed.lock,
                },
                Err(e) => PackageState::Failed {
                    output: e.to_string(),
                },
            };
            if let Err(e) = hub
                .inner
                .store
                .set_packages_state(&org, &name, version, &state)
                .await
            {
                tracing::warn!(%org, executor = %name, version, error = %e, "an install's state could not be saved");
            }
            hub.executor_changed(&org, &name).await;
        });
    }

    /// Deletes an executor with all its versions and the subscriptions that run it.
    pub async fn delete_executor(&self, org: &OrgId, name: &str) -> Result<(), HubError> {
        self.inner.store.delete_executor(org, name).await?;
        self.routing_changed(org);
        self.executor_changed(org, name).await;
        Ok(())
    }

    /// Creates or replaces a synchronous hook; its cached answers are forgotten on every node.
    pub async fn put_sync_hook(&self, hook: &SyncHook) -> Result<SyncHook, HubError> {
        let owner = crate::tools::ToolTarget::Hook(hook.name.clone());
        self.check_tool_name_free(&hook.org_id, hook.tool.as_ref(), &owner)
            .await?;
        let saved = self.inner.store.put_sync_hook(hook).await?;
        self.hook_changed(&hook.org_id, &hook.name).await;
        Ok(saved)
    }

    /// Deletes a hook (its executor stays) and forgets its cached answers.
    pub async fn delete_sync_hook(&self, org: &OrgId, name: &str) -> Result<(), HubError> {
        self.inner.store.delete_sync_hook(org, name).await?;
        self.hook_changed(org, name).await;
        Ok(())
    }

    /// Creates or replaces a schedule (`existing` is the one it replaces): what it publishes
    /// must pass its event type's checks now, and it stays within the schedules quotas; the
    /// scheduler looks again at once.
    pub async fn put_schedule(
        &self,
        schedule: &Schedule,
        existing: Option<&Schedule>,
    ) -> Result<Schedule, HubError> {
        self.check_schedule(schedule).await?;
        let bytes = |data: &serde_json::Value| data.to_string().len() as u64;
        self.within_quota(&schedule.org_id, |u| {
            u.schedules += u64::from(existing.is_none());
            u.schedule_bytes = (u.schedule_bytes + bytes(&schedule.data))
                .saturating_sub(existing.map_or(0, |e| bytes(&e.data)));
        })
        .await?;
        let saved = self.inner.store.put_schedule(schedule).await?;
        self.schedules_changed();
        Ok(saved)
    }

    /// Deletes a schedule; the events it published stay.
    pub async fn delete_schedule(&self, org: &OrgId, name: &str) -> Result<(), HubError> {
        self.inner.store.delete_schedule(org, name).await?;
        self.schedules_changed();
        Ok(())
    }
}
