//! Messages whose JSON form is not "an object of its fields": the apimachinery value types with
//! custom Go JSON marshalling (Time, MicroTime, Duration, IntOrString, Quantity, RawExtension,
//! FieldsV1).

use k8s_pb::apimachinery::pkg::{api::resource, apis::meta::v1 as meta, runtime, util::intstr};
use serde_json::Value;

use crate::fields::{list_wrapper, ToJson};
use crate::DecodeError;

list_wrapper!(apimachinery::pkg::apis::meta::v1::Verbs);

/// `metav1.Time`: RFC 3339 in UTC, whole seconds; the zero time (an empty message, which is
/// what Go writes for it) is `null`, as in Go's JSON.
impl ToJson for meta::Time {
    fn to_json(&self) -> Result<Value, DecodeError> {
        timestamp(self.seconds, self.nanos, false)
    }
}

/// `metav1.MicroTime`: RFC 3339 in UTC with exactly six fractional digits.
impl ToJson for meta::MicroTime {
    fn to_json(&self) -> Result<Value, DecodeError> {
        timestamp(self.seconds, self.nanos, true)
    }
}

fn timestamp(seconds: Option<i64>, nanos: Option<i32>, micros: bool) -> Result<Value, DecodeError> {
    if seconds.is_none() && nanos.is_none() {
        return Ok(Value::Null);
    }
    let (seconds, nanos) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    let out_of_range = || DecodeError::Time { seconds, nanos };
    let time = jiff::Timestamp::new(seconds, nanos).map_err(|_| out_of_range())?;
    // Go refuses to marshal years outside 0..=9999; RFC 3339 has four-digit years.
    let year = time.to_zoned(jiff::tz::TimeZone::UTC).year();
    if !(0..=9999).contains(&year) {
        return Err(out_of_range());
    }
    let whole = time.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(Value::String(if micros {
        format!("{whole}.{:06}Z", time.subsec_nanosecond() / 1000)
    } else {
        format!("{whole}Z")
    }))
}

/// `metav1.Duration`: Go's `time.Duration.String()` ("1h0m0s", "1.5s", "300ms").
impl ToJson for meta::Duration {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(go_duration(self.duration.unwrap_or(0))))
    }
}

/// Formats nanoseconds the way Go's `time.Duration.String` does.
pub(crate) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n == 0 {
        return "0s".to_owned();
    }
    if n < 1_000_000_000 {
        let (digits, unit) = match n {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        return format!("{sign}{}{unit}", with_fraction(n, digits));
    }
    let seconds = n / 1_000_000_000;
    let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
    let mut out = sign.to_owned();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    let rest = seconds % 60 * 1_000_000_000 + n % 1_000_000_000;
    out.push_str(&format!("{}s", with_fraction(rest, 9)));
    out
}

/// `value / 10^digits` with its fraction, trailing zeros (and a bare dot) removed.
fn with_fraction(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `intstr.IntOrString`: type 1 is a string, anything else an int.
impl ToJson for intstr::IntOrString {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(match self.r#type {
            Some(1) => Value::String(self.str_val.clone().unwrap_or_default()),
            _ => Value::from(self.int_val.unwrap_or(0)),
        })
    }
}

/// `resource.Quantity`: its canonical string; Go writes the zero Quantity as "0".
impl ToJson for resource::Quantity {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(
            self.string.clone().unwrap_or_else(|| "0".to_owned()),
        ))
    }
}

impl ToJson for resource::QuantityValue {
    fn to_json(&self) -> Result<Value, DecodeError> {
        Ok(Value::String(
            self.string.clone().unwrap_or_else(|| "0".to_owned()),
        ))
    }
}

/// `runtime.RawExtension`: the embedded object. Its bytes are JSON, or a nested protobuf
/// envelope, which is decoded the same way as a request body.
impl ToJson for runtime::RawExtension {
    fn to_json(&self) -> Result<Value, DecodeError> {
        embedded(self.raw.as_deref(), "runtime.RawExtension")
    }
}

/// `metav1.FieldsV1` (managedFields[].fieldsV1): raw JSON.
impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Result<Value, DecodeError> {
        embedded(self.raw.as_deref(), "metav1.FieldsV1")
    }
}

/// How many envelopes may nest inside each other through RawExtension; each level is a
/// recursive [`crate::decode`], so without a bound a crafted body could exhaust the stack.
const MAX_NESTING: u32 = 8;

thread_local! {
    static NESTING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn embedded(raw: Option<&[u8]>, message: &'static str) -> Result<Value, DecodeError> {
    match raw {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) if bytes.starts_with(crate::MAGIC) => {
            let depth = NESTING.get();
            if depth >= MAX_NESTING {
                return Err(DecodeError::TooDeep { limit: MAX_NESTING });
            }
            NESTING.set(depth + 1);
            let decoded = crate::decode(bytes);
            NESTING.set(depth);
            decoded
        }
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|source| DecodeError::EmbeddedJson { message, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-2_000_000_000, "-2s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, expected) in cases {
            assert_eq!(go_duration(nanos), expected, "{nanos}ns");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(
            timestamp(Some(1_704_067_200), None, false).unwrap(),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(
            timestamp(Some(1_704_067_200), Some(123_456_789), true).unwrap(),
            "2024-01-01T00:00:00.123456Z"
        );
        assert_eq!(timestamp(None, None, false).unwrap(), Value::Null);
        assert!(timestamp(Some(i64::MAX), None, false).is_err());
        // Go's time.Unix normalises a negative nanosecond part the same way.
        assert_eq!(
            timestamp(Some(0), Some(-5), false).unwrap(),
            "1969-12-31T23:59:59Z"
        );
        // Year -1: Go refuses to write it.
        assert!(timestamp(Some(-62_135_596_801 - 366 * 86_400), None, false).is_err());
    }
}
