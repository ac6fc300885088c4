//! The rules of synchronous hooks: a named front door to an executor that a caller runs now
//! and waits for (an ERP look-up), with a timeout, an optional cache of its answers and
//! optional schemas for what goes in and comes out. The API, the CLI and presets all define
//! hooks through here.

use crate::error::CoreError;
use crate::ids::is_valid_name;
use crate::schema::Schema;
use serde_json::Value;

/// A hook's timeout when it sets none.
pub const DEFAULT_HOOK_TIMEOUT_MS: u32 = 10_000;
/// The longest a caller may be kept waiting.
pub const MAX_HOOK_TIMEOUT_MS: u32 = 60_000;
/// The longest an answer may be cached.
pub const MAX_CACHE_TTL_S: u32 = 86_400;

/// A synchronous hook of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncHook {
    pub org_id: crate::ids::OrgId,
    pub name: String,
    pub description: String,
    /// The executor a call runs (by name, its current version).
    pub executor: String,
    /// How long a caller waits at most; the run is cancelled past it.
    pub timeout_ms: u32,
    /// How long a successful answer is reused for the same input; `None` runs every call.
    pub cache_ttl_s: Option<u32>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    pub created_at: i64,
    /// Also the cache's generation: answers cached under an older definition are never used.
    pub updated_at: i64,
    /// How AI agents see it over MCP, if it is offered to them as a tool.
    pub tool: Option<crate::tool::Tool>,
}

/// What a PUT carries: the whole definition.
#[derive(Debug, Clone, Default)]
pub struct SyncHookDefinition {
    /// A ready-made definition ([`crate::hook_presets`]) whose description and schemas fill in
    /// what the definition leaves out.
    pub preset: Option<String>,
    pub description: Option<String>,
    pub executor: String,
    pub timeout_ms: Option<u32>,
    pub cache_ttl_s: Option<u32>,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    /// Offered to AI agents as this tool; its name, description and input schema default to
    /// the hook's.
    pub tool: Option<crate::tool::ToolDraft>,
}

impl SyncHook {
    /// A hook `name` of `org` from its definition, checked; `existing` keeps its creation time.
    pub fn define(
        org: &crate::ids::OrgId,
        name: &str,
        mut def: SyncHookDefinition,
        existing: Option<&SyncHook>,
        now: i64,
    ) -> Result<SyncHook, CoreError> {
        if let Some(name) = def.preset.take() {
            let Some(p) = crate::hook_presets::hook_preset(&name) else {
                let known: Vec<&str> = crate::hook_presets::hook_presets()
                    .iter()
                    .map(|p| p.name)
                    .collect();
                return Err(CoreError::invalid(format!(
                    "no preset `{name}`; the presets are {}",
                    known.join(", ")
                )));
            };
            def.description
                .get_or_insert_with(|| p.description.to_string());
            def.input_schema.get_or_insert(p.input_schema);
            def.output_schema.get_or_insert(p.output_schema);
        }
        if !is_valid_name(name, 64) {
            return Err(CoreError::invalid(
                "a hook's name must be 1–64 characters of letters, digits and -_.:@",
            ));
        }
        if !is_valid_name(&def.executor, 100) {
            return Err(CoreError::invalid(
                "`executor` must name an executor of the organization",
            ));
        }
        let timeout_ms = def.timeout_ms.unwrap_or(DEFAULT_HOOK_TIMEOUT_MS);
        if !(1..=MAX_HOOK_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(CoreError::invalid(format!(
                "`timeout_ms` must be between 1 and {MAX_HOOK_TIMEOUT_MS}, not {timeout_ms}"
            )));
        }
        if let Some(ttl) = def.cache_ttl_s
            && !(1..=MAX_CACHE_TTL_S).contains(&ttl)
        {
            return Err(CoreError::invalid(format!(
                "`cache_ttl_s` must be between 1 and {MAX_CACHE_TTL_S}, not {ttl} (leave it out to run every call)"
            )));
        }
        let description = def.description.unwrap_or_default();
        if description.len() > 2000 {
            return Err(CoreError::invalid(
                "`description` must be at most 2000 characters",
            ));
        }
        for (field, schema) in [
            ("input_schema", &def.input_schema),
            ("output_schema", &def.output_schema),
        ] {
            if let Some(doc) = schema {
                Schema::compile(doc).map_err(|e| CoreError::invalid(format!("`{field}`: {e}")))?;
            }
        }
        let tool = def
            .tool
            .map(|draft| {
                crate::tool::Tool::define(
                    draft,
                    crate::tool::ToolDefaults {
                        name,
                        description: &description,
                        input_schema: def.input_schema.as_ref(),
                    },
                )
            })
            .transpose()?;
        // A redefinition is always a new generation, even within the same millisecond.
        let updated_at = existing.map_or(now, |e| now.max(e.updated_at + 1));
        Ok(SyncHook {
            org_id: org.clone(),
            name: name.to_string(),
            description,
            executor: def.executor,
            timeout_ms,
            cache_ttl_s: def.cache_ttl_s,
            input_schema: def.input_schema,
            output_schema: def.output_schema,
            created_at: existing.map_or(now, |e| e.created_at),
            updated_at,
            tool,
        })
    }
}

