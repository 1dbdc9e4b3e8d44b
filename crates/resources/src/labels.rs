//! Label selectors: the `labelSelector` query grammar (`k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`, comma = AND) with upstream's error messages, and
//! the structured `metav1.LabelSelector` (`matchLabels` + `matchExpressions`) of `spec.selector`.
//!
//! Matching follows upstream: `!=` and `notin` also match objects without the key.

use std::fmt;

use serde_json::{Map, Value};

use crate::syntax;

/// A malformed label or field selector. The message is upstream's, ready for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector does not parse or a key/value is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A field selector names a field this kind cannot be selected by.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
}

/// The operator of one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One term of a selector: `key <operator> values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and without duplicates for `in`/`notin`; one value for the equality and
    /// comparison operators; empty for `Exists`/`DoesNotExist`.
    pub values: Vec<String>,
}

/// A parsed label selector: requirements ANDed together, sorted by key. An empty selector
/// matches everything; [`LabelSelector::nothing`] matches nothing (a `null` `spec.selector`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

/// Parses the `labelSelector` query grammar.
pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
    let tokens = lex(s);
    let mut parser = Parser { tokens, pos: 0 };
    let mut requirements = parser.parse()?;
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

/// Builds a selector from a `metav1.LabelSelector` JSON object (`spec.selector` of workloads).
/// `null` (or an absent selector) selects nothing; `{}` selects everything.
pub fn from_label_selector_json(v: &Value) -> Result<LabelSelector, SelectorError> {
    let map = match v {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(m) => m,
        _ => return Err(SelectorError::Invalid("invalid label selector".into())),
    };
    let mut requirements = Vec::new();
    match map.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                let Some(v) = v.as_str() else {
                    return Err(SelectorError::Invalid(format!(
                        "invalid value for matchLabels[{k}]: must be a string"
                    )));
                };
                requirements.push(new_requirement(k, Operator::Equals, vec![v.to_string()])?);
            }
        }
        Some(_) => {
            return Err(SelectorError::Invalid(
                "invalid label selector: matchLabels must be an object".into(),
            ))
        }
    }
    for expr in map
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
        let op = expr.get("operator").and_then(Value::as_str).unwrap_or("");
        let operator = match op {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(SelectorError::Invalid(format!(
                    "{} is not a valid label selector operator",
                    syntax::go_quote(other)
                )))
            }
        };
        let values: Vec<String> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        requirements.push(new_requirement(key, operator, values)?);
    }
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

impl LabelSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Matches no object.
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// A selector requiring each `key=value` of a `map[string]string` (Service and
    /// ReplicationController selectors). Non-string values are ignored.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        let mut requirements: Vec<Requirement> = map
            .iter()
            .filter_map(|(k, v)| {
                Some(Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.as_str()?.to_string()],
                })
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Whether this selector matches everything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selector matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these labels (`metadata.labels`) is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        if self.nothing {
            return false;
        }
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the object's `metadata.labels` are selected.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(
            obj.get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object),
        )
    }
}

impl Requirement {
    /// Whether labels satisfy this requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.iter().any(|x| x == v))
            }
            Operator::NotEquals | Operator::NotIn => {
                value.is_none_or(|v| !self.values.iter().any(|x| x == v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let mut values = self.values.clone();
        values.sort();
        let joined = values.join(",");
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            write!(f, "({joined})")
        } else {
            f.write_str(&joined)
        }
    }
}

/// The canonical form upstream prints (`app=web,tier in (a,b)`); empty for everything/nothing.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// `metav1.FormatLabelSelector`: the selector's string, `<none>` when empty, `<error>` when the
/// JSON is not a valid selector.
pub fn format_label_selector(v: &Value) -> String {
    match from_label_selector_json(v) {
        Ok(sel) => {
            let s = sel.to_string();
            if s.is_empty() {
                "<none>".into()
            } else {
                s
            }
        }
        Err(_) => "<error>".into(),
    }
}

/// `labels.FormatLabels`: `k=v,k2=v2` sorted by key, `<none>` when empty.
pub fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<(&str, &str)> = map
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

// ---- requirement validation (upstream NewRequirement) ----

fn field_invalid(path: &str, value: &str, detail: &str) -> String {
    format!(
        "{path}: Invalid value: {}: {detail}",
        syntax::go_quote(value)
    )
}

fn validate_key(key: &str, path: &str) -> Option<String> {
    let errs = syntax::is_qualified_name(key);
    if errs.is_empty() {
        None
    } else {
        Some(field_invalid(path, key, &errs.join("; ")))
    }
}

