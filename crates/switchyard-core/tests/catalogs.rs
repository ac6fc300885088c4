//! The platforms' catalogs: what a user relies on (documented value sets, the documents' own
//! examples, the rules the documents state) checked on the catalogs, which are the project's own
//! data files (`catalogs/*.json`); and, when the platforms' documents are at hand, the catalogs
//! against those documents: each generated from the text it implements must be exactly the
//! checked-in file, and every event, property and field of the documents must be in it.
//!
//! The documents are not part of the project: `SWITCHYARD_SEEDS_DIR` names the directory that
//! holds them. Without it the check against them is ignored with a line saying why; `.ci/run`
//! sets it. After a deliberate change to a generator below, rewrite the files with
//! `SWITCHYARD_SEEDS_DIR=… SWITCHYARD_WRITE_CATALOGS=1 cargo test -p switchyard-core --test
//! catalogs -- --ignored`.

use serde_json::{Map, Value, json};
use switchyard_core::catalog::{catalog, catalog_source};
use switchyard_core::enate::FILTER_OBJECTS;
use switchyard_core::schedule::schedule_presets;
use switchyard_core::schema::Schema;

/// Why the check against the documents is left out when they are not named.
const WITHOUT_DOCUMENTS: &str = "needs the platforms' documents, which are not part of the project: \
     set SWITCHYARD_SEEDS_DIR to their directory and run with --ignored";
const ENNEO: &str = "000_aae2e83387e739ad.txt";
const ENNEO_WEBHOOKS: &str = "001_68d1f35d2a50f735.txt";
const ENREACH: &str = "003_4544135c7162e51f.txt";
const ENATE: &str = "004_8cd5874f2211edca.txt";

/// .NET's `Guid` as text.
const GUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// .NET's `DateTime` as its JSON serializers write it: `2018-01-01T08:01:23.45`, up to seven
/// fraction digits, the zone optional (seed 003's own example has none, so `format: date-time`,
/// which demands one, would refuse it).
const DATETIME: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2})?$";

fn seed(name: &str) -> String {
    let dir = std::env::var("SWITCHYARD_SEEDS_DIR")
        .unwrap_or_else(|_| panic!("this check {WITHOUT_DOCUMENTS}"));
    let path = std::path::Path::new(&dir).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "SWITCHYARD_SEEDS_DIR names {dir}, but the platform document {} cannot be read: {e}",
            path.display()
        )
    })
}

/// Seed 003's example request, as the document prints it (the fixture the end-to-end tests
/// send; checked against the document below).
const ENREACH_EXAMPLE: &str = include_str!("fixtures/enreach_example.json");
/// Seed 003's sample configuration, as the document prints it.
const ENREACH_SAMPLE_CONFIGURATION: &str =
    include_str!("fixtures/enreach_sample_configuration.json");

// ---------------------------------------------------------------------------------------------
// Enreach (seed 003): markdown-ish tables under `Event: X` and `Misc: X` headings.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Row {
    name: String,
    ty: String,
    desc: String,
}

#[derive(Debug, Default)]
struct Section {
    name: String,
    entity: String,
    description: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Debug, Default)]
struct Enreach {
    common: Vec<Row>,
    root_entity_types: Vec<String>,
    entity_types: Vec<String>,
    events: Vec<Section>,
    misc: Vec<Section>,
}

enum Owner {
    None,
    Common,
    RootTypes,
    EntityTypes,
    Event,
    Misc,
}

fn cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(|c| c.trim().to_string()).collect())
}

