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
    if let Err(e) = s.store.pending_count().await {
        return unavailable("store_unavailable", e.to_string());
    }
    // While writes fail for lack of space, each check tries one tiny write: readiness comes back
    // by itself once space is freed.
    if s.store.storage_full()
        && let Err(e) = s.store.probe_write().await
    {
        return unavailable("storage_full", e.to_string());
    }
    (
        StatusCode::OK,
        Json(
            serde_json::json!({"status": "ready", "sandbox": s.hub.runner().isolation().level(),
            "isolation": s.hub.runner().isolation(), "languages": s.hub.runner().languages()}),
        ),
    )
}

/// Prometheus text: events published, deliveries by outcome, attempt latency, queue depth.
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    if let Ok(n) = s.store.pending_count().await {
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
