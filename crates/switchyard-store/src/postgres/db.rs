//! The connection handle every query goes through (a pooled connection or a transaction on
//! one, statements prepared once per connection), and stored rows decoded strictly: a value
//! that cannot be decoded is an error naming its column, never a default.

use super::*;
use switchyard_core::executor::{Executor, Run};
use switchyard_core::filter::SubscriptionFilter;
use switchyard_core::{StoredAttempt, StoredEndpoint};
use tokio_postgres::types::{FromSql, ToSql};

/// A statement's parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Where a query runs: on a pooled connection, or inside a transaction on one.
#[derive(Clone, Copy)]
pub(super) enum Db<'a> {
    C(&'a deadpool_postgres::ClientWrapper),
    T(&'a deadpool_postgres::Transaction<'a>),
}

impl Db<'_> {
    async fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        match self {
            Db::C(c) => c.prepare_cached(sql).await,
            Db::T(t) => t.prepare_cached(sql).await,
        }
        .map_err(pg_err)
    }

    pub(super) async fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.statement(sql).await?;
        match self {
            Db::C(c) => c.query(&st, params).await,
            Db::T(t) => t.query(&st, params).await,
        }
        .map_err(pg_err)
    }

    pub(super) async fn opt_row(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let st = self.statement(sql).await?;
        match self {
            Db::C(c) => c.query_opt(&st, params).await,
            Db::T(t) => t.query_opt(&st, params).await,
        }
        .map_err(pg_err)
    }

    /// The one row the query returns; `NotFound` without one.
    pub(super) async fn row(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.opt_row(sql, params)
            .await?
            .ok_or(StoreError::NotFound(Missing::Row))
    }

    pub(super) async fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        let st = self.statement(sql).await?;
        match self {
            Db::C(c) => c.execute(&st, params).await,
            Db::T(t) => t.execute(&st, params).await,
        }
        .map_err(pg_err)
    }

    /// Holds `key` (of endpoint `ep`) until the transaction ends: every change to which
    /// delivery heads an ordering key takes it, so two nodes never both make a head.
    pub(super) async fn lock_key(&self, ep: &str, key: &str) -> Result<()> {
        self.rows(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(1) || $2, 0))",
            &[&ep, &key],
        )
        .await?;
        Ok(())
    }
}

/// A query whose conditions are added one by one, each with its parameter (a listing's
/// filters).
pub(super) struct Filtered {
    sql: String,
    args: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Filtered {
    /// `select` ends in a condition on `$1`, which is `first`.
    pub(super) fn new(select: String, first: impl ToSql + Sync + Send + 'static) -> Filtered {
        Filtered {
            sql: select,
            args: vec![Box::new(first)],
        }
    }

    /// Adds ` AND {cond} $n` with `v` as `$n`.
    pub(super) fn and(&mut self, cond: &str, v: impl ToSql + Sync + Send + 'static) {
        self.args.push(Box::new(v));
        self.sql
            .push_str(&format!(" AND {cond} ${}", self.args.len()));
    }

    /// Appends text with no parameter.
    pub(super) fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    pub(super) async fn rows(&self, db: Db<'_>) -> Result<Vec<Row>> {
        let refs: Vec<&(dyn ToSql + Sync)> = self
            .args
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        db.rows(&self.sql, &refs).await
    }
}

/// A read-only transaction whose every read sees the database as of its first one.
pub(super) async fn snapshot(
    c: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg_err)
}

/// A transaction's end: commit, as a store error.
pub(super) async fn commit(tx: deadpool_postgres::Transaction<'_>) -> Result<()> {
    tx.commit().await.map_err(pg_err)
}

/// A column whose stored value cannot be decoded: an error, never a silent default.
pub(super) fn corrupt(r: &Row, col: usize, what: &str, value: &str) -> StoreError {
    let name = r.columns().get(col).map(|c| c.name()).unwrap_or("?");
    StoreError::database(format!("corrupt {what} in column `{name}`: `{value}`"))
}

pub(super) fn get<'a, T: FromSql<'a>>(r: &'a Row, col: usize) -> Result<T> {
    r.try_get(col)
        .map_err(|e| corrupt(r, col, "value", &e.to_string()))
}

