//! Stored rows to domain values, strictly: a value that cannot be decoded is an error naming its
//! column, never a default; and the encryption of endpoint secrets on the way in.

use super::*;
use switchyard_core::filter::SubscriptionFilter;
use switchyard_core::{StoredAttempt, StoredEndpoint};

pub(super) fn org_from_row(r: &Row) -> rusqlite::Result<Org> {
    Ok(Org {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        retention_s: r.get(3)?,
        payload_retention_s: r.get(4)?,
        limits: json_col(r, 5, "organization limits")?,
    })
}

/// A JSON column decoded strictly: text that does not decode is an error naming the column.
pub(super) fn json_col<T: serde::de::DeserializeOwned>(
    r: &Row,
    col: usize,
    what: &str,
) -> rusqlite::Result<T> {
    let text: String = r.get(col)?;
    serde_json::from_str(&text).map_err(|e| corrupt(col, what, &format!("{e}")))
}

/// A nullable JSON column decoded strictly.
pub(super) fn json_col_opt<T: serde::de::DeserializeOwned>(
    r: &Row,
    col: usize,
    what: &str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = r.get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(col, what, &format!("{e}"))))
        .transpose()
}

pub(super) fn event_type_from_row(r: &Row) -> rusqlite::Result<EventType> {
    Ok(EventType {
        name: r.get(0)?,
        description: r.get(1)?,
        entity_type: r.get(2)?,
        schema: json_col_opt(r, 3, "event type schema")?,
        updated_at: r.get(4)?,
    })
}

pub(super) fn event_from_row(r: &Row) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        org_id: r.get(1)?,
        id: r.get(2)?,
        event_type: r.get(3)?,
        timestamp: r.get(4)?,
        entity: EntityRef {
            kind: r.get(5)?,
            id: r.get(6)?,
        },
        data: json_col(r, 7, "event data")?,
        received_at: r.get(8)?,
        payload_dropped_at: r.get(9)?,
        body: Default::default(),
    })
}

/// A column whose stored value cannot be decoded: an error, never a silent default.
pub(super) fn corrupt(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("corrupt {what}: `{value}`").into(),
    )
}

pub(super) fn endpoint_from_row(r: &Row, key: &MasterKey) -> rusqlite::Result<Endpoint> {
    let id: String = r.get(0)?;
    let secrets_enc: Vec<u8> = r.get(12)?;
    let (token, secrets) =
        open_endpoint_secrets(key, &id, r.get(6)?, &secrets_enc).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, e.into())
        })?;
    let profile: String = r.get(4)?;
    let headers: String = r.get(5)?;
    let schedule: Option<String> = r.get(10)?;
    Ok(Endpoint::stored(StoredEndpoint {
        org_id: r.get(1)?,
        url: r.get(2)?,
        description: r.get(3)?,
        profile: Profile::parse(&profile).ok_or_else(|| corrupt(4, "profile", &profile))?,
        headers: serde_json::from_str(&headers)
            .map_err(|e| corrupt(5, "headers", &e.to_string()))?,
        token,
        token_header: r.get(7)?,
        insecure_tls: r.get(8)?,
        timeout_ms: r.get(9)?,
        retry_schedule_s: schedule
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| corrupt(10, "retry schedule", &e.to_string()))
            })
            .transpose()?,
        max_in_flight: r.get(11)?,
        secrets,
        enabled: r.get(13)?,
        disabled_reason: r.get(14)?,
        owner_subscription: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
        ordering: ordering_from_columns(r, 19, 20)?,
        max_rps: r.get(18)?,
        id: EndpointId::stored(id),
    }))
}

pub(super) fn target_from_columns(
    endpoint_id: Option<String>,
    executor: Option<String>,
) -> rusqlite::Result<Target> {
    Target::from_columns(endpoint_id, executor).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Null,
            "a row must have exactly one of endpoint_id and executor".into(),
        )
    })
}

pub(super) fn sub_from_row(r: &Row) -> rusqlite::Result<Subscription> {
    Ok(Subscription::stored(StoredSubscription {
        id: r.get(0)?,
        org_id: r.get(1)?,
        event_types: json_col(r, 2, "event types")?,
        target: target_from_columns(r.get(3)?, r.get(7)?)?,
        entity_id: r.get(4)?,
        filter: json_col_opt::<Value>(r, 5, "filter")?
            .map(|doc| {
                SubscriptionFilter::parse(doc).map_err(|e| corrupt(5, "filter", &e.to_string()))
            })
            .transpose()?,
        mode: {
            let m: String = r.get(8)?;
            Mode::parse(&m).ok_or_else(|| corrupt(8, "subscription mode", &m))?
        },
        created_at: r.get(6)?,
    }))
}