/// The canonical text of a JSON value: object keys sorted at every level, no whitespace, so
/// that inputs equal as JSON are equal as text (the key of a cached answer).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> crate::ids::OrgId {
        crate::ids::OrgId::stored("o".into())
    }
    use serde_json::json;

    fn def(executor: &str) -> SyncHookDefinition {
        SyncHookDefinition {
            executor: executor.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_definition_is_checked_and_gets_defaults() {
        let h = SyncHook::define(&o(), "contract-by-id", def("erp"), None, 5).expect("valid");
        assert_eq!(
            (h.timeout_ms, h.cache_ttl_s, h.updated_at),
            (10_000, None, 5)
        );
        let again =
            SyncHook::define(&o(), "contract-by-id", def("erp"), Some(&h), 5).expect("valid");
        assert_eq!(
            (again.created_at, again.updated_at),
            (5, 6),
            "a new generation"
        );
        for bad in [
            SyncHookDefinition {
                timeout_ms: Some(0),
                ..def("erp")
            },
            SyncHookDefinition {
                timeout_ms: Some(MAX_HOOK_TIMEOUT_MS + 1),
                ..def("erp")
            },
            SyncHookDefinition {
                cache_ttl_s: Some(0),
                ..def("erp")
            },
            SyncHookDefinition {
                input_schema: Some(json!({"type": "no-such-type"})),
                ..def("erp")
            },
            def("bad name"),
        ] {
            assert!(
                SyncHook::define(&o(), "h", bad.clone(), None, 0).is_err(),
                "{bad:?}"
            );
        }
        assert!(SyncHook::define(&o(), "a/b", def("erp"), None, 0).is_err());
    }

    #[test]
    fn a_preset_fills_what_the_definition_leaves_out() {
        let with = |preset: &str| SyncHookDefinition {
            preset: Some(preset.into()),
            cache_ttl_s: Some(300),
            ..def("erp")
        };
        let h = SyncHook::define(&o(), "c", with("erp-contract-by-id"), None, 0).expect("valid");
        assert!(h.description.starts_with("Search contract by ID"));
        assert_eq!(
            h.input_schema.as_ref().map(|s| &s["required"]),
            Some(&json!(["contractId"]))
        );
        assert!(h.output_schema.is_some());
        let own = SyncHookDefinition {
            input_schema: Some(json!({"type": "object"})),
            ..with("erp-contract-by-id")
        };
        let h = SyncHook::define(&o(), "c", own, None, 0).expect("valid");
        assert_eq!(
            h.input_schema,
            Some(json!({"type": "object"})),
            "its own schema wins"
        );
        let err = SyncHook::define(&o(), "c", with("nope"), None, 0).expect_err("unknown");
        assert!(err.to_string().contains("erp-customer-search"), "{err}");
    }

    #[test]
    fn equal_json_has_one_canonical_text() {
        let a = json!({"b": [1, {"y": 2, "x": "é\"q"}], "a": null});
        let b: Value = serde_json::from_str(r#"{ "a": null, "b": [1, {"x": "é\"q", "y": 2}] }"#)
            .expect("json");
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":null,"b":[1,{"x":"é\"q","y":2}]}"#
        );
        assert_ne!(
            canonical_json(&json!({"a": 1})),
            canonical_json(&json!({"a": "1"}))
        );
    }
}
