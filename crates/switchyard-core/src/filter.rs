//! Subscription filters: a small MongoDB-style query over the event envelope.
//!
//! `{"data.priority": {"$in": ["high"]}, "entity.type": "Ticket"}` — every top-level key is a
//! dot path into `{id, type, timestamp, entity: {type, id}, data}` (array elements by index),
//! compared with `$eq $ne $in $nin $exists $gt $gte $lt $lte`, or a literal meaning `$eq`;
//! `$and` / `$or` take lists of such objects. Filters are parsed once, when the subscription is
//! written, so a bad filter is refused with a clear message and matching never fails.

use crate::path::DotPath;
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, thiserror::Error)]
#[error("invalid filter at `{at}`: {message}")]
pub struct FilterError {
    pub at: String,
    pub message: String,
}

fn err(at: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        at: at.to_string(),
        message: message.into(),
    }
}

/// A subscription's filter: the document as given — what is stored and shown — and its parsed
/// form, which routing evaluates. It exists only once the document parsed, so a subscription
/// never holds a filter that cannot match.
#[derive(Debug, Clone)]
pub struct SubscriptionFilter {
    doc: Value,
    parsed: Filter,
}

impl SubscriptionFilter {
    /// Parses `doc` (a JSON object).
    pub fn parse(doc: Value) -> Result<SubscriptionFilter, FilterError> {
        let parsed = Filter::parse(&doc)?;
        Ok(SubscriptionFilter { doc, parsed })
    }

    /// The document as given.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    pub fn into_doc(self) -> Value {
        self.doc
    }

    /// The parsed form.
    pub fn filter(&self) -> &Filter {
        &self.parsed
    }

    pub fn matches(&self, envelope: &Value) -> bool {
        self.parsed.matches(envelope)
    }
}

/// Two filters are the same when their documents are.
impl PartialEq for SubscriptionFilter {
    fn eq(&self, other: &Self) -> bool {
        self.doc == other.doc
    }
}

/// A parsed filter, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Field { path: DotPath, op: Op },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
}

impl Filter {
    /// Parses a filter document. `null` or `{}` match everything.
    pub fn parse(doc: &Value) -> Result<Filter, FilterError> {
        match doc {
            Value::Null => Ok(Filter::And(vec![])),
            Value::Object(_) => parse_object(doc, "$"),
            _ => Err(err("$", "a filter must be a JSON object")),
        }
    }

    /// Evaluates the filter against an event envelope.
    pub fn matches(&self, envelope: &Value) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(envelope)),
            Filter::Or(any) => any.iter().any(|f| f.matches(envelope)),
            Filter::Field { path, op } => op.eval(path.lookup(envelope)),
        }
    }
}

fn parse_object(doc: &Value, at: &str) -> Result<Filter, FilterError> {
    let Value::Object(map) = doc else {
        return Err(err(at, "expected an object"));
    };
    let mut parts = Vec::with_capacity(map.len());
    for (key, val) in map {
        let here = format!("{at}.{key}");
        match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = val else {
                    return Err(err(&here, "expects a list of filters"));
                };
                let subs = items
                    .iter()
                    .enumerate()
                    .map(|(i, f)| parse_object(f, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push(if key == "$and" {
                    Filter::And(subs)
                } else {
                    Filter::Or(subs)
                });
            }
            k if k.starts_with('$') => return Err(err(&here, "unknown operator at top level")),
            path => {
                let Some(segs) = DotPath::parse(path) else {
                    return Err(err(&here, "empty path segment, or a path over 200 bytes"));
                };
                match val {
                    Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                        for (op, arg) in ops {
                            parts.push(Filter::Field {
                                path: segs.clone(),
                                op: parse_op(op, arg, &format!("{here}.{op}"))?,
                            });
                        }
                    }
                    literal => parts.push(Filter::Field {
                        path: segs,
                        op: Op::Eq(literal.clone()),
                    }),
                }
            }
        }
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Filter::And(parts)
    })
}

