//! Watch: a chunked stream of newline-delimited `{"type","object"}` events.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use kubelab_resources::catalog::ResourceType;
use kubelab_store::{Event, EventType, Revision};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::{ListOptions, Registry};
use crate::request::{Output, Query};
use crate::table::{self, Include, TableOptions};

/// Buffered encoded events between the watch task and the HTTP body.
const BODY_BUFFER: usize = 64;
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// How events are rendered for this watcher.
struct Encoder {
    rt: &'static ResourceType,
    custom: Option<std::sync::Arc<crate::custom::CustomVersion>>,
    output: Output,
    include: Include,
    sent_headers: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = match self.output {
            Output::Object => obj.clone(),
            Output::Metadata => table::partial_metadata(obj),
            Output::Table { v1beta1 } => {
                let t = table::table(
                    self.rt,
                    self.custom.as_deref(),
                    std::slice::from_ref(obj),
                    json!({"resourceVersion": object::meta_str(obj, "resourceVersion").unwrap_or("")}),
                    &TableOptions {
                        include: self.include,
                        v1beta1,
                        headers: !self.sent_headers,
                    },
                );
                self.sent_headers = true;
                t
            }
        };
        line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, revision: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta},
        }))
    }
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn error_event(err: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": err.status_body()}))
}

/// Start a watch. Errors found before streaming (bad parameters) are returned as a response
/// status; errors after (expired revision, slow watcher) arrive as an ERROR event.
pub async fn serve(
    reg: &Registry,
    rt: &'static ResourceType,
    ns: Option<&str>,
    opts: ListOptions,
    query: &Query,
    output: Output,
) -> ApiResult<Response> {
    let rv = query.non_empty("resourceVersion");
    let send_initial = match query.get("sendInitialEvents") {
        Some("true") => true,
        None | Some("false") | Some("") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sendInitialEvents: invalid value {other:?}"
            )))
        }
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = match query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => {
            use rand::Rng;
            Duration::from_secs(rand::rng().random_range(1800..3600))
        }
    };
    let mut encoder = Encoder {
        rt,
        custom: reg.custom().of(rt),
        output,
        include: Include::parse(query.get("includeObject"))?,
        sent_headers: false,
    };
    let start: Option<Revision> = match rv {
        None | Some("0") => None,
        Some(v) => Some(
            v.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v:?}")))?,
        ),
    };
    // Initial state: synthetic ADDED events when no revision is given (or when asked).
    let mut initial = Vec::new();
    let mut after = start.unwrap_or(0);
    if start.is_none() || send_initial {
        let list_opts = ListOptions {
            labels: opts.labels.clone(),
            fields: opts.fields.clone(),
            ..ListOptions::default()
        };
        let page = reg.list(rt, ns, &list_opts).await?;
        for obj in &page.items {
            initial.push(encoder.event("ADDED", obj));
        }
        after = page.revision;
        if send_initial {
            initial.push(encoder.bookmark(after, true));
        }
    }
    let prefix = object::collection_prefix(rt, ns);
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BODY_BUFFER);
    match reg.store().watch(&prefix, after).await {
        Ok(events) => {
            tokio::spawn(run(
                events, initial, encoder, opts, tx, after, timeout, bookmarks,
            ));
        }
        Err(e) => {
            let _ = tx.send(Ok(error_event(&ApiError::from(e)))).await;
        }
    }
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(ApiError::internal)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut events: kubelab_store::WatchStream,
    initial: Vec<Bytes>,
    mut encoder: Encoder,
    opts: ListOptions,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    mut last_revision: Revision,
    timeout: Duration,
    bookmarks: bool,
) {
    for chunk in initial {
        if tx.send(Ok(chunk)).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut bookmark_timer = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmark_timer.tick().await;
    loop {
        let chunk = tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = bookmark_timer.tick(), if bookmarks => Some(encoder.bookmark(last_revision, false)),
            next = events.next() => match next {
                None => return,
                Some(Err(e)) => {
                    let err = match e {
                        kubelab_store::Error::WatcherTooSlow { .. } => ApiError::Gone {
                            message: format!("watch fell behind and was closed: {e}; re-list and watch again"),
                        },
                        other => ApiError::from(other),
                    };
                    let _ = tx.send(Ok(error_event(&err))).await;
                    return;
                }
                Some(Ok(event)) => {
                    last_revision = event.revision();
                    match render(&mut encoder, &opts, &event) {
                        Ok(chunk) => chunk,
                        Err(err) => {
                            let _ = tx.send(Ok(error_event(&err))).await;
                            return;
                        }
                    }
                }
            }
        };
        if let Some(chunk) = chunk {
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    }
}

/// One store event as seen through this watcher's selectors: an object entering the selection
/// is ADDED, one leaving it is DELETED.
fn render(encoder: &mut Encoder, opts: &ListOptions, event: &Event) -> ApiResult<Option<Bytes>> {
    let rt = encoder.rt;
    let obj = object::from_kv_as(rt, &event.kv)?;
    let now_matches = opts.matches(rt, &obj);
    let kind = match event.event_type {
        EventType::Created => now_matches.then_some("ADDED"),
        EventType::Deleted => now_matches.then_some("DELETED"),
        EventType::Updated => {
            let before = match &event.prev {
                Some(prev) => opts.matches(rt, &object::from_kv_as(rt, prev)?),
                None => false,
            };
            match (before, now_matches) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    };
    Ok(kind.map(|k| encoder.event(k, &obj)))
}