/// An unsigned value kept in a BIGINT column.
pub(super) fn uint<T: TryFrom<i64>>(r: &Row, col: usize) -> Result<T> {
    let v: i64 = get(r, col)?;
    T::try_from(v).map_err(|_| corrupt(r, col, "number", &v.to_string()))
}

pub(super) fn uint_opt<T: TryFrom<i64>>(r: &Row, col: usize) -> Result<Option<T>> {
    let v: Option<i64> = get(r, col)?;
    v.map(|v| T::try_from(v).map_err(|_| corrupt(r, col, "number", &v.to_string())))
        .transpose()
}

/// A JSON column decoded strictly.
pub(super) fn json<T: serde::de::DeserializeOwned>(r: &Row, col: usize, what: &str) -> Result<T> {
    let text: &str = get(r, col)?;
    serde_json::from_str(text).map_err(|e| corrupt(r, col, what, &e.to_string()))
}

pub(super) fn json_opt<T: serde::de::DeserializeOwned>(
    r: &Row,
    col: usize,
    what: &str,
) -> Result<Option<T>> {
    let text: Option<&str> = get(r, col)?;
    text.map(|t| serde_json::from_str(t).map_err(|e| corrupt(r, col, what, &e.to_string())))
        .transpose()
}

pub(super) fn org_from_row(r: &Row) -> Result<Org> {
    Ok(Org {
        id: get(r, 0)?,
        name: get(r, 1)?,
        created_at: get(r, 2)?,
        retention_s: uint_opt(r, 3)?,
        payload_retention_s: uint_opt(r, 4)?,
        limits: json(r, 5, "organization limits")?,
    })
}

pub(super) fn event_type_from_row(r: &Row) -> Result<EventType> {
    Ok(EventType {
        name: get(r, 0)?,
        description: get(r, 1)?,
        entity_type: get(r, 2)?,
        schema: json_opt(r, 3, "event type schema")?,
        updated_at: get(r, 4)?,
    })
}

pub(super) fn event_from_row(r: &Row) -> Result<Event> {
    Ok(Event {
        seq: get(r, 0)?,
        org_id: get(r, 1)?,
        id: get(r, 2)?,
        event_type: get(r, 3)?,
        timestamp: get(r, 4)?,
        entity: EntityRef {
            kind: get(r, 5)?,
            id: get(r, 6)?,
        },
        data: json(r, 7, "event data")?,
        received_at: get(r, 8)?,
        payload_dropped_at: get(r, 9)?,
        body: Default::default(),
    })
}

pub(super) fn endpoint_from_row(r: &Row, key: &MasterKey) -> Result<Endpoint> {
    let id: String = get(r, 0)?;
    let secrets_enc: &[u8] = get(r, 12)?;
    let (token, secrets) =
        open_endpoint_secrets(key, &id, get(r, 6)?, secrets_enc).map_err(StoreError::database)?;
    let profile: &str = get(r, 4)?;
    Ok(Endpoint::stored(StoredEndpoint {
        org_id: get(r, 1)?,
        url: get(r, 2)?,
        description: get(r, 3)?,
        profile: Profile::parse(profile).ok_or_else(|| corrupt(r, 4, "profile", profile))?,
        headers: json(r, 5, "headers")?,
        token,
        token_header: get(r, 7)?,
        insecure_tls: get(r, 8)?,
        timeout_ms: uint(r, 9)?,
        retry_schedule_s: json_opt(r, 10, "retry schedule")?,
        max_in_flight: uint(r, 11)?,
        secrets,
        enabled: get(r, 13)?,
        disabled_reason: get(r, 14)?,
        owner_subscription: get(r, 15)?,
        created_at: get(r, 16)?,
        updated_at: get(r, 17)?,
        ordering: ordering_of(get(r, 19)?, get(r, 20)?)
            .map_err(|(what, value)| corrupt(r, 19, what, &value))?,
        max_rps: uint_opt(r, 18)?,
        id: EndpointId::stored(id),
    }))
}