/// Upstream `NewRequirement`: validates the key, the number of values for the operator and each
/// value; multiple errors are reported as `[e1, e2]`.
fn new_requirement(
    key: &str,
    operator: Operator,
    mut values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    let mut errs = Vec::new();
    if let Some(e) = validate_key(key, "key") {
        errs.push(e);
    }
    let values_json = |vs: &[String]| {
        format!(
            "[]string{{{}}}",
            vs.iter()
                .map(|v| syntax::go_quote(v))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match operator {
        Operator::In | Operator::NotIn => {
            if values.is_empty() {
                errs.push(format!(
                    "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                    values_json(&values)
                ));
            }
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
            if values.len() != 1 {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    values_json(&values)
                ));
            }
        }
        Operator::Exists | Operator::DoesNotExist => {
            if !values.is_empty() {
                errs.push(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does not exist",
                    values_json(&values)
                ));
            }
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(format!(
                    "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                    values_json(&values)
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(field_invalid(
                        &format!("values[{i}]"),
                        v,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = syntax::is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(field_invalid(
                &format!("values[{i}][{key}]"),
                v,
                &msgs.join("; "),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(SelectorError::Invalid(aggregate(errs)));
    }
    if matches!(operator, Operator::In | Operator::NotIn) {
        values.sort();
        values.dedup();
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

/// Upstream `utilerrors.NewAggregate(...).Error()`: one message as-is, several as `[a, b]`
/// (duplicates dropped).
pub(crate) fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    }
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    OpenPar,
    ClosedPar,
    Comma,
    EndOfString,
    Error(String),
}

impl Token {
    /// The literal upstream prints in `found '%s'` messages.
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(s) | Token::Error(s) => s,
            Token::DoesNotExist => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::OpenPar => "(",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::EndOfString => "",
        }
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn special_token(s: &str) -> Option<Token> {
    Some(match s {
        "!" => Token::DoesNotExist,
        "!=" => Token::NotEquals,
        "(" => Token::OpenPar,
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "=" => Token::Equals,
        "==" => Token::DoubleEquals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_whitespace(chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            tokens.push(Token::EndOfString);
            return tokens;
        }
        let c = chars[i];
        if is_special(c) {
            // Longest run of special characters that still forms a known token.
            let mut buffer = String::new();
            let mut last: Option<(Token, usize)> = None;
            let mut j = i;
            while j < chars.len() && is_special(chars[j]) {
                buffer.push(chars[j]);
                if let Some(t) = special_token(&buffer) {
                    last = Some((t, j + 1));
                } else if last.is_some() {
                    break;
                }
                j += 1;
            }
            match last {
                Some((t, end)) => {
                    tokens.push(t);
                    i = end;
                }
                None => {
                    tokens.push(Token::Error(format!(
                        "error expected: keyword found '{buffer}'"
                    )));
                    i = j;
                }
            }
        } else {
            let start = i;
            while i < chars.len() && !is_whitespace(chars[i]) && !is_special(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(match word.as_str() {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(word),
            });
        }
    }
}

// ---- parser ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

fn invalid(msg: String) -> SelectorError {
    SelectorError::Invalid(msg)
}

impl Parser {
    fn adjust(tok: Token, ctx: Context) -> Token {
        match (ctx, tok) {
            (Context::Values, Token::In) => Token::Identifier("in".into()),
            (Context::Values, Token::NotIn) => Token::Identifier("notin".into()),
            (_, t) => t,
        }
    }

    fn lookahead(&self, ctx: Context) -> Token {
        let tok = self
            .tokens
            .get(self.pos)
            .cloned()
            .unwrap_or(Token::EndOfString);
        Self::adjust(tok, ctx)
    }

    fn consume(&mut self, ctx: Context) -> Token {
        let tok = self.lookahead(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead(Context::Values) {
                Token::Identifier(_) | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        invalid(format!("unable to parse requirement: {}", message(e)))
                    })?;
                    requirements.push(r);
                    let t = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let t2 = self.lookahead(Context::Values);
                            if !matches!(t2, Token::Identifier(_) | Token::DoesNotExist) {
                                return Err(invalid(format!(
                                    "found '{}', expected: identifier after ','",
                                    t2.literal()
                                )));
                            }
                        }
                        other => {
                            return Err(invalid(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            )))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                other => {
                    return Err(invalid(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op) = operator {
            return new_requirement(&key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(&key, operator, values)
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(String, Option<Operator>), SelectorError> {
        let mut tok = self.consume(Context::Values);
        let mut does_not_exist = false;
        if tok == Token::DoesNotExist {
            does_not_exist = true;
            tok = self.consume(Context::Values);
        }
        let Token::Identifier(key) = tok else {
            return Err(invalid(format!(
                "found '{}', expected: identifier",
                tok.literal()
            )));
        };
        if let Some(e) = validate_key(&key, "<nil>") {
            return Err(invalid(e));
        }
        if does_not_exist {
            return Ok((key, Some(Operator::DoesNotExist)));
        }
        match self.lookahead(Context::Values) {
            Token::EndOfString | Token::Comma => Ok((key, Some(Operator::Exists))),
            _ => Ok((key, None)),
        }
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        Ok(match self.consume(Context::KeyAndOperator) {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            other => {
                return Err(invalid(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.literal()
                )))
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let tok = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(invalid(format!("found '{}' expected: '('", tok.literal())));
        }
        let tok = self.lookahead(Context::Values);
        match tok {
            Token::Identifier(_) | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values) != Token::ClosedPar {
                    return Err(invalid(format!("found '{}', expected: ')'", tok.literal())));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            other => Err(invalid(format!(
                "found '{}', expected: ',', ')' or identifier",
                other.literal()
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        let insert = |values: &mut Vec<String>, v: String| {
            if !values.contains(&v) {
                values.push(v);
            }
        };
        loop {
            match self.consume(Context::Values) {
                Token::Identifier(v) => {
                    insert(&mut values, v);
                    match self.lookahead(Context::Values) {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        other => {
                            return Err(invalid(format!(
                                "found '{}', expected: ',' or ')'",
                                other.literal()
                            )))
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        insert(&mut values, String::new());
                    }
                    match self.lookahead(Context::Values) {
                        Token::ClosedPar => {
                            insert(&mut values, String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            insert(&mut values, String::new());
                        }
                        _ => {}
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    )))
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.lookahead(Context::Values) {
            Token::EndOfString | Token::Comma => return Ok(vec![String::new()]),
            _ => {}
        }
        match self.consume(Context::Values) {
            Token::Identifier(v) => Ok(vec![v]),
            other => Err(invalid(format!(
                "found '{}', expected: identifier",
                other.literal()
            ))),
        }
    }
}

fn message(e: SelectorError) -> String {
    match e {
        SelectorError::Invalid(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn grammar_and_canonical_form() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            (" x = a , y ", "x=a,y"),
            ("x in (b,a,b)", "x in (a,b)"),
            ("x notin(a)", "x notin (a)"),
            ("!x", "!x"),
            ("x", "x"),
            ("z=1,a=2", "a=2,z=1"),
            ("x>1,y<2", "x>1,y<2"),
            ("x=", "x="),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
            ("x=in", "x=in"),
            ("x in (in,notin)", "x in (in,notin)"),
        ];
        for (input, want) in cases {
            let sel = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn errors_match_upstream() {
        let cases = [
            ("x=a,", "found '', expected: identifier after ','"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("x in a", "unable to parse requirement: found 'a' expected: '('"),
            ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("x ! a", "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt"),
            ("x=(a)", "unable to parse requirement: found '(', expected: identifier"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("x>a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"),
            ("x=-a", "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
            ("a/b/c=d", "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
        ];
        for (input, want) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn matching() {
        let l = labels(json!({"app": "web", "tier": "front", "n": "5"}));
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db,web)", true),
            ("app notin (db,web)", false),
            ("missing notin (a)", true),
            ("missing in (a)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("n>4,n<6", true),
            ("n>5", false),
            ("app>1", false),
            ("app=web,tier=back", false),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap().matches(Some(&l)), want, "{input:?}");
        }
        assert!(parse("x!=a").unwrap().matches(None));
        assert!(!parse("x=a").unwrap().matches(None));
    }

    #[test]
    fn structured_selectors() {
        let sel = from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(sel.to_string(), "app=web,!canary,tier in (edge,front)");
        assert!(sel.matches(Some(&labels(json!({"app": "web", "tier": "edge"})))));
        assert!(!sel.matches(Some(&labels(
            json!({"app": "web", "tier": "edge", "canary": "1"})
        ))));
        assert!(from_label_selector_json(&Value::Null).unwrap().is_nothing());
        assert!(!from_label_selector_json(&Value::Null)
            .unwrap()
            .matches(None));
        assert!(from_label_selector_json(&json!({})).unwrap().matches(None));
        let err = from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"Foo\" is not a valid label selector operator"
        );
        assert!(from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
        )
        .is_err());
        assert!(from_label_selector_json(&json!("x")).is_err());
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchLabels": {"a": "b"}})),
            "a=b"
        );
        assert_eq!(
            format_labels(Some(&labels(json!({"b": "2", "a": "1"})))),
            "a=1,b=2"
        );
        assert_eq!(format_labels(None), "<none>");
    }
}