fn parse_enreach(text: &str) -> Enreach {
    let mut out = Enreach::default();
    let mut owner = Owner::None;
    let mut entity = String::new();
    for line in text.lines() {
        let t = line.trim();
        match t {
            "Common event properties" => owner = Owner::Common,
            "Root entity types" => owner = Owner::RootTypes,
            "Entity types" => owner = Owner::EntityTypes,
            "Webhook endpoint" | "Subscription" | "Secret token" => owner = Owner::None,
            "User" | "Queue" | "CallList" => {
                entity = t.to_string();
                owner = Owner::None;
            }
            _ => {}
        }
        if let Some(name) = t.strip_prefix("Event: ") {
            out.events.push(Section {
                name: name.into(),
                entity: entity.clone(),
                ..Default::default()
            });
            owner = Owner::Event;
            continue;
        }
        if let Some(name) = t.strip_prefix("Misc: ") {
            out.misc.push(Section {
                name: name.into(),
                ..Default::default()
            });
            owner = Owner::Misc;
            continue;
        }
        let section = match owner {
            Owner::Event => out.events.last_mut(),
            Owner::Misc => out.misc.last_mut(),
            _ => None,
        };
        let Some(c) = cells(t) else {
            if let Some(s) = section
                && s.rows.is_empty()
                && !t.is_empty()
            {
                s.description.push(t.to_string());
            }
            continue;
        };
        if c[0].starts_with("---") || matches!(c[0].as_str(), "Property name" | "Property" | "Type")
        {
            continue;
        }
        match owner {
            Owner::Common => out.common.push(Row {
                name: c[0].clone(),
                ty: c[1].clone(),
                desc: c[2].clone(),
            }),
            Owner::RootTypes => out.root_entity_types.push(c[0].clone()),
            Owner::EntityTypes => out.entity_types.push(c[0].clone()),
            Owner::Event | Owner::Misc => {
                if let Some(s) = section {
                    s.rows.push(Row {
                        name: c[0].clone(),
                        ty: c[1].clone(),
                        desc: c[2].clone(),
                    });
                }
            }
            Owner::None => {}
        }
    }
    out
}

/// The value set a property's description documents, if it documents a closed one.
fn documented_values(desc: &str) -> Option<(Vec<Value>, Vec<String>)> {
    // "possible values: Available, Busy, DoNotDisturb, OffWork"; "Reason for the overflow: A, B C"
    for lead in ["possible values:", "Reason for the overflow:"] {
        if let Some(i) = desc.find(lead) {
            let list = &desc[i + lead.len()..];
            let vals: Vec<Value> = list
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| json!(s))
                .collect();
            return Some((vals, vec![]));
        }
    }
    // "'remote' or 'local'" (but not "e.g "manual" or "timer"", which only gives examples)
    if !desc.contains("e.g") {
        let quoted: Vec<&str> = desc.split('\'').skip(1).step_by(2).collect();
        if quoted.len() >= 2 && desc.contains("' or '") {
            return Some((quoted.iter().map(|s| json!(s)).collect(), vec![]));
        }
    }
    // "1 - Explicit callback request 2 - Overflown call 3 - Call list item created manually"
    let words: Vec<&str> = desc.split_whitespace().collect();
    let mut numbered: Vec<(i64, String)> = vec![];
    for (i, w) in words.iter().enumerate() {
        if let Ok(n) = w.parse::<i64>()
            && words.get(i + 1) == Some(&"-")
        {
            numbered.push((n, String::new()));
        } else if let Some(last) = numbered.last_mut()
            && *w != "-"
        {
            if !last.1.is_empty() {
                last.1.push(' ');
            }
            last.1.push_str(w);
        }
    }
    if numbered.len() >= 2 {
        return Some((
            numbered.iter().map(|(n, _)| json!(n)).collect(),
            numbered.into_iter().map(|(_, s)| s).collect(),
        ));
    }
    // "NA = 0 NoActiveHandler = 1 : …"
    let mut named: Vec<(i64, String)> = vec![];
    for (i, w) in words.iter().enumerate() {
        if *w == "="
            && i > 0
            && let Some(n) = words.get(i + 1).and_then(|x| x.parse::<i64>().ok())
        {
            named.push((n, words[i - 1].to_string()));
        }
    }
    if named.len() >= 2 {
        return Some((
            named.iter().map(|(n, _)| json!(n)).collect(),
            named.into_iter().map(|(_, s)| s).collect(),
        ));
    }
    None
}

