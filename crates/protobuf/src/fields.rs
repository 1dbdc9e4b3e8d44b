//! The JSON side of a message: the [`ToJson`] trait, the field emission modes the generated tables
//! name (`opt`, `omitzero`, `req`, `nullable`, `inline`), and the macros that turn a table into an
//! `impl ToJson`.
//!
//! The modes reproduce what Go's `encoding/json` writes for the Go field the protobuf field came
//! from, so the output is the body a JSON client (kubectl 1.31) would have sent:
//! - `opt`: a pointer, a struct, or an `omitempty` list/map: written when set (lists and maps
//!   when not empty), even when the value is zero (`replicas: 0`, `suspend: false`).
//! - `omitzero`: a non-pointer scalar with `omitempty`: protobuf always carries it (gogo writes
//!   every non-pointer field), JSON drops it when it is `""`, `0` or `false`.
//! - `req`: no `omitempty`: written when set; an empty list or map is written as `null`, which
//!   is what Go writes for the nil slice/map protobuf decoding leaves behind.
//! - `nullable`: a pointer without `omitempty` (TokenRequestSpec.boundObjectRef): `null` when
//!   unset.
//! - `inline`: an embedded struct tagged `json:",inline"` (Volume's VolumeSource, Probe's
//!   ProbeHandler): its fields are merged into the parent object.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::DecodeError;

/// A decoded protobuf value that has a Kubernetes JSON form.
pub(crate) trait ToJson {
    fn to_json(&self) -> Result<Value, DecodeError>;

    /// Whether Go's `omitempty` would drop this value (only meaningful for scalars).
    fn is_zero(&self) -> bool {
        false
    }
}

impl ToJson for String {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(self.clone()))
    }
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::Bool(*self))
    }
    fn is_zero(&self) -> bool {
        !*self
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::from(*self))
    }
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::from(*self))
    }
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl ToJson for f64 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        serde_json::Number::from_f64(*self)
            .map(Value::Number)
            .ok_or(DecodeError::NotFinite { value: *self })
    }
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

/// `bytes` fields (Secret data, CSR request): JSON carries them as standard base64.
impl ToJson for Vec<u8> {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(self),
        ))
    }
    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<T: ToJson> ToJson for Box<T> {
    fn to_json(&self) -> Result<Value, DecodeError> {
        (**self).to_json()
    }
    fn is_zero(&self) -> bool {
        (**self).is_zero()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Opt,
    OmitZero,
    Req,
    Nullable,
}

/// The shapes a prost field comes in: `Option<T>`, `Vec<T>` (repeated), `BTreeMap<String, T>`.
pub(crate) trait Field {
    /// The JSON to write for this field, or `None` to leave it out.
    fn emit(&self, mode: Mode) -> Result<Option<Value>, DecodeError>;
}

impl<T: ToJson> Field for Option<T> {
    fn emit(&self, mode: Mode) -> Result<Option<Value>, DecodeError> {
        match self {
            None => Ok((mode == Mode::Nullable).then_some(Value::Null)),
            Some(value) if mode == Mode::OmitZero && value.is_zero() => Ok(None),
            Some(value) => value.to_json().map(Some),
        }
    }
}

impl<T: ToJson> Field for Vec<T> {
    fn emit(&self, mode: Mode) -> Result<Option<Value>, DecodeError> {
        if self.is_empty() {
            return Ok((mode == Mode::Req).then_some(Value::Null));
        }
        let items = self.iter().map(ToJson::to_json).collect::<Result<_, _>>()?;
        Ok(Some(Value::Array(items)))
    }
}

impl<T: ToJson> Field for BTreeMap<String, T> {
    fn emit(&self, mode: Mode) -> Result<Option<Value>, DecodeError> {
        if self.is_empty() {
            return Ok((mode == Mode::Req).then_some(Value::Null));
        }
        let mut object = Map::new();
        for (key, value) in self {
            object.insert(key.clone(), value.to_json()?);
        }
        Ok(Some(Value::Object(object)))
    }
}

fn put(
    object: &mut Map<String, Value>,
    name: &str,
    value: &impl Field,
    mode: Mode,
) -> Result<(), DecodeError> {
    if let Some(json) = value.emit(mode)? {
        object.insert(name.to_owned(), json);
    }
    Ok(())
}

pub(crate) fn opt(
    object: &mut Map<String, Value>,
    name: &str,
    value: &impl Field,
) -> Result<(), DecodeError> {
    put(object, name, value, Mode::Opt)
}

pub(crate) fn omitzero(
    object: &mut Map<String, Value>,
    name: &str,
    value: &impl Field,
) -> Result<(), DecodeError> {
    put(object, name, value, Mode::OmitZero)
}

pub(crate) fn req(
    object: &mut Map<String, Value>,
    name: &str,
    value: &impl Field,
) -> Result<(), DecodeError> {
    put(object, name, value, Mode::Req)
}

pub(crate) fn nullable(
    object: &mut Map<String, Value>,
    name: &str,
    value: &impl Field,
) -> Result<(), DecodeError> {
    put(object, name, value, Mode::Nullable)
}

pub(crate) fn inline<T: ToJson>(
    object: &mut Map<String, Value>,
    _name: &str,
    value: &Option<T>,
) -> Result<(), DecodeError> {
    if let Some(Value::Object(fields)) = value.as_ref().map(ToJson::to_json).transpose()? {
        object.extend(fields);
    }
    Ok(())
}

/// `message!(path::To::Message { rust_field: "jsonName" mode, ... });` implements [`ToJson`]
/// for a k8s-pb message as a JSON object with those fields, in that order.
macro_rules! message {
    ($($segment:ident)::+ { $($field:ident : $json:literal $mode:ident,)* }) => {
        impl $crate::fields::ToJson for k8s_pb::$($segment)::+ {
            #[allow(unused_mut)]
            fn to_json(&self) -> Result<serde_json::Value, $crate::DecodeError> {
                let mut object = serde_json::Map::new();
                $( $crate::fields::$mode(&mut object, $json, &self.$field)?; )*
                Ok(serde_json::Value::Object(object))
            }
        }
    };
}

/// `list_wrapper!(path::To::ExtraValue);` for a Go `type X []string` that protobuf wraps as
/// `message X { repeated string items = 1; }`: its JSON is the bare list.
macro_rules! list_wrapper {
    ($($segment:ident)::+) => {
        impl $crate::fields::ToJson for k8s_pb::$($segment)::+ {
            fn to_json(&self) -> Result<serde_json::Value, $crate::DecodeError> {
                Ok(serde_json::Value::from(self.items.clone()))
            }
        }
    };
}

pub(crate) use {list_wrapper, message};
