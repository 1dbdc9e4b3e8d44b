//! Strict decoding as kube-apiserver does it for `fieldValidation=Strict|Warn`: unknown fields
//! (found by walking an object against its schema) and duplicate fields (found by scanning the
//! raw JSON, since a parsed object has already lost them).
//!
//! Messages and paths follow sigs.k8s.io/json: `unknown field "spec.replicass"`,
//! `duplicate field "metadata.name"`; keys are joined with `.`, list items are `[i]`, at most 100
//! messages, each once.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Upstream stops collecting strict errors at this many.
const MAX_ERRORS: usize = 100;
/// Deeper JSON than this is not inspected (serde_json refuses to parse beyond 128 anyway).
const MAX_DEPTH: usize = 512;

/// `strict decoding error: unknown field "a", duplicate field "b"`: how kube-apiserver reports
/// the messages of [`crate::OpenApi::unknown_fields`] and [`duplicate_fields`] for
/// `fieldValidation=Strict` (with Warn each message is a warning of its own).
pub fn strict_decoding_error(messages: &[String]) -> String {
    format!("strict decoding error: {}", messages.join(", "))
}

/// Collected messages, deduplicated and capped like upstream.
#[derive(Default)]
struct Messages(Vec<String>);

impl Messages {
    fn push(&mut self, what: &str, path: &str) {
        if self.0.len() >= MAX_ERRORS {
            return;
        }
        let message = format!("{what} {}", go_quote(path));
        if !self.0.contains(&message) {
            self.0.push(message);
        }
    }
}

/// Walks objects against the `components.schemas` of the OpenAPI documents.
pub(crate) struct SchemaWalker<'a> {
    pub schemas: &'a Map<String, Value>,
}

impl SchemaWalker<'_> {
    /// The unknown fields of `value` against the schema named `schema_name`.
    pub(crate) fn unknown_fields(&self, schema_name: &str, value: &Value) -> Vec<String> {
        let mut messages = Messages::default();
        if let Some(schema) = self.schemas.get(schema_name) {
            let mut path = String::new();
            self.walk(schema, value, &mut path, 0, &mut messages);
        }
        messages.0
    }

    /// Follows `$ref` and single-member `allOf` (upstream's way of adding a description to a
    /// reference) to the schema that describes the value.
    fn resolve<'s>(&'s self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..32 {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or(reference);
                match self.schemas.get(name) {
                    Some(target) => schema = target,
                    None => return schema,
                }
            } else if let Some([only]) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                schema = only;
            } else {
                break;
            }
        }
        schema
    }

    fn walk(
        &self,
        schema: &Value,
        value: &Value,
        path: &mut String,
        depth: usize,
        messages: &mut Messages,
    ) {
        if depth > MAX_DEPTH || messages.0.len() >= MAX_ERRORS {
            return;
        }
        let schema = self.resolve(schema);
        if accepts_anything(schema) {
            return;
        }
        if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
            if let Some(alternative) = alternatives
                .iter()
                .find(|alternative| fits(self.resolve(alternative), value))
            {
                self.walk(alternative, value, path, depth + 1, messages);
            }
            return;
        }
        match value {
            Value::Object(object) => {
                let properties = schema.get("properties").and_then(Value::as_object);
                let additional = schema
                    .get("additionalProperties")
                    .filter(|additional| additional.is_object());
                for (key, child) in object {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    match (properties.and_then(|p| p.get(key)), additional) {
                        (Some(property), _) => {
                            self.walk(property, child, path, depth + 1, messages)
                        }
                        (None, Some(additional)) => {
                            self.walk(additional, child, path, depth + 1, messages)
                        }
                        (None, None) if properties.is_some() => {
                            messages.push("unknown field", path)
                        }
                        // No properties and no additionalProperties: a free-form object.
                        (None, None) => {}
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("[{index}]"));
                        self.walk(item_schema, item, path, depth + 1, messages);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Schemas whose values the decoder takes whole: int-or-string, quantities,
/// `x-kubernetes-preserve-unknown-fields`.
fn accepts_anything(schema: &Value) -> bool {
    let flag = |name: &str| schema.get(name).and_then(Value::as_bool) == Some(true);
    flag("x-kubernetes-preserve-unknown-fields") || flag("x-kubernetes-int-or-string")
}

/// Whether a `oneOf` alternative describes values of `value`'s JSON type.
fn fits(schema: &Value, value: &Value) -> bool {
    let schema_type = schema.get("type").and_then(Value::as_str);
    match value {
        Value::Object(_) => schema_type == Some("object") || schema.get("properties").is_some(),
        Value::Array(_) => schema_type == Some("array"),
        Value::Bool(_) => schema_type == Some("boolean"),
        Value::String(_) => schema_type == Some("string"),
        Value::Number(_) => matches!(schema_type, Some("integer" | "number")),
        Value::Null => false,
    }
}

/// Duplicate keys in a JSON document, as upstream strict decoding reports them:
/// `duplicate field "metadata.name"`, `duplicate field "spec.containers[0].image"`.
///
/// Scans up to the first syntax error (the decoder reports that one) and ignores what follows.
pub fn duplicate_fields(raw_json: &[u8]) -> Vec<String> {
    let mut scanner = Scanner {
        bytes: raw_json,
        position: 0,
        messages: Messages::default(),
    };
    let mut path = String::new();
    // A syntax error only ends the scan.
    let _ = scanner.value(&mut path, 0);
    scanner.messages.0
}

/// Why a scan stopped early.
struct Stop;

struct Scanner<'a> {
    bytes: &'a [u8],
    position: usize,
    messages: Messages,
}

impl Scanner<'_> {
    fn peek(&mut self) -> Option<u8> {
        while let Some(&byte) = self.bytes.get(self.position) {
            if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                self.position += 1;
            } else {
                return Some(byte);
            }
        }
        None
    }

    fn expect(&mut self, byte: u8) -> Result<(), Stop> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(Stop)
        }
    }

    fn value(&mut self, path: &mut String, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop);
        }
        match self.peek().ok_or(Stop)? {
            b'{' => self.object(path, depth),
            b'[' => self.array(path, depth),
            b'"' => self.string().map(drop),
            _ => {
                let start = self.position;
                while let Some(byte) = self.bytes.get(self.position) {
                    if matches!(byte, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.position += 1;
                }
                if self.position == start {
                    Err(Stop)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn object(&mut self, path: &mut String, depth: usize) -> Result<(), Stop> {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(());
        }
        let mut seen = HashSet::new();
        loop {
            let key = self.string()?;
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&key);
            if !seen.insert(key) {
                self.messages.push("duplicate field", path);
            }
            self.expect(b':')?;
            self.value(path, depth + 1)?;
            path.truncate(len);
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(Stop),
            }
        }
    }

    fn array(&mut self, path: &mut String, depth: usize) -> Result<(), Stop> {
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.position += 1;
            return Ok(());
        }
        for index in 0.. {
            let len = path.len();
            path.push_str(&format!("[{index}]"));
            self.value(path, depth + 1)?;
            path.truncate(len);
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b']') => {
                    self.position += 1;
                    return Ok(());
                }
                _ => return Err(Stop),
            }
        }
        Ok(())
    }

    /// A string literal, unescaped.
    fn string(&mut self) -> Result<String, Stop> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let byte = *self.bytes.get(self.position).ok_or(Stop)?;
            self.position += 1;
            match byte {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let escape = *self.bytes.get(self.position).ok_or(Stop)?;
                    self.position += 1;
                    let unescaped = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(Stop),
                    };
                    let mut buffer = [0; 4];
                    out.extend_from_slice(unescaped.encode_utf8(&mut buffer).as_bytes());
                }
                _ => out.push(byte),
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already read), joining surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char, Stop> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high)
            && self.bytes.get(self.position..self.position + 2) == Some(b"\\u")
        {
            let saved = self.position;
            self.position += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            self.position = saved;
        }
        Ok(char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        let digits = self
            .bytes
            .get(self.position..self.position + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or(Stop)?;
        self.position += 4;
        Ok(digits)
    }
}