/// An endpoint's ordering from its two columns (`ordering_key` NULL: unordered).
pub(super) fn ordering_from_columns(
    r: &Row,
    key_col: usize,
    failure_col: usize,
) -> rusqlite::Result<Option<switchyard_core::ordering::Ordering>> {
    ordering_of(r.get(key_col)?, r.get(failure_col)?).map_err(|(what, value)| {
        let col = if what == "ordering key" {
            key_col
        } else {
            failure_col
        };
        corrupt(col, what, &value)
    })
}

pub(super) fn health_from_row(
    r: &Row,
) -> rusqlite::Result<switchyard_core::health::EndpointHealth> {
    Ok(switchyard_core::health::EndpointHealth {
        consecutive_failures: r.get(0)?,
        failing_since: r.get(1)?,
        last_success_at: r.get(2)?,
        last_failure_at: r.get(3)?,
        last_error: r.get(4)?,
        window: Default::default(),
    })
}

pub(super) fn delivery_from_row(r: &Row) -> rusqlite::Result<Delivery> {
    let status: String = r.get(5)?;
    // A claim's lease is kept in `next_attempt_at`: while it runs, the delivery is being
    // attempted now and has no next attempt yet.
    let claimed: Option<String> = r.get(12)?;
    let (next, in_flight) = delivery_timing(claimed.is_some(), r.get(7)?);
    Ok(Delivery {
        id: r.get(0)?,
        org_id: r.get(1)?,
        event_id: r.get(2)?,
        target: target_from_columns(r.get(3)?, r.get(10)?)?,
        subscription_id: r.get(4)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(5, "delivery status", &status))?,
        attempts: r.get(6)?,
        next_attempt_at: next,
        in_flight,
        ordering_key: r.get(11)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub(super) fn attempt_from_row(r: &Row) -> rusqlite::Result<Attempt> {
    Ok(Attempt::stored(StoredAttempt {
        id: r.get(0)?,
        delivery_id: r.get(1)?,
        at: r.get(2)?,
        status_code: r.get(3)?,
        duration_ms: r.get(4)?,
        error: r.get(5)?,
        response_body: r.get(6)?,
        waited: r.get(7)?,
        retry_reason: r.get(8)?,
        request_headers: json_col_opt(r, 9, "attempt request headers")?,
        node: r.get(10)?,
    }))
}

pub(super) fn executor_from_row(r: &Row) -> rusqlite::Result<Executor> {
    Ok(Executor::stored(
        switchyard_core::executor::StoredExecutor {
            org_id: r.get(0)?,
            name: r.get(1)?,
            version: r.get(2)?,
            description: r.get(3)?,
            spec: json_col(r, 4, "executor spec")?,
            parameters: json_col_opt(r, 5, "executor parameters")?,
            retries: r.get(6)?,
            created_at: r.get(7)?,
            tool: json_col_opt(r, 8, "executor tool")?,
            packages: json_col_opt(r, 9, "executor packages")?,
            packages_state: json_col_opt(r, 10, "executor packages state")?,
        },
    ))
}

pub(super) fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    let status: String = r.get(5)?;
    Ok(Run {
        id: r.get(0)?,
        org_id: r.get(1)?,
        executor: r.get(2)?,
        version: r.get(3)?,
        event_id: r.get(4)?,
        status: parse_run_status(&status).ok_or_else(|| corrupt(5, "run status", &status))?,
        input: json_col(r, 6, "run input")?,
        output: json_col_opt(r, 7, "run output")?,
        error: r.get(8)?,
        logs: json_col(r, 9, "run logs")?,
        stderr: r.get(10)?,
        exit: r.get(11)?,
        duration_ms: r.get(12)?,
        at: r.get(13)?,
        hook: r.get(14)?,
        failure: match r.get::<_, Option<String>>(15)? {
            None => None,
            Some(f) => Some(
                switchyard_core::executor::RunFailure::parse(&f)
                    .ok_or_else(|| corrupt(15, "run failure", &f))?,
            ),
        },
    })
}

pub(super) fn sync_hook_from_row(r: &Row) -> rusqlite::Result<SyncHook> {
    Ok(SyncHook {
        org_id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        executor: r.get(3)?,
        timeout_ms: r.get(4)?,
        cache_ttl_s: r.get(5)?,
        input_schema: json_col_opt(r, 6, "hook input schema")?,
        output_schema: json_col_opt(r, 7, "hook output schema")?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        tool: json_col_opt(r, 10, "hook tool")?,
    })
}

pub(super) fn schedule_from_row(r: &Row) -> rusqlite::Result<Schedule> {
    let misfire: String = r.get(8)?;
    Ok(Schedule {
        org_id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        cron: r.get(3)?,
        timezone: r.get(4)?,
        event_type: r.get(5)?,
        data: json_col(r, 6, "schedule data")?,
        enabled: r.get(7)?,
        misfire: switchyard_core::schedule::Misfire::parse(&misfire)
            .ok_or_else(|| corrupt(8, "schedule misfire", &misfire))?,
        next_fire_at: r.get(9)?,
        last_fired_at: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}