/// A property's schema from its .NET type and its description.
fn enreach_property(row: &Row, doc: &Enreach) -> Value {
    let (ty, nullable_type) = match row.ty.strip_suffix('?') {
        Some(t) => (t, true),
        None => (row.ty.as_str(), false),
    };
    let mut s = Map::new();
    s.insert("description".into(), json!(row.desc));
    let types = |base: &str, nullable: bool| {
        if nullable {
            json!([base, "null"])
        } else {
            json!(base)
        }
    };
    match ty {
        "string" | "String" => {
            // A .NET string is a reference type: it may be null, unless it is one of a set.
            if let Some((vals, _)) = documented_values(&row.desc) {
                s.insert("type".into(), json!("string"));
                s.insert("enum".into(), json!(vals));
            } else {
                s.insert("type".into(), types("string", true));
            }
        }
        "Guid" => {
            s.insert("type".into(), types("string", nullable_type));
            s.insert("format".into(), json!("uuid"));
            s.insert("pattern".into(), json!(GUID));
        }
        "DateTime" => {
            s.insert("type".into(), types("string", nullable_type));
            s.insert("pattern".into(), json!(DATETIME));
        }
        "int" | "long" | "short" => {
            s.insert("type".into(), types("integer", nullable_type));
            if let Some((vals, names)) = documented_values(&row.desc) {
                s.insert("enum".into(), json!(vals));
                s.insert("x-enumNames".into(), json!(names));
            }
        }
        "bool" => {
            s.insert("type".into(), types("boolean", nullable_type));
        }
        "RootEntityType" => {
            s.insert("enum".into(), json!(doc.root_entity_types));
        }
        "EntityType" => {
            s.insert("enum".into(), json!(doc.entity_types));
        }
        other => {
            if let Some(item) = other
                .strip_prefix("List<")
                .and_then(|x| x.strip_suffix('>'))
            {
                let misc = doc
                    .misc
                    .iter()
                    .find(|m| m.name == item)
                    .unwrap_or_else(|| panic!("no Misc table for {item}"));
                s.insert("type".into(), json!(["array", "null"]));
                s.insert("items".into(), enreach_object(&misc.rows, misc, doc));
            } else {
                // A type the document names but never defines (SupervisionState): any value.
                s.insert(
                    "$comment".into(),
                    json!(format!("`{other}`: seed 003 does not define its values")),
                );
            }
        }
    }
    Value::Object(s)
}

fn enreach_object(rows: &[Row], section: &Section, doc: &Enreach) -> Value {
    let mut props = Map::new();
    for r in rows {
        props.insert(r.name.clone(), enreach_property(r, doc));
    }
    let mut s = Map::new();
    if !section.description.is_empty() {
        s.insert("description".into(), json!(section.description.join(" ")));
    }
    s.insert("type".into(), json!("object"));
    s.insert("properties".into(), Value::Object(props));
    Value::Object(s)
}

fn generate_enreach() -> Value {
    let doc = parse_enreach(&seed(ENREACH));
    let types: Vec<Value> = doc
        .events
        .iter()
        .map(|e| {
            let mut props = Map::new();
            for r in &doc.common {
                let mut p = enreach_property(r, &doc);
                if r.name == "EventType" {
                    p["const"] = json!(e.name);
                }
                props.insert(r.name.clone(), p);
            }
            for r in &e.rows {
                props.insert(r.name.clone(), enreach_property(r, &doc));
            }
            json!({
                "name": e.name,
                "entity_type": e.entity,
                "description": e.description.join(" "),
                "schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "title": e.name,
                    "type": "object",
                    "properties": props,
                },
            })
        })
        .collect();
    json!({
        "name": "enreach",
        "title": "Enreach (Benemen) webhooks",
        "description": "Every event of Enreach's webhook documentation, with the common properties \
            (Id, Timestamp, RootEntityType, RootEntityId, EntityType, EntityId, EventType) and the \
            event's own. Types follow .NET: Guid and DateTime are checked strings, `?` types and \
            strings may be null, lists hold the documented item objects. Properties are optional \
            and others allowed, as Enreach's own sample omits some and spells `Username`.",
        "source": "seed 003_4544135c7162e51f",
        "event_types": types,
    })
}

