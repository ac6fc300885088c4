//! Operations: liveness, readiness, Prometheus metrics, the OpenAPI document, unknown routes.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use utoipa::OpenApi;

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("switchyard_store_group_commit_size".into()),
                        &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0],
                    )
                })
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding program); then ours
            // renders nothing, which is all we can do.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            // Histogram samples wait in buffers until they are folded in; without a scrape
            // nothing folds them, and a hub nobody scrapes would hold every sample it ever
            // took. Fold them every few seconds.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be started at startup");
            handle
        })
        .clone()
}

/// Every metric the hub records, with its `# HELP` line, and the build's identity.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "switchyard_build_info",
        "Always 1; the labels say which build answers"
    );
    metrics::gauge!("switchyard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(
        "switchyard_http_requests_total",
        "API requests answered, by method, route template and status"
    );
    describe_histogram!(
        "switchyard_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's arrival to its answer, by method and route template"
    );
    describe_counter!(
        "switchyard_events_published_total",
        "Events committed (duplicates of an earlier id not counted)"
    );
    describe_counter!(
        "switchyard_warm_runs_total",
        "Python, PHP and Node.js runs, by language and whether a warm interpreter was ready (warm=yes) or the run started its own (warm=no)"
    );
    describe_counter!(
        "switchyard_route_tables_built_total",
        "Route tables built from an organization's subscriptions (first publish, and after each change)"
    );
    describe_counter!(
        "switchyard_routing_reloads_total",
        "Route tables rebuilt because an organization's routing changed"
    );
    describe_counter!(
        "switchyard_sync_attempts_total",
        "Attempts of sync subscriptions made while their publish waited, by outcome"
    );
    describe_counter!(
        "switchyard_attempts_total",
        "Delivery attempts recorded, by outcome"
    );
    describe_counter!(
        "switchyard_deliveries_total",
        "Deliveries that reached a final state, by status"
    );
    describe_histogram!(
        "switchyard_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of each delivery attempt"
    );
    describe_counter!(
        "switchyard_deliveries_deferred_total",
        "Deliveries left in the store for lack of room in memory (pulled later)"
    );
    describe_gauge!(
        "switchyard_recorder_backlog",
        "Attempt results waiting to be written"
    );
    describe_gauge!(
        "switchyard_engine_queued",
        "Deliveries queued in memory across endpoints"
    );
    describe_gauge!(
        "switchyard_queue_depth",
        "Deliveries pending in the store (read at each scrape)"
    );
    describe_histogram!(
        "switchyard_store_group_commit_size",
        "Write jobs committed together in one transaction"
    );
    describe_gauge!(
        "switchyard_store_wal_frames",
        "Pages in SQLite's write-ahead log at the last checkpoint (SQLite stores only)"
    );
    describe_counter!(
        "switchyard_store_wal_restarts_total",
        "Times the SQLite writer checkpointed the whole write-ahead log and wrote it from its start again"
    );
    describe_counter!(
        "switchyard_hook_calls_total",
        "Synchronous hook calls, by outcome (cache hits included)"
    );
    describe_counter!(
        "switchyard_retention_deleted_total",
        "Rows deleted or payloads dropped by retention, by kind"
    );
    describe_histogram!(
        "switchyard_schedule_delay_seconds",
        metrics::Unit::Seconds,
        "How late each schedule fired after its fire time"
    );
    describe_counter!(
        "switchyard_schedule_fires_total",
        "Schedule fire times, by outcome"
    );
}

/// Counts each API request and times it, by method, route template and status.
pub async fn track(
    matched: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("switchyard_http_request_duration_seconds",
        "method" => method.clone(), "route" => route.clone())
    .record(started.elapsed().as_secs_f64());
    metrics::counter!("switchyard_http_requests_total",
        "method" => method, "route" => route, "status" => status)
    .increment(1);
    resp
}

/// Every answer: never sniffed as another type, and (unless it says otherwise, as the console's
/// files do) never stored by a cache — answers carry tenants' data.
pub async fn no_sniff_no_store(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers reads and takes writes.
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let unavailable = |code: &str, reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "code": code, "reason": reason})),
        )
    };
    if let Err(e) = s.reads.pending_count().await {
        return unavailable("store_unavailable", e.to_string());
    }
    // While writes fail for lack of space, each check tries one tiny write: readiness comes back
    // by itself once space is freed.
    if s.reads.storage_full()
        && let Err(e) = s.reads.probe_write().await
    {
        return unavailable("storage_full", e.to_string());
    }
    let report = s.hub.sandbox_report();
    (
        StatusCode::OK,
        Json(
            serde_json::json!({"status": "ready", "sandbox": report.sandbox,
            "isolation": report.isolation, "languages": report.languages,
            "run_memory_budget_mb": report.run_memory_budget_mb}),
        ),
    )
}

/// Prometheus text: events published, deliveries by outcome, attempt latency, queue depth.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    if let Ok(n) = s.reads.pending_count().await {
        metrics::gauge!("switchyard_queue_depth").set(n as f64);
    }
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// The OpenAPI document, rendered once on first request.
pub async fn openapi() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        serde_json::to_string(&crate::openapi())
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the document: {e}\"}}"))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.as_str(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Switchyard API",
    description = "Event and webhook integration hub. Authenticate with `Authorization: Bearer <key>`. Errors are `{\"error\": {\"code\", \"message\"}}`."
))]
pub struct ApiDoc;

/// The document as served: paths come from the router ([`crate::router`]); then every operation
/// is named after its resource and the bearer scheme is declared.
pub fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::Modify;
    ServiceNames.modify(&mut doc);
    doc
}

/// Names every operation after its resource (`endpoints_list`, not `list`: operationIds must be
/// unique for client generators), tags it with the resource, and declares the bearer key every
/// `/v1` route requires.
struct ServiceNames;

impl utoipa::Modify for ServiceNames {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let resource = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .map(|t| t.trim_start_matches("crate::").to_string())
                    .unwrap_or_default();
                if let Some(id) = &op.operation_id
                    && !resource.is_empty()
                {
                    op.operation_id = Some(format!("{resource}_{id}"));
                }
                op.tags = (!resource.is_empty()).then(|| vec![resource]);
            }
        }
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An API key: `Authorization: Bearer sy_…`"))
                        .build(),
                ),
            );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}
