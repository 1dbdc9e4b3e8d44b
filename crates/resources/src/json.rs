//! Defensive accessors over `serde_json::Value`: every object may carry the wrong type anywhere,
//! so lookups return `None` (or an empty slice) instead of panicking.

use serde_json::{Map, Value};

/// The value at `path` (object keys only).
pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    Some(cur)
}

/// The string at `path`, if it is a string.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path)?.as_str()
}

/// The string at `path`, or `""`.
pub fn string<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    str_at(v, path).unwrap_or("")
}

/// The integer at `path`, if it is an integer.
pub fn i64_at(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path)?.as_i64()
}

/// The boolean at `path`, if it is a boolean.
pub fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path)?.as_bool()
}

/// The array at `path`, or an empty slice.
pub fn array<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, if it is an object.
pub fn object<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path)?.as_object()
}

/// Number of entries of the object or array at `path` (0 when absent or of another type).
pub fn len_at(v: &Value, path: &[&str]) -> usize {
    match get(v, path) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// The RFC 3339 timestamp at `path`.
pub fn timestamp_at(v: &Value, path: &[&str]) -> Option<jiff::Timestamp> {
    str_at(v, path)?.parse().ok()
}

/// A `map[string]string` at `path` as sorted `(key, value)` pairs; non-string values are skipped.
pub fn string_map<'a>(v: &'a Value, path: &[&str]) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = object(v, path)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Renders a scalar as a field selector or table would: strings as-is, booleans and numbers in
/// their JSON form, anything else as `""`.
pub fn scalar_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The object at `path` for writing, created (as `{}`) where absent or `null`. `None` if some
/// step exists with another type: defaulting then leaves that object alone.
pub fn ensure_object<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for key in path {
        let map = cur.as_object_mut()?;
        let entry = map.entry(key.to_string()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Object(Map::new());
        }
        cur = entry;
    }
    cur.as_object_mut()
}

/// The existing object at `path` for writing.
pub fn object_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object_mut()?.get_mut(*key)?;
    }
    cur.as_object_mut()
}

/// The existing array at `path` for writing.
pub fn array_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Vec<Value>> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object_mut()?.get_mut(*key)?;
    }
    cur.as_array_mut()
}

/// Sets `map[key] = value` when the key is absent or `null`.
pub fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), value);
        }
        Some(_) => {}
    }
}