// ---------------------------------------------------------------------------------------------
// Enate (seed 004): `"Field"` lines, each followed by its description and `N = Name` values.
// ---------------------------------------------------------------------------------------------

struct EnateField {
    name: String,
    desc: Vec<String>,
    values: Vec<(i64, String)>,
}

fn enate_fields(text: &str, from: &str, to: &str) -> Vec<EnateField> {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("seed 004 lacks `{from}`"));
    let end = text[start..].find(to).map_or(text.len(), |i| start + i);
    let mut out: Vec<EnateField> = vec![];
    for line in text[start..end].lines().skip(1) {
        let t = line.trim();
        if t.is_empty() || matches!(t, "Message" | "Detail" | "Parameter" | "Description") {
            continue;
        }
        if t.len() > 2 && t.starts_with('"') && t.ends_with('"') && !t[1..t.len() - 1].contains('"')
        {
            out.push(EnateField {
                name: t[1..t.len() - 1].to_string(),
                desc: vec![],
                values: vec![],
            });
            continue;
        }
        let Some(f) = out.last_mut() else { continue };
        match t
            .split_once(" = ")
            .map(|(a, b)| (a.trim().parse::<i64>(), b.trim()))
        {
            Some((Ok(n), name)) => f.values.push((n, name.to_string())),
            _ => f.desc.push(t.to_string()),
        }
    }
    out
}

fn enate_property(f: &EnateField) -> Value {
    let desc = f.desc.join(" ");
    let mut s = Map::new();
    s.insert("description".into(), json!(desc));
    if !f.values.is_empty() {
        s.insert("type".into(), json!("integer"));
        s.insert(
            "enum".into(),
            json!(f.values.iter().map(|(n, _)| *n).collect::<Vec<_>>()),
        );
        s.insert(
            "x-enumNames".into(),
            json!(f.values.iter().map(|(_, n)| n).collect::<Vec<_>>()),
        );
    } else if f.name.ends_with("GUID") {
        s.insert("type".into(), json!(["string", "null"]));
        s.insert("format".into(), json!("uuid"));
        s.insert("pattern".into(), json!(GUID));
    } else if f.name.ends_with("Count") {
        s.insert("type".into(), json!("integer"));
    } else if f.name.ends_with("Date") {
        s.insert("type".into(), json!(["string", "null"]));
        s.insert("pattern".into(), json!(DATETIME));
    } else if f.name == "CC" {
        // Addresses: one string, or a list of them.
        s.insert("type".into(), json!(["string", "array", "null"]));
    } else {
        s.insert("type".into(), json!(["string", "null"]));
    }
    Value::Object(s)
}

fn generate_enate() -> Value {
    let text = seed(ENATE);
    let fields = enate_fields(
        &text,
        "Message Returned Explanation",
        "Parameters Required Explanation",
    );
    let mut props = Map::new();
    for f in &fields {
        props.insert(f.name.clone(), enate_property(f));
    }
    props.insert(
        "Webhook".into(),
        json!({"description": "Name of the webhook the message is for", "const": "PacketCreated"}),
    );
    for (_, object, field) in FILTER_OBJECTS {
        props.insert(
            field.into(),
            json!({
                "description": format!(
                    "The packet's {object} (not part of Enate's message): subscriptions with \
                     FilterObjectType {object} match on it"),
                "type": ["string", "null"], "format": "uuid", "pattern": GUID,
            }),
        );
    }
    json!({
        "name": "enate",
        "title": "Enate webhooks",
        "description": "Enate's PacketCreated webhook: the message fields with their value sets, \
            and the packet's company, contract, service and process GUIDs that subscriptions \
            filter on.",
        "source": "seed 004_8cd5874f2211edca",
        "event_types": [{
            "name": "PacketCreated",
            "entity_type": "Packet",
            "description": "A packet (case, ticket or action) was created",
            "schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "PacketCreated",
                "type": "object",
                "required": ["PacketGUID"],
                "properties": props,
            },
        }],
    })
}