/// Quotes like Go's `strconv.Quote`, as upstream messages do.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_with_paths() {
        let raw = br#"{"metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},
            "spec":{"containers":[{"name":"c","image":"i","image":"j"}]},"kind":"Pod","kind":"Pod"}"#;
        assert_eq!(
            duplicate_fields(raw),
            [
                r#"duplicate field "metadata.name""#,
                r#"duplicate field "metadata.labels.x""#,
                r#"duplicate field "spec.containers[0].image""#,
                r#"duplicate field "kind""#,
            ]
        );
    }

    #[test]
    fn duplicates_compare_unescaped_keys() {
        let raw = r#"{"a\u0062":1,"ab":2,"\ud83d\ude00":1,"😀":2}"#;
        assert_eq!(
            duplicate_fields(raw.as_bytes()),
            [r#"duplicate field "ab""#, r#"duplicate field "😀""#]
        );
    }

    #[test]
    fn duplicates_of_broken_or_deep_json_do_not_panic() {
        assert!(duplicate_fields(b"").is_empty());
        assert!(duplicate_fields(b"{\"a\":").is_empty());
        assert_eq!(
            duplicate_fields(br#"{"a":1,"a":2,"#),
            [r#"duplicate field "a""#]
        );
        let deep = "[".repeat(100_000);
        assert!(duplicate_fields(deep.as_bytes()).is_empty());
        assert!(duplicate_fields(b"\"\\u12").is_empty());
    }

    #[test]
    fn duplicates_are_capped_and_deduplicated() {
        let mut raw = String::from("{");
        for i in 0..300 {
            raw.push_str(&format!("\"k{}\":1,\"k{}\":2,\"k{}\":3,", i, i, i));
        }
        raw.push_str("\"end\":0}");
        let found = duplicate_fields(raw.as_bytes());
        assert_eq!(found.len(), MAX_ERRORS);
        assert_eq!(found[0], r#"duplicate field "k0""#);
        assert_eq!(found[1], r#"duplicate field "k1""#);
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\x01""#);
        assert_eq!(
            strict_decoding_error(&["unknown field \"a\"".into(), "duplicate field \"b\"".into()]),
            r#"strict decoding error: unknown field "a", duplicate field "b""#
        );
    }
}