/// The parameters of an endpoint's row, in [`ENDPOINT_COLS`] order, its secrets sealed.
pub(super) struct EndpointRow {
    url: String,
    description: String,
    token_header: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    profile: &'static str,
    headers: String,
    token_enc: Option<Vec<u8>>,
    timeout_ms: i64,
    retry_schedule: Option<String>,
    max_in_flight: i64,
    secrets_enc: Vec<u8>,
    max_rps: Option<i64>,
    ordering_key: Option<String>,
    on_head_failure: Option<&'static str>,
}

impl EndpointRow {
    pub(super) fn of(key: &MasterKey, ep: &Endpoint) -> EndpointRow {
        EndpointRow {
            url: ep.url().to_string(),
            description: ep.description().to_string(),
            token_header: ep.token_header().map(str::to_string),
            enabled: ep.enabled(),
            disabled_reason: ep.disabled_reason().map(str::to_string),
            profile: ep.profile().as_str(),
            headers: serde_json::to_string(&ep.headers()).unwrap_or_default(),
            token_enc: encrypt_token(key, ep),
            timeout_ms: i64::from(ep.timeout_ms()),
            retry_schedule: ep
                .retry_schedule_s()
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default()),
            max_in_flight: i64::from(ep.max_in_flight()),
            secrets_enc: encrypt_secrets(key, ep),
            max_rps: ep.max_rps().map(i64::from),
            ordering_key: ep.ordering().map(|o| o.key.as_setting()),
            on_head_failure: ep.ordering().map(|o| o.on_head_failure.as_str()),
        }
    }

    /// Every column of [`ENDPOINT_COLS`], `$1` to `$21`.
    pub(super) fn params<'a>(&'a self, ep: &'a Endpoint) -> [&'a (dyn ToSql + Sync); 21] {
        [
            &ep.id,
            &ep.org_id,
            &self.url,
            &self.description,
            &self.profile,
            &self.headers,
            &self.token_enc,
            &self.token_header,
            &ep.insecure_tls,
            &self.timeout_ms,
            &self.retry_schedule,
            &self.max_in_flight,
            &self.secrets_enc,
            &self.enabled,
            &self.disabled_reason,
            &ep.owner_subscription,
            &ep.created_at,
            &ep.updated_at,
            &self.max_rps,
            &self.ordering_key,
            &self.on_head_failure,
        ]
    }
}

pub(super) fn sub_from_row(r: &Row) -> Result<Subscription> {
    let mode: &str = get(r, 8)?;
    Ok(Subscription::stored(StoredSubscription {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        event_types: json(r, 2, "event types")?,
        target: target_from_columns(r, get(r, 3)?, get(r, 7)?)?,
        entity_id: get(r, 4)?,
        filter: json_opt::<serde_json::Value>(r, 5, "filter")?
            .map(|doc| {
                SubscriptionFilter::parse(doc).map_err(|e| corrupt(r, 5, "filter", &e.to_string()))
            })
            .transpose()?,
        mode: Mode::parse(mode).ok_or_else(|| corrupt(r, 8, "subscription mode", mode))?,
        created_at: get(r, 6)?,
    }))
}

pub(super) fn target_from_columns(
    r: &Row,
    endpoint_id: Option<String>,
    executor: Option<String>,
) -> Result<Target> {
    Target::from_columns(endpoint_id, executor).ok_or_else(|| {
        corrupt(
            r,
            0,
            "target",
            "a row must have exactly one of endpoint_id and executor",
        )
    })
}

pub(super) fn health_from_row(r: &Row) -> Result<switchyard_core::health::EndpointHealth> {
    Ok(switchyard_core::health::EndpointHealth {
        consecutive_failures: uint(r, 0)?,
        failing_since: get(r, 1)?,
        last_success_at: get(r, 2)?,
        last_failure_at: get(r, 3)?,
        last_error: get(r, 4)?,
        window: Default::default(),
    })
}

