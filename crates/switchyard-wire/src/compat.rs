//! The platforms' own configuration shapes, verbatim: Enreach's webhook with its
//! subscriptions (seed 003) and Enate's webhook subscription (seed 004), in and out.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Seed 003's sample configuration: one webhook endpoint and the events bound to it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnreachConfigIn {
    #[serde(rename = "Webhook")]
    pub webhook: EnreachWebhookIn,
    #[serde(rename = "Subscriptions", default)]
    pub subscriptions: Vec<EnreachSubscriptionIn>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnreachWebhookIn {
    /// Full URL of the receiver.
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    /// Accept a self-signed certificate.
    #[serde(rename = "InsecureSSL", default)]
    pub insecure_ssl: bool,
    /// Sent in `X-Benemen-Token` on every request.
    #[serde(rename = "Secret")]
    pub secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnreachSubscriptionIn {
    #[serde(rename = "EventType")]
    pub event_type: String,
    /// One entity's events (a GUID, or any id the entity has).
    #[serde(rename = "EntityId")]
    pub entity_id: Option<String>,
    /// Events of all entities instead.
    #[serde(rename = "AllEntities")]
    pub all_entities: Option<bool>,
}

/// A webhook as configured, in Enreach's shape, with the ids to delete it by.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EnreachConfigOut {
    /// The webhook's id (its endpoint's, as a GUID): `DELETE …/compat/enreach/webhooks/{Id}`.
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Webhook")]
    pub webhook: EnreachWebhookOut,
    #[serde(rename = "Subscriptions")]
    pub subscriptions: Vec<EnreachSubscriptionOut>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EnreachWebhookOut {
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    #[serde(rename = "InsecureSSL")]
    pub insecure_ssl: bool,
    /// Whether a `Secret` is set (it is never shown again).
    #[serde(rename = "SecretSet")]
    pub secret_set: bool,
    /// The endpoint that delivers it (`/v1/orgs/{org}/endpoints/{id}`: health, replay).
    pub endpoint_id: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EnreachSubscriptionOut {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "EventType")]
    pub event_type: String,
    #[serde(rename = "EntityId", skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(rename = "AllEntities", skip_serializing_if = "Option::is_none")]
    pub all_entities: Option<bool>,
}

/// Seed 004's parameters of a webhook subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnateSubscriptionIn {
    /// The webhook subscribed to, i.e. `PacketCreated`.
    #[serde(rename = "Webhook")]
    pub webhook: String,
    /// A URL (http or https) that receives the messages.
    #[serde(rename = "SubscriberURL")]
    pub subscriber_url: String,
    /// 31 (Company), 215 (Contract), 217 (Service) or 911 (Process).
    #[serde(rename = "FilterObjectType")]
    #[schema(value_type = Option<i64>)]
    pub filter_object_type: Option<Value>,
    /// The GUID of that object.
    #[serde(rename = "FilterObjectGUID")]
    pub filter_object_guid: Option<String>,
    /// A header added to every message (with `CustomHeaderValue`).
    #[serde(rename = "CustomHeader")]
    pub custom_header: Option<String>,
    #[serde(rename = "CustomHeaderValue")]
    pub custom_header_value: Option<String>,
}

/// A webhook subscription in Enate's shape; `GUID` identifies it (and is the `GUID` of the
/// messages it receives).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EnateSubscriptionOut {
    #[serde(rename = "GUID")]
    pub guid: String,
    #[serde(rename = "Webhook")]
    pub webhook: String,
    #[serde(rename = "SubscriberURL")]
    pub subscriber_url: String,
    #[serde(rename = "FilterObjectType")]
    pub filter_object_type: Option<i64>,
    #[serde(rename = "FilterObjectGUID")]
    pub filter_object_guid: Option<String>,
    #[serde(rename = "CustomHeader", skip_serializing_if = "Option::is_none")]
    pub custom_header: Option<String>,
    /// Shown to admins only (it may be a credential).
    #[serde(rename = "CustomHeaderValue", skip_serializing_if = "Option::is_none")]
    pub custom_header_value: Option<String>,
    /// The subscription (`/v1/orgs/{org}/subscriptions/{id}`) and its endpoint.
    pub subscription_id: String,
    pub endpoint_id: String,
}