// ---------------------------------------------------------------------------------------------
// Enneo (seeds 000 and 001): a bullet list of events; the payloads the documents show.
// ---------------------------------------------------------------------------------------------

fn enneo_events(text: &str) -> Vec<(String, String)> {
    let start = text
        .find("The following events are available:")
        .expect("seed 000 lists its events");
    let end = text[start..]
        .find("After selecting an event")
        .map_or(text.len(), |i| start + i);
    text[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("• "))
        .filter_map(|l| l.split_once(": "))
        .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
        .collect()
}

fn enneo_entity(name: &str) -> &'static str {
    if name.starts_with("Cron") {
        "Schedule"
    } else if name.starts_with("Profile") {
        "Profile"
    } else if name.starts_with("Conversation") {
        "Conversation"
    } else {
        "Ticket"
    }
}

fn enneo_schema(name: &str) -> Value {
    let base = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": name});
    let shape = match name {
        // Seed 001 and Enneo's activity log: who changed which properties of which ticket.
        "TicketUpdated" => json!({
            "type": "object",
            "required": ["ticketId", "changes"],
            "properties": {
                "ticketId": {"type": "integer", "description": "The ticket that changed"},
                "userId": {"type": ["integer", "null"], "description": "The agent who changed it (null for the system)"},
                "changes": {"type": "object", "description": "The changed properties (status, priority, deadline, assignment, …)"},
            },
        }),
        // Seed 001's "Webhook for new Emails".
        "Email" => json!({
            "type": "object",
            "required": ["ticketId", "conversationId"],
            "properties": {
                "ticketId": {"type": "integer"},
                "conversationId": {
                    "type": ["integer", "string", "null"],
                    "description": "Set when the e-mail replies to an existing one or is outgoing, otherwise null",
                },
                "direction": {"enum": ["incoming", "outgoing", "internal"]},
            },
            // Seed 001: an outgoing e-mail has its conversation.
            "if": {"required": ["direction"], "properties": {"direction": {"const": "outgoing"}}},
            "then": {"properties": {"conversationId": {"type": ["integer", "string"]}}},
        }),
        // The documents do not show these payloads: any object.
        _ => json!({"type": "object"}),
    };
    let mut s = base;
    for (k, v) in shape.as_object().into_iter().flatten() {
        s[k] = v.clone();
    }
    s
}

fn generate_enneo() -> Value {
    let mut events = enneo_events(&seed(ENNEO));
    let webhooks = seed(ENNEO_WEBHOOKS);
    assert!(
        webhooks.contains("Webhook for new Emails") && webhooks.contains("conversationId"),
        "seed 001 describes the e-mail webhook"
    );
    events.push((
        "Email".into(),
        "Webhook for new Emails: called for each incoming or outgoing e-mail and internal note \
         (synchronous in Enneo: subscribe with mode sync)"
            .into(),
    ));
    let types: Vec<Value> = events
        .iter()
        .map(|(name, desc)| {
            json!({
                "name": name,
                "entity_type": enneo_entity(name),
                "description": desc,
                "schema": enneo_schema(name),
            })
        })
        .collect();
    json!({
        "name": "enneo",
        "title": "Enneo events",
        "description": "Enneo's events (ticket, conversation, profile, e-mail and cron) and its \
            e-mail webhook. The payloads the documents show are checked (TicketUpdated, Email); \
            the others take any object. The Cron events are published by the schedule presets.",
        "source": "seeds 000_aae2e83387e739ad and 001_68d1f35d2a50f735",
        "schedule_presets": schedule_presets().iter().map(|p| p.name).collect::<Vec<_>>(),
        "event_types": types,
    })
}