pub(super) fn delivery_from_row(r: &Row) -> Result<Delivery> {
    let status: &str = get(r, 5)?;
    let claimed: Option<&str> = get(r, 12)?;
    let (next, in_flight) = delivery_timing(claimed.is_some(), get(r, 7)?);
    Ok(Delivery {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        event_id: get(r, 2)?,
        target: target_from_columns(r, get(r, 3)?, get(r, 10)?)?,
        subscription_id: get(r, 4)?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| corrupt(r, 5, "delivery status", status))?,
        attempts: uint(r, 6)?,
        next_attempt_at: next,
        in_flight,
        ordering_key: get(r, 11)?,
        created_at: get(r, 8)?,
        updated_at: get(r, 9)?,
    })
}

pub(super) fn attempt_from_row(r: &Row) -> Result<Attempt> {
    Ok(Attempt::stored(StoredAttempt {
        id: get(r, 0)?,
        delivery_id: get(r, 1)?,
        at: get(r, 2)?,
        status_code: uint_opt(r, 3)?,
        duration_ms: get(r, 4)?,
        error: get(r, 5)?,
        response_body: get(r, 6)?,
        waited: get(r, 7)?,
        retry_reason: get(r, 8)?,
        request_headers: json_opt(r, 9, "attempt request headers")?,
        node: get(r, 10)?,
    }))
}

pub(super) fn executor_from_row(r: &Row) -> Result<Executor> {
    Ok(Executor::stored(
        switchyard_core::executor::StoredExecutor {
            org_id: get(r, 0)?,
            name: get(r, 1)?,
            version: uint(r, 2)?,
            description: get(r, 3)?,
            spec: json(r, 4, "executor spec")?,
            parameters: json_opt(r, 5, "executor parameters")?,
            retries: uint_opt(r, 6)?,
            created_at: get(r, 7)?,
            tool: json_opt(r, 8, "executor tool")?,
            packages: json_opt(r, 9, "executor packages")?,
            packages_state: json_opt(r, 10, "executor packages state")?,
        },
    ))
}

pub(super) fn run_from_row(r: &Row) -> Result<Run> {
    let status: &str = get(r, 5)?;
    Ok(Run {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        executor: get(r, 2)?,
        version: uint(r, 3)?,
        event_id: get(r, 4)?,
        status: parse_run_status(status).ok_or_else(|| corrupt(r, 5, "run status", status))?,
        input: json(r, 6, "run input")?,
        output: json_opt(r, 7, "run output")?,
        error: get(r, 8)?,
        logs: json(r, 9, "run logs")?,
        stderr: get(r, 10)?,
        exit: uint_opt(r, 11)?,
        duration_ms: get(r, 12)?,
        at: get(r, 13)?,
        hook: get(r, 14)?,
        failure: match get::<Option<&str>>(r, 15)? {
            None => None,
            Some(f) => Some(
                switchyard_core::executor::RunFailure::parse(f)
                    .ok_or_else(|| corrupt(r, 15, "run failure", f))?,
            ),
        },
    })
}

pub(super) fn sync_hook_from_row(r: &Row) -> Result<SyncHook> {
    Ok(SyncHook {
        org_id: get(r, 0)?,
        name: get(r, 1)?,
        description: get(r, 2)?,
        executor: get(r, 3)?,
        timeout_ms: uint(r, 4)?,
        cache_ttl_s: uint_opt(r, 5)?,
        input_schema: json_opt(r, 6, "hook input schema")?,
        output_schema: json_opt(r, 7, "hook output schema")?,
        created_at: get(r, 8)?,
        updated_at: get(r, 9)?,
        tool: json_opt(r, 10, "hook tool")?,
    })
}

pub(super) fn schedule_from_row(r: &Row) -> Result<Schedule> {
    let misfire: &str = get(r, 8)?;
    Ok(Schedule {
        org_id: get(r, 0)?,
        name: get(r, 1)?,
        description: get(r, 2)?,
        cron: get(r, 3)?,
        timezone: get(r, 4)?,
        event_type: get(r, 5)?,
        data: json(r, 6, "schedule data")?,
        enabled: get(r, 7)?,
        misfire: switchyard_core::schedule::Misfire::parse(misfire)
            .ok_or_else(|| corrupt(r, 8, "schedule misfire", misfire))?,
        next_fire_at: get(r, 9)?,
        last_fired_at: get(r, 10)?,
        created_at: get(r, 11)?,
        updated_at: get(r, 12)?,
    })
}