fn parse_op(op: &str, arg: &Value, at: &str) -> Result<Op, FilterError> {
    let list = || match arg {
        Value::Array(a) => Ok(a.clone()),
        _ => Err(err(at, "expects a list")),
    };
    let comparable = || match arg {
        Value::Number(_) | Value::String(_) => Ok(arg.clone()),
        _ => Err(err(at, "expects a number or a string")),
    };
    Ok(match op {
        "$eq" => Op::Eq(arg.clone()),
        "$ne" => Op::Ne(arg.clone()),
        "$in" => Op::In(list()?),
        "$nin" => Op::Nin(list()?),
        "$exists" => match arg {
            Value::Bool(b) => Op::Exists(*b),
            _ => return Err(err(at, "expects true or false")),
        },
        "$gt" => Op::Gt(comparable()?),
        "$gte" => Op::Gte(comparable()?),
        "$lt" => Op::Lt(comparable()?),
        "$lte" => Op::Lte(comparable()?),
        other => {
            return Err(err(
                at,
                format!(
                    "unknown operator `{other}` (use $eq $ne $in $nin $exists $gt $gte $lt $lte $and $or)"
                ),
            ));
        }
    })
}

/// Equality that treats `1` and `1.0` as equal, as users expect of JSON numbers.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Op {
    fn eval(&self, v: Option<&Value>) -> bool {
        match self {
            Op::Exists(want) => v.is_some() == *want,
            Op::Eq(x) => v.is_some_and(|v| json_eq(v, x)),
            Op::Ne(x) => !v.is_some_and(|v| json_eq(v, x)),
            Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| json_eq(v, x))),
            Op::Nin(xs) => !v.is_some_and(|v| xs.iter().any(|x| json_eq(v, x))),
            Op::Gt(x) => v.and_then(|v| compare(v, x)) == Some(Ordering::Greater),
            Op::Gte(x) => matches!(
                v.and_then(|v| compare(v, x)),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Lt(x) => v.and_then(|v| compare(v, x)) == Some(Ordering::Less),
            Op::Lte(x) => matches!(
                v.and_then(|v| compare(v, x)),
                Some(Ordering::Less | Ordering::Equal)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> Value {
        json!({"id": "e1", "type": "TicketUpdated", "entity": {"type": "Ticket", "id": "456"},
               "data": {"priority": "high", "n": 3, "tags": ["a", "b"], "changes": {"status": "closed"}}})
    }

    fn m(f: Value) -> bool {
        Filter::parse(&f).expect("valid filter").matches(&env())
    }

    #[test]
    fn operators() {
        assert!(m(json!({})));
        assert!(m(json!(null)));
        assert!(m(json!({"data.priority": {"$in": ["high", "urgent"]}})));
        assert!(!m(json!({"data.priority": {"$nin": ["high"]}})));
        assert!(m(json!({"data.priority": "high", "entity.id": "456"})));
        assert!(!m(json!({"data.priority": "low"})));
        assert!(m(json!({"data.priority": {"$ne": "low"}})));
        assert!(m(json!({"data.missing": {"$ne": "low"}})));
        assert!(m(json!({"data.missing": {"$exists": false}})));
        assert!(m(json!({"data.n": {"$exists": true}})));
        assert!(m(json!({"data.n": {"$gt": 2, "$lte": 3}})));
        assert!(!m(json!({"data.n": {"$gt": 3}})));
        assert!(m(json!({"data.n": {"$eq": 3.0}})));
        assert!(m(json!({"data.n": {"$lt": 4}})));
        assert!(m(json!({"data.n": {"$gte": 3}})));
        assert!(
            !m(json!({"data.priority": {"$gt": 3}})),
            "string vs number never compares"
        );
        assert!(m(json!({"data.tags.1": "b"})));
        assert!(m(json!({"data.changes.status": "closed"})));
        assert!(m(
            json!({"$or": [{"data.priority": "low"}, {"type": "TicketUpdated"}]})
        ));
        assert!(!m(
            json!({"$and": [{"data.priority": "high"}, {"type": "TicketCreated"}]})
        ));
        assert!(
            m(json!({"data.changes": {"status": "closed"}})),
            "object literal is $eq"
        );
    }

    #[test]
    fn bad_filters_are_refused_with_their_path() {
        let e = Filter::parse(&json!({"data.x": {"$regex": "a"}})).unwrap_err();
        assert!(e.to_string().contains("$regex"), "{e}");
        assert!(Filter::parse(&json!({"$or": {}})).is_err());
        assert!(Filter::parse(&json!({"data.x": {"$in": 3}})).is_err());
        assert!(Filter::parse(&json!({"data..x": 1})).is_err());
        assert!(Filter::parse(&json!([1])).is_err());
        assert!(Filter::parse(&json!({"$where": "1"})).is_err());
    }
}
