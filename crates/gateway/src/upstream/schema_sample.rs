//! A value sampled from a JSON schema (echo's forced tool arguments and structured
//! output), bounded whatever the schema asks: [`MAX_SAMPLE_BYTES`] in all,
//! [`MAX_SAMPLE_NODES`] values, [`MAX_SAMPLE_ITEMS`] items per array; `minLength` padding
//! is linear. Any key can send the schema, so nothing here grows with its numbers.

use serde_json::{json, Map, Value};

/// Most bytes of a value sampled from a JSON schema (tool arguments, structured output).
pub(crate) const MAX_SAMPLE_BYTES: usize = 64 * 1024;
/// Most values (objects, arrays, scalars) in one sample.
pub(crate) const MAX_SAMPLE_NODES: usize = 10_000;
/// Most items in one sampled array (`minItems` above it is capped).
pub(crate) const MAX_SAMPLE_ITEMS: u64 = 1024;
/// The longest prompt text put into one sampled string.
const SAMPLE_TEXT_BYTES: usize = 1024;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What one schema sample may still make.
struct Budget {
    bytes: usize,
    nodes: usize,
    /// Something was cut short: the sample may not satisfy the schema.
    capped: bool,
}

impl Budget {
    fn new() -> Self {
        Self {
            bytes: MAX_SAMPLE_BYTES,
            nodes: MAX_SAMPLE_NODES,
            capped: false,
        }
    }

    /// Takes `n` bytes; false (and capped) when they are not there.
    fn spend(&mut self, n: usize) -> bool {
        if n > self.bytes {
            self.capped = true;
            return false;
        }
        self.bytes -= n;
        true
    }
}

/// A value that satisfies `schema` (the common JSON Schema keywords), with `text` for
/// strings, within the caps; `true` when something was cut (the value may then fall short
/// of the schema).
pub(crate) fn sample(schema: &Value, text: &str) -> (Value, bool) {
    let mut b = Budget::new();
    let v = sample_within(schema, schema, text, 0, &mut b);
    (v, b.capped)
}

fn sample_within(schema: &Value, root: &Value, text: &str, depth: usize, b: &mut Budget) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    if b.nodes == 0 || b.bytes == 0 {
        b.capped = true;
        return Value::Null;
    }
    b.nodes -= 1;
    let Some(obj) = schema.as_object() else {
        return json!({});
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .map(|ptr| root.pointer(ptr))
            .unwrap_or(None);
        return target.map_or(Value::Null, |t| sample_within(t, root, text, depth + 1, b));
    }
    if let Some(c) = obj.get("const") {
        return c.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = obj
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return sample_within(first, root, text, depth + 1, b);
        }
    }
    if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for s in all {
            if let Value::Object(o) = sample_within(s, root, text, depth + 1, b) {
                merged.extend(o);
            }
        }
        return Value::Object(merged);
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if obj.contains_key("properties") => "object",
        _ => "string",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !b.spend(k.len() + 4) {
                        break;
                    }
                    out.insert(k.clone(), sample_within(s, root, text, depth + 1, b));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = obj
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let max = obj.get("maxItems").and_then(Value::as_u64).unwrap_or(min);
            let mut n = min.min(max);
            if n > MAX_SAMPLE_ITEMS {
                b.capped = true;
                n = MAX_SAMPLE_ITEMS;
            }
            let null = Value::Null;
            let item = obj.get("items").unwrap_or(&null);
            let mut out = Vec::new();
            for _ in 0..n {
                if b.nodes == 0 || !b.spend(1) {
                    b.capped = true;
                    break;
                }
                out.push(if item.is_null() {
                    b.nodes -= 1;
                    json!({})
                } else {
                    sample_within(item, root, text, depth + 1, b)
                });
            }
            Value::Array(out)
        }
        "integer" | "number" => {
            let lo = obj.get("minimum").and_then(Value::as_f64).or_else(|| {
                obj.get("exclusiveMinimum")
                    .and_then(Value::as_f64)
                    .map(|m| m + 1.0)
            });
            let hi = obj.get("maximum").and_then(Value::as_f64);
            let v = lo.unwrap_or(0.0).min(hi.unwrap_or(f64::MAX));
            b.spend(24);
            if ty == "integer" {
                json!(v.ceil() as i64)
            } else {
                json!(v)
            }
        }
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => Value::String(sample_string(obj, text, b)),
    }
}

/// A string for a `string` schema: a format's example or the prompt's text, cut to
/// `maxLength` and padded to `minLength` characters (linear, within the budget).
fn sample_string(obj: &Map<String, Value>, text: &str, b: &mut Budget) -> String {
    let base = match obj.get("format").and_then(Value::as_str) {
        Some("date") => "2025-01-01",
        Some("date-time") => "2025-01-01T00:00:00Z",
        Some("email") => "echo@example.com",
        Some("uri") | Some("url") => "https://example.com/",
        Some("uuid") => "00000000-0000-4000-8000-000000000000",
        _ if text.is_empty() => "echo",
        _ => prefix(text, SAMPLE_TEXT_BYTES),
    };
    let min = obj
        .get("minLength")
        .and_then(Value::as_u64)
        .map_or(0, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let max = obj
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    let mut s: String = base.chars().take(max).collect();
    let have = s.chars().count();
    if have < min {
        let pad = (min - have).min(b.bytes.saturating_sub(s.len()));
        if pad < min - have {
            b.capped = true;
        }
        s.extend(std::iter::repeat_n('x', pad));
    }
    if !b.spend(s.len() + 2) {
        s.truncate(prefix(&s, b.bytes).len());
        b.bytes = 0;
    }
    s
}
