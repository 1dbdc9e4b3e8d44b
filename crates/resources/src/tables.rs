//! Server-side Table columns and cells (in progress).

use serde_json::{json, Value};

use crate::catalog::ResourceType;
use crate::json as j;

/// One `columnDefinitions` entry of a `meta.k8s.io/v1` Table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnDefinition {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

/// The columns of `rt`'s Table.
pub fn columns(_rt: &ResourceType) -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition {
            name: "Name",
            type_: "string",
            format: "name",
            description: "",
            priority: 0,
        },
        ColumnDefinition {
            name: "Age",
            type_: "string",
            format: "",
            description: "",
            priority: 0,
        },
    ]
}

/// The cells of one row.
pub fn cells(_rt: &ResourceType, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let age = match j::timestamp_at(obj, &["metadata", "creationTimestamp"]) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    };
    vec![json!(j::string(obj, &["metadata", "name"])), json!(age)]
}

/// Upstream `duration.HumanDuration`.
pub fn human_duration(d: jiff::SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}
