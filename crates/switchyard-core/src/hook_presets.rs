//! Ready-made synchronous hook definitions an organization installs by name: the four ERP
//! look-ups of the Enneo integration (seed "Webhooks in the Area of ERP Integration"), each with
//! the input it is called with and the output Enneo needs back.

use serde_json::{Value, json};

/// A hook definition without its executor: the organization brings the code or API call.
#[derive(Debug, Clone, PartialEq)]
pub struct HookPreset {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    pub output_schema: Value,
}

/// Fields a contract carries; the first three are required, and `lastname` or `company`.
fn contract_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "customerId", "business"],
        "anyOf": [{"required": ["lastname"]}, {"required": ["company"]}],
        "properties": {
            "id": {"type": ["string", "integer"], "description": "the contract's id"},
            "customerId": {"type": ["string", "integer"]},
            "business": {"type": "boolean", "description": "a business customer (then `company`)"},
            "lastname": {"type": ["string", "null"]},
            "company": {"type": ["string", "null"]},
            "firstname": {"type": ["string", "null"], "description": "recommended"},
            "email": {"type": ["string", "null"], "description": "recommended"},
            "phone": {"type": ["string", "null"], "description": "recommended"},
            "zip": {"type": ["string", "null"], "description": "recommended"},
            "deliveryAddress": {"description": "recommended"},
            "billingAddress": {"description": "recommended"},
            "agentPreview": {"description": "recommended: what the agent sees at a glance"},
            "erpUrls": {"description": "recommended: links into the ERP"}
        }
    })
}

/// Fields a customer carries: an id, and `lastname` or `company`.
fn customer_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id"],
        "anyOf": [{"required": ["lastname"]}, {"required": ["company"]}],
        "properties": {
            "id": {"type": ["string", "integer"], "description": "the customer's id"},
            "lastname": {"type": ["string", "null"]},
            "company": {"type": ["string", "null"]},
            "firstname": {"type": ["string", "null"], "description": "recommended"},
            "email": {"type": ["string", "null"], "description": "recommended"},
            "phone": {"type": ["string", "null"], "description": "recommended"},
            "zip": {"type": ["string", "null"], "description": "recommended"},
            "contracts": {"type": "array", "description": "recommended: the customer's contract ids"},
            "agentPreview": {"description": "recommended"},
            "erpUrls": {"description": "recommended"}
        }
    })
}

/// Every preset, by name.
pub fn hook_presets() -> Vec<HookPreset> {
    vec![
        HookPreset {
            name: "erp-contract-by-id",
            description: "Search contract by ID: loads a contract's data by its id.",
            input_schema: json!({
                "type": "object", "required": ["contractId"],
                "properties": {"contractId": {"type": ["string", "integer"]}}
            }),
            output_schema: contract_schema(),
        },
        HookPreset {
            name: "erp-customer-by-id",
            description: "Search customer by ID: loads a customer's data by its id.",
            input_schema: json!({
                "type": "object", "required": ["customerId"],
                "properties": {"customerId": {"type": ["string", "integer"]}}
            }),
            output_schema: customer_schema(),
        },
        HookPreset {
            name: "erp-contract-search",
            description: "Characteristic-based search of contracts: finds the contracts matching \
                          characteristics found in a customer's message (names, addresses, …).",
            input_schema: json!({
                "type": "object", "required": ["characteristics"],
                "properties": {"characteristics": {
                    "type": "object", "minProperties": 1,
                    "properties": {
                        "firstname": {"type": "string"}, "lastname": {"type": "string"},
                        "company": {"type": "string"}, "email": {"type": "string"},
                        "phone": {"type": "string"}, "street": {"type": "string"},
                        "zip": {"type": "string"}, "city": {"type": "string"},
                        "meterNumber": {"type": "string"}, "iban": {"type": "string"}
                    }
                }}
            }),
            output_schema: json!({"type": "array", "items": contract_schema()}),
        },
        HookPreset {
            name: "erp-customer-search",
            description: "Free text search of customers: what an agent types in the search bar.",
            input_schema: json!({
                "type": "object", "required": ["query"],
                "properties": {"query": {"type": "string", "minLength": 1}}
            }),
            output_schema: json!({"type": "array", "items": customer_schema()}),
        },
    ]
}

/// The preset called `name`.
pub fn hook_preset(name: &str) -> Option<HookPreset> {
    hook_presets().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;

    #[test]
    fn every_preset_compiles_and_the_contract_look_up_checks_what_the_issue_names() {
        for p in hook_presets() {
            Schema::compile(&p.input_schema).expect(p.name);
            Schema::compile(&p.output_schema).expect(p.name);
        }
        let p = hook_preset("erp-contract-by-id").expect("preset");
        let input = Schema::compile(&p.input_schema).expect("input");
        assert!(input.validate(&json!({"contractId": "C-1"})).is_ok());
        assert!(input.validate(&json!({})).is_err());
        let out = Schema::compile(&p.output_schema).expect("output");
        let ok = json!({"id": "C-1", "customerId": "K-7", "business": true, "company": "Acme"});
        assert!(out.validate(&ok).is_ok());
        for missing in ["id", "customerId", "business", "company"] {
            let mut bad = ok.clone();
            bad.as_object_mut().expect("object").remove(missing);
            assert!(out.validate(&bad).is_err(), "without {missing}");
        }
    }
}