// ---------------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------------

fn check_generated(name: &str, generated: Value) {
    let mut text = serde_json::to_string_pretty(&generated).expect("json");
    text.push('\n');
    let path = format!("{}/catalogs/{name}.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SWITCHYARD_WRITE_CATALOGS").is_some() {
        std::fs::write(&path, &text).expect("write catalog");
        return;
    }
    let checked_in = catalog_source(name).expect("a catalog");
    assert!(
        checked_in == text,
        "{path} is not what its seed generates; run SWITCHYARD_WRITE_CATALOGS=1 cargo test -p \
         switchyard-core --test catalogs and review the diff"
    );
}

/// The check against the platforms' documents, whole: the one test left out without them.
#[test]
#[ignore = "needs the platforms' documents, which are not part of the project: set SWITCHYARD_SEEDS_DIR to their directory and run with --ignored"]
fn the_catalogs_match_the_platforms_documents() {
    the_checked_in_catalogs_are_what_the_seeds_generate();
    the_fixtures_are_the_documents_own_text();
    every_enreach_event_and_property_of_seed_003_is_in_the_catalog();
    every_enate_message_field_of_seed_004_is_in_the_catalog();
    every_enneo_event_of_seed_000_is_in_the_catalog_and_the_cron_lines_match_the_presets();
}

fn the_checked_in_catalogs_are_what_the_seeds_generate() {
    check_generated("enreach", generate_enreach());
    check_generated("enate", generate_enate());
    check_generated("enneo", generate_enneo());
}

fn the_fixtures_are_the_documents_own_text() {
    let text = seed(ENREACH);
    let start = text.find("Connection: Keep-Alive").expect("example") + 22;
    let end = start + text[start..].find("\n}").expect("example end") + 2;
    assert_eq!(text[start..end].trim(), ENREACH_EXAMPLE.trim());
    let start = text
        .find("Sample configuration for one endpoint with two events")
        .expect("sample")
        + 53;
    let end = start + text[start..].find("Webhook endpoint").expect("sample end");
    assert_eq!(text[start..end].trim(), ENREACH_SAMPLE_CONFIGURATION.trim());
}

fn schema_of(catalog_name: &str, ty: &str) -> &'static Value {
    &catalog(catalog_name)
        .expect("catalog")
        .event_types
        .iter()
        .find(|t| t.name == ty)
        .unwrap_or_else(|| panic!("{catalog_name} has no {ty}"))
        .schema
}

fn every_enreach_event_and_property_of_seed_003_is_in_the_catalog() {
    let text = seed(ENREACH);
    let c = catalog("enreach").expect("enreach");
    // Counted independently of the parser: every `Event:` heading.
    let headings: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Event: "))
        .collect();
    assert_eq!(headings.len(), 34);
    assert_eq!(c.event_types.len(), headings.len());
    for h in &headings {
        assert!(c.event_types.iter().any(|t| &t.name == h), "{h}");
    }
    // Every table row under each heading is a property of that type, and every common property
    // of every type.
    let mut current: Option<&Value> = None;
    let mut rows = 0;
    for line in text.lines().map(str::trim) {
        if let Some(h) = line.strip_prefix("Event: ") {
            current = Some(&schema_of("enreach", h)["properties"]);
        } else if line.starts_with("Misc: ") {
            current = None;
        } else if let (Some(props), Some(c)) = (current, cells(line))
            && !c[0].starts_with("---")
            && c[0] != "Property name"
        {
            assert!(props.get(&c[0]).is_some(), "{} lacks {}", line, c[0]);
            rows += 1;
        }
    }
    assert!(rows > 300, "{rows} property rows");
    for t in &c.event_types {
        for common in [
            "Id",
            "Timestamp",
            "RootEntityType",
            "RootEntityId",
            "EntityType",
            "EntityId",
            "EventType",
        ] {
            assert!(t.schema["properties"].get(common).is_some(), "{}", t.name);
        }
        let entity = t.entity_type.as_deref().unwrap_or_default();
        assert!(
            ["User", "Queue", "CallList"].contains(&entity),
            "{}",
            t.name
        );
    }
    assert_eq!(
        schema_of("enreach", "QueueCallInUserAllocated")["properties"]["QueueId"]["type"],
        "string"
    );
    let attempt = &schema_of("enreach", "CallbackChanged")["properties"]["CallbackAttempts"];
    assert_eq!(attempt["type"], json!(["array", "null"]));
    assert_eq!(
        attempt["items"]["properties"]["Timestamp"]["type"],
        json!(["string", "null"])
    );
}

