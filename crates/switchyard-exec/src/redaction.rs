//! Redaction: secret values a run used never reach its stored trace.

use crate::broker::Broker;
use serde_json::Value;
use switchyard_core::executor::Run;

impl Broker<'_> {
    /// Replaces every secret value this run used by `[redacted]` in its trace.
    pub(crate) fn redact(&self, run: &mut Run) {
        let secrets = self
            .seen_secrets
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        for secret in secrets.iter().filter(|s| s.len() >= 3) {
            let hide = |t: &str| t.replace(secret.as_str(), "[redacted]");
            run.stderr = hide(&run.stderr);
            run.error = run.error.as_deref().map(hide);
            for l in &mut run.logs {
                *l = hide(l);
            }
            if let Some(out) = &run.output {
                let text = out.to_string();
                if text.contains(secret.as_str()) {
                    run.output = serde_json::from_str(&hide(&text))
                        .ok()
                        .or(Some(Value::String("[redacted]".into())));
                }
            }
        }
    }
}