#[test]
fn the_documented_value_sets_are_enforced() {
    let enreach = |ty: &str, p: &str| schema_of("enreach", ty)["properties"][p].clone();
    assert_eq!(
        enreach("UserAvailability", "Availability")["enum"],
        json!(["Available", "Busy", "DoNotDisturb", "OffWork"])
    );
    assert_eq!(
        enreach("UserCallInDisconnected", "Reason")["enum"],
        json!(["remote", "local"])
    );
    assert_eq!(
        enreach("UserCallInUserOverflow", "Reason")["enum"]
            .as_array()
            .map(Vec::len),
        Some(9)
    );
    assert_eq!(
        enreach("CallbackChanged", "TypeId")["enum"],
        json!([1, 2, 3])
    );
    assert_eq!(
        enreach("QueueStatus", "OpenStatus")["enum"],
        json!([0, 1, 2, 3, 4, 5, 6])
    );
    assert_eq!(
        enreach("QueueStatus", "OpenStatus")["x-enumNames"][5],
        "Open"
    );
    // Examples ("e.g") are not a closed set.
    assert!(
        enreach("UserWrapUpTerminated", "Reason")
            .get("enum")
            .is_none()
    );
    assert_eq!(
        enreach("QueueStatus", "EntityType")["enum"],
        json!(["Undefined", "User", "Queue", "CallList"])
    );

    let enate = |p: &str| schema_of("enate", "PacketCreated")["properties"][p].clone();
    assert_eq!(
        enate("CommunicationType")["enum"],
        json!([0, 1, 2, 3, 4, 5, 6, 7])
    );
    assert_eq!(
        enate("CommunicationType")["x-enumNames"][7],
        "LetterOutgoing"
    );
    assert_eq!(enate("ProcessType")["enum"], json!([1, 2, 3]));
    assert_eq!(enate("RAGStatus")["enum"], json!([-2, -1, 0, 1]));
    assert_eq!(
        enate("StartedbyMethod")["enum"],
        json!([0, 1, 2, 3, 4, 5, 6, 7, 8])
    );
    assert_eq!(enate("Status")["enum"], json!([0, 1, 2, 3, 4, 5]));
    assert_eq!(enate("Status")["x-enumNames"][1], "To Do");
}

fn every_enate_message_field_of_seed_004_is_in_the_catalog() {
    let text = seed(ENATE);
    let section = &text[text.find("Message Returned Explanation").expect("section")
        ..text
            .find("Parameters Required Explanation")
            .expect("section")];
    let quoted: Vec<&str> = section
        .lines()
        .map(str::trim)
        .filter(|l| l.len() > 2 && l.starts_with('"') && l.ends_with('"'))
        .map(|l| &l[1..l.len() - 1])
        .collect();
    assert_eq!(quoted.len(), 22);
    let props = &schema_of("enate", "PacketCreated")["properties"];
    for q in quoted {
        assert!(props.get(q).is_some(), "{q}");
    }
    // The subscription parameters: every FilterObjectType the document gives, and its number.
    let params = &text[text
        .find("Parameters Required Explanation")
        .expect("section")..];
    for (n, object, _) in FILTER_OBJECTS {
        assert!(
            params.contains(&format!("{object} = {n}")),
            "{object} = {n}"
        );
    }
    for p in [
        "CustomHeader",
        "CustomHeaderValue",
        "FilterObjectGUID",
        "FilterObjectType",
        "SubscriberURL",
        "Webhook",
    ] {
        assert!(params.contains(&format!("\"{p}\"")), "{p}");
    }
}

fn every_enneo_event_of_seed_000_is_in_the_catalog_and_the_cron_lines_match_the_presets() {
    let text = seed(ENNEO);
    let c = catalog("enneo").expect("enneo");
    let bullets: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("• "))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .filter(|n| !n.contains(' '))
        .collect();
    assert_eq!(bullets.len(), 19, "{bullets:?}");
    for b in bullets {
        assert!(c.event_types.iter().any(|t| t.name == b), "{b}");
    }
    for p in schedule_presets() {
        assert!(
            text.contains(&format!("{}: ", p.name)) && text.contains(&format!("({})", p.cron)),
            "{} {}",
            p.name,
            p.cron
        );
        assert!(c.schedule_presets.iter().any(|n| n == p.name));
        assert!(c.event_types.iter().any(|t| t.name == p.event_type));
    }
}

#[test]
fn enneo_event_schemas_hold_the_documents_rules() {
    let email = Schema::compile(schema_of("enneo", "Email")).expect("schema");
    assert!(
        email
            .validate(&json!({"ticketId": 7, "conversationId": null}))
            .is_ok()
    );
    assert!(email.validate(&json!({"ticketId": 7})).is_err());
    // Seed 001: "If the email is a reply to an existing one or is outgoing, the conversationId
    // field is set, otherwise it is null."
    let outgoing = |c: Value| json!({"ticketId": 7, "direction": "outgoing", "conversationId": c});
    assert!(email.validate(&outgoing(Value::Null)).is_err());
    assert!(email.validate(&outgoing(json!("conv-9"))).is_ok());
    assert!(
        email
            .validate(&json!({"ticketId": 7, "direction": "incoming", "conversationId": null}))
            .is_ok()
    );
    let updated = Schema::compile(schema_of("enneo", "TicketUpdated")).expect("schema");
    assert!(
        updated
            .validate(&json!({"userId": 3, "changes": {"status": "closed"}, "ticketId": 7}))
            .is_ok()
    );
}

#[test]
fn seed_003s_example_passes_and_a_wrong_type_is_named() {
    let example: Value = serde_json::from_str(ENREACH_EXAMPLE).expect("the example is JSON");
    let s = Schema::compile(schema_of("enreach", "QueueCallInUserAllocated")).expect("schema");
    s.validate(&example)
        .expect("seed 003's own example is valid");
    let mut bad = example.clone();
    bad["EventType"] = json!("QueueCallInArrived");
    assert!(s.validate(&bad).is_err());

    let cb = Schema::compile(schema_of("enreach", "CallbackChanged")).expect("schema");
    let v = cb
        .validate(&json!({"TypeId": "x"}))
        .expect_err("a string TypeId");
    assert_eq!(v.path, "/data/TypeId");
    assert!(cb.validate(&json!({"TypeId": 4})).is_err());
    assert!(
        cb.validate(&json!({"TypeId": 2, "AssignedUserId": null}))
            .is_ok()
    );
    assert!(cb.validate(&json!({"CallBackId": "not-a-guid"})).is_err());
    assert!(
        cb.validate(&json!({"CallbackAttempts": [{"Id": "85b214f2-1d27-4262-87b6-8f55b3199400", "Timestamp": null}]}))
            .is_ok()
    );
}
