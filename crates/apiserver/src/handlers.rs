//! HTTP verbs to registry operations: one generic handler per verb for every resource.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use kubelab_resources::catalog::ResourceType;
use kubelab_resources::{fields, labels};
use serde_json::{json, Value};

use crate::custom::ScalePaths;
use crate::error::{ApiError, ApiResult};
use crate::registry::{DeleteOptions, ListOptions, Registry};
use crate::request::{self, negotiate, Output, Query};
use crate::route::{self, ResourcePath, Route};
use crate::table::{self, Include, TableOptions};
use crate::{discovery, watch, Authenticated};

/// Largest request body accepted (upstream's limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Shared state of the HTTP front.
pub struct ApiState {
    pub registry: Arc<Registry>,
    /// Service-account token signer and verifier.
    pub tokens: crate::authn::TokenAuthority,
    /// Decides what each authenticated user may do.
    pub authorizer: Arc<crate::authz::Authorizer>,
    pub openapi: kubelab_openapi::OpenApi,
    /// host:port clients reach this server at (legacy discovery's serverAddressByClientCIDRs).
    pub server_address: String,
    /// Reaches kubelets for the pods' log, exec, attach and portforward subresources.
    pub(crate) kubelet: crate::streaming::kubelet::KubeletClient,
}

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0+kubelab",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", other => other }),
    })
}

/// Entry point of every request.
pub async fn dispatch(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    req: axum::extract::Request,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => {
            return (
                StatusCode::OK,
                [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "ok",
            )
                .into_response()
        }
        "/version" | "/version/" => return json_response(StatusCode::OK, &version_info()),
        _ => {}
    }
    let Some(identity) = authenticate(&state, &parts).await else {
        return ApiError::Unauthorized.into_response();
    };
    let identity = match authorize(&state, identity, &parts).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    // Connect subresources (pods/log, exec, attach, portforward) stream: no body to read.
    if let Some(response) = crate::streaming::intercept(&state, &path, &mut parts).await {
        return response;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::TooLarge {
                limit: MAX_BODY_BYTES,
            }
            .into_response()
        }
    };
    let result = async {
        let query = Query::parse(parts.uri.query())?;
        route_request(
            &state,
            &identity,
            &parts.method,
            &path,
            &parts.headers,
            &query,
            &body,
        )
        .await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The request's user: its client certificate's, else its bearer token's. A request that
/// presents a bearer token that does not verify is unauthenticated (401), as upstream.
async fn authenticate(
    state: &ApiState,
    parts: &http::request::Parts,
) -> Option<kubelab_pki::Identity> {
    if let Some(id) = parts
        .extensions
        .get::<Authenticated>()
        .and_then(|a| a.0.clone())
    {
        return Some(id);
    }
    let token = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    crate::authn::authenticate_bearer(&state.registry, &state.tokens, token).await
}

/// Resolve impersonation, then let the request through only if its user may make it. Returns
/// the user the request runs as.
async fn authorize(
    state: &ApiState,
    caller: kubelab_pki::Identity,
    parts: &http::request::Parts,
) -> ApiResult<kubelab_pki::Identity> {
    let identity = crate::authz::impersonate(&state.authorizer, caller, &parts.headers).await?;
    let query = Query::parse(parts.uri.query())?;
    let attributes = crate::authz::Attributes::of_request(&parts.method, parts.uri.path(), &query);
    match state.authorizer.authorize(&identity, &attributes).await {
        Ok(()) => Ok(identity),
        Err(reason) => Err(crate::authz::forbidden(
            &identity.user,
            &attributes,
            &reason,
        )),
    }
}

async fn route_request(
    state: &Arc<ApiState>,
    identity: &kubelab_pki::Identity,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &Query,
    body: &[u8],
) -> ApiResult<Response> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        return openapi(state, rest.trim_start_matches('/'));
    }
    let route = route::parse(path).ok_or(ApiError::NoRoute)?;
    let types = state.registry.all_types();
    let get_only = |v: Option<Value>| -> ApiResult<Response> {
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        v.map(|v| json_response(StatusCode::OK, &v))
            .ok_or(ApiError::NoRoute)
    };
    match route {
        Route::CoreGroup => {
            if method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            if discovery::wants_aggregated(accept) {
                return Ok(aggregated_response(&discovery::aggregated_core(&types)));
            }
            get_only(Some(discovery::api_versions(&state.server_address)))
        }
        Route::Groups => {
            if method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            if discovery::wants_aggregated(accept) {
                return Ok(aggregated_response(&discovery::aggregated_groups(&types)));
            }
            get_only(Some(discovery::api_group_list(&types)))
        }
        Route::Group { group } => get_only(discovery::group(&types, &group)),
        Route::GroupVersion { group, version } => {
            get_only(discovery::resource_list(&types, &group, &version))
        }
        Route::Resource(p) => {
            resource_request(state, identity, method, &p, headers, query, body).await
        }
    }
}

fn aggregated_response(doc: &Value) -> Response {
    let mut resp = json_response(StatusCode::OK, doc);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    resp.headers_mut()
        .insert(http::header::VARY, http::HeaderValue::from_static("Accept"));
    resp
}

fn list_options(rt: &ResourceType, query: &Query) -> ApiResult<ListOptions> {
    let mut opts = ListOptions::default();
    if let Some(s) = query.non_empty("labelSelector") {
        opts.labels = Some(labels::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    if let Some(s) = query.non_empty("fieldSelector") {
        let sel = fields::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
        sel.check_supported(rt)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        opts.fields = Some(sel);
    }
    if let Some(limit) = query.int("limit")? {
        opts.limit = limit.max(0) as usize;
    }
    if let Some(token) = query.non_empty("continue") {
        opts.set_continue(token)?;
    }
    Ok(opts)
}

async fn resource_request(
    state: &Arc<ApiState>,
    identity: &kubelab_pki::Identity,
    method: &Method,
    p: &ResourcePath,
    headers: &HeaderMap,
    query: &Query,
    body: &[u8],
) -> ApiResult<Response> {
    let rt = state
        .registry
        .find_type(&p.group, &p.version, &p.resource)
        .ok_or(ApiError::NoRoute)?;
    if p.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::NoRoute);
    }
    if rt.namespaced && p.namespace.is_none() && p.name.is_some() {
        return Err(ApiError::NoRoute);
    }
    if rt.is_review() && (method != Method::POST || p.name.is_some()) {
        return Err(ApiError::MethodNotAllowed);
    }
    let ns = p.namespace.as_deref();
    let output = negotiate(headers);
    let reg = &state.registry;
    let admission = crate::authz::Admission::new(&state.authorizer, identity);
    match (method.clone(), p.name.as_deref()) {
        (Method::GET, None) => {
            let opts = list_options(rt, query)?;
            if query.flag("watch") {
                return watch::serve(reg, rt, ns, opts, query, output).await;
            }
            list(reg, rt, ns, &opts, output, query).await
        }
        (Method::GET, Some(name)) => match p.subresource.as_deref() {
            None | Some("status") => {
                let obj = reg.get(rt, ns, name).await?;
                respond_object(reg, rt, StatusCode::OK, &obj, output, query)
            }
            Some("scale") if has_sub(rt, "scale") => {
                let obj = reg.get(rt, ns, name).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &to_scale(&obj, &scale_paths(reg, rt)),
                ))
            }
            Some(_) => Err(ApiError::NoRoute),
        },
        (Method::POST, None) if rt.is_review() => {
            let obj = request::decode_object(body, &request::content_type(headers))?;
            let answered = crate::authz::answer_review(
                &state.authorizer,
                &state.tokens,
                rt,
                ns,
                obj,
                identity,
            )
            .await?;
            Ok(json_response(StatusCode::CREATED, &answered))
        }
        (Method::POST, Some(name))
            if rt.group.is_empty()
                && rt.plural == "serviceaccounts"
                && p.subresource.as_deref() == Some("token") =>
        {
            let obj = request::decode_object(body, &request::content_type(headers))?;
            let ns = ns.ok_or(ApiError::NoRoute)?;
            crate::authz::admit_token_request(reg, identity, ns, name, &obj).await?;
            let issued = crate::authn::token_request(reg, &state.tokens, ns, name, &obj).await?;
            Ok(json_response(StatusCode::CREATED, &issued))
        }
        (Method::POST, Some(name))
            if rt.group.is_empty()
                && rt.plural == "pods"
                && matches!(p.subresource.as_deref(), Some("binding" | "eviction")) =>
        {
            let obj = request::decode_object(body, &request::content_type(headers))?;
            let ns = ns.ok_or(ApiError::NoRoute)?;
            if p.subresource.as_deref() == Some("binding") {
                bind_pod(reg, rt, ns, name, &obj, query.dry_run()?).await
            } else {
                let code = crate::eviction::evict(reg, rt, ns, name, &obj).await?;
                Ok(success_status(code))
            }
        }
        (Method::POST, None) => {
            let content_type = request::content_type(headers);
            let mut obj = request::decode_object(body, &content_type)?;
            let warnings = check_fields(state, rt, &obj, json_body(body, &content_type), query)?;
            FieldManager::new(query, headers, false)?.track(None, &mut obj);
            admission.admit(rt, ns, None, &obj)?;
            let created = reg.create(rt, ns, obj, query.dry_run()?).await?;
            with_warnings(
                respond_object(reg, rt, StatusCode::CREATED, &created, output, query),
                &warnings,
            )
        }
        (Method::PUT, Some(name)) => {
            let sub = p.subresource.as_deref();
            let content_type = request::content_type(headers);
            let desired = request::decode_object(body, &content_type)?;
            let warnings = if sub.is_none() {
                check_fields(state, rt, &desired, json_body(body, &content_type), query)?
            } else {
                Vec::new()
            };
            if sub == Some("scale") && has_sub(rt, "scale") {
                return update_scale(reg, rt, ns, name, query, |_| Ok(desired.clone())).await;
            }
            check_writable_sub(rt, sub)?;
            let fields = FieldManager::new(query, headers, false)?;
            let updated = reg
                .update(rt, ns, name, sub, query.dry_run()?, |current| {
                    let mut next = desired.clone();
                    if sub.is_none() {
                        fields.track(Some(current), &mut next);
                    }
                    admission.admit(rt, ns, Some(current), &next)?;
                    Ok(next)
                })
                .await?;
            with_warnings(
                respond_object(reg, rt, StatusCode::OK, &updated, output, query),
                &warnings,
            )
        }
        (Method::PATCH, Some(name)) => {
            let sub = p.subresource.as_deref();
            let patch = Patch::decode(&request::content_type(headers), body)?;
            let fields = FieldManager::new(query, headers, patch.is_apply())?;
            if sub == Some("scale") && has_sub(rt, "scale") {
                let scale_fields = FieldManager {
                    track: false,
                    ..fields.clone()
                };
                return update_scale(reg, rt, ns, name, query, |scale| {
                    patch.apply(Some(&without_resource_version(scale)), &scale_fields)
                })
                .await;
            }
            check_writable_sub(rt, sub)?;
            let dry_run = query.dry_run()?;
            let mut warnings = Vec::new();
            // An apply that creates, racing another create of the same name, is retried as an
            // update (upstream's create-on-update is atomic: it never answers AlreadyExists).
            let mut attempts = 0;
            let response = loop {
                attempts += 1;
                let result = reg
                    .update(rt, ns, name, sub, dry_run, |current| {
                        let patched =
                            patch.apply(Some(&without_resource_version(current)), &fields)?;
                        if sub.is_none() {
                            warnings = check_fields(state, rt, &patched, None, query)?;
                        }
                        admission.admit(rt, ns, Some(current), &patched)?;
                        Ok(patched)
                    })
                    .await;
                match result {
                    Err(ApiError::NotFound { .. }) if patch.is_apply() && sub.is_none() => {
                        let obj = patch.apply(None, &fields)?;
                        warnings = check_fields(state, rt, &obj, None, query)?;
                        admission.admit(rt, ns, None, &obj)?;
                        match reg.create(rt, ns, obj, dry_run).await {
                            Ok(created) => {
                                break respond_object(
                                    reg,
                                    rt,
                                    StatusCode::CREATED,
                                    &created,
                                    output,
                                    query,
                                )
                            }
                            Err(ApiError::AlreadyExists { .. }) if attempts < 3 => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    other => break respond_object(reg, rt, StatusCode::OK, &other?, output, query),
                }
            };
            with_warnings(response, &warnings)
        }
        (Method::DELETE, Some(name)) if p.subresource.is_none() => {
            let opts = delete_options(body, &request::content_type(headers), query)?;
            let (obj, _deleted) = reg.delete(rt, ns, name, &opts).await?;
            respond_object(reg, rt, StatusCode::OK, &obj, output, query)
        }
        (Method::DELETE, None) => {
            let opts = delete_options(body, &request::content_type(headers), query)?;
            let list_opts = list_options(rt, query)?;
            let page = reg.list(rt, ns, &list_opts).await?;
            let mut deleted = Vec::new();
            for item in page.items {
                let item_ns = crate::object::meta_str(&item, "namespace").map(String::from);
                let name = crate::object::name(&item).to_string();
                match reg.delete(rt, item_ns.as_deref(), &name, &opts).await {
                    Ok((obj, _)) => deleted.push(obj),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({
                "kind": rt.list_kind(),
                "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": page.revision.to_string()},
                "items": deleted,
            });
            Ok(json_response(StatusCode::OK, &list))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn has_sub(rt: &ResourceType, name: &str) -> bool {
    rt.subresources.iter().any(|s| s.name == name)
}

fn check_writable_sub(rt: &ResourceType, sub: Option<&str>) -> ApiResult<()> {
    match sub {
        None => Ok(()),
        Some(s @ ("status" | "finalize")) if has_sub(rt, s) => Ok(()),
        Some(_) => Err(ApiError::MethodNotAllowed),
    }
}

async fn list(
    reg: &Registry,
    rt: &ResourceType,
    ns: Option<&str>,
    opts: &ListOptions,
    output: Output,
    query: &Query,
) -> ApiResult<Response> {
    let fast = output == Output::Object && reg.custom().of(rt).is_none();
    if fast {
        if let Some(resp) = list_fast(reg, rt, ns, opts).await? {
            return Ok(resp);
        }
    }
    let page = reg.list(rt, ns, opts).await?;
    let mut list_meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        list_meta["continue"] = json!(token);
    }
    let body = match output {
        Output::Table { v1beta1 } => table::table(
            rt,
            reg.custom().of(rt).as_deref(),
            &page.items,
            list_meta,
            &TableOptions {
                include: Include::parse(query.get("includeObject"))?,
                v1beta1,
                headers: true,
            },
        ),
        Output::Metadata => table::partial_metadata_list(&page.items, list_meta),
        Output::Object => json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": list_meta,
            "items": page.items,
        }),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// A plain list written straight from the stored bytes (objects are decoded only to match
/// selectors). None when some object is not in stored form (then the decoding path answers).
async fn list_fast(
    reg: &Registry,
    rt: &ResourceType,
    ns: Option<&str>,
    opts: &ListOptions,
) -> ApiResult<Option<Response>> {
    let (items, revision, token) = if opts.labels.is_none() && opts.fields.is_none() {
        reg.list_raw(rt, ns, opts).await?
    } else {
        reg.list_selected_raw(rt, ns, opts).await?
    };
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(t) = token {
        meta["continue"] = json!(t);
    }
    let head = json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": meta});
    let mut body = serde_json::to_vec(&head).map_err(ApiError::internal)?;
    body.pop(); // the closing brace: items follow
    body.extend_from_slice(b",\"items\":[");
    body.reserve(items.iter().map(|kv| kv.value.len() + 32).sum());
    for (i, kv) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        if !crate::object::write_with_resource_version(kv, &mut body) {
            return Ok(None);
        }
    }
    body.extend_from_slice(b"]}");
    Ok(Some(
        (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    ))
}

fn respond_object(
    reg: &Registry,
    rt: &ResourceType,
    code: StatusCode,
    obj: &Value,
    output: Output,
    query: &Query,
) -> ApiResult<Response> {
    let body = match output {
        Output::Table { v1beta1 } => table::table(
            rt,
            reg.custom().of(rt).as_deref(),
            std::slice::from_ref(obj),
            json!({"resourceVersion": crate::object::meta_str(obj, "resourceVersion").unwrap_or("")}),
            &TableOptions {
                include: Include::parse(query.get("includeObject"))?,
                v1beta1,
                headers: true,
            },
        ),
        Output::Metadata => table::partial_metadata(obj),
        Output::Object => obj.clone(),
    };
    Ok(json_response(code, &body))
}

fn delete_options(body: &[u8], content_type: &str, query: &Query) -> ApiResult<DeleteOptions> {
    let mut opts = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = request::decode_object(body, content_type)?;
        opts.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.precondition_resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(dry) = v.get("dryRun").and_then(Value::as_array) {
            for d in dry {
                match d.as_str() {
                    Some("All") => opts.dry_run = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "invalid dry run value: {other:?}, supported values: All"
                        )))
                    }
                }
            }
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            check_propagation(p)?;
            opts.propagation = Some(p.to_string());
        }
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation.get_or_insert_with(|| "Orphan".into());
        }
    }
    if let Some(g) = query.int("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(g);
    }
    if let Some(p) = query.non_empty("propagationPolicy") {
        check_propagation(p)?;
        opts.propagation = Some(p.to_string());
    }
    opts.dry_run |= query.dry_run()?;
    Ok(opts)
}

fn check_propagation(p: &str) -> ApiResult<()> {
    match p {
        "Background" | "Foreground" | "Orphan" => Ok(()),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// A decoded PATCH body.
enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
    /// Server-side apply: until field management lands, applied as a merge of the
    /// configuration into the live object.
    Apply(Value),
}

impl Patch {
    fn decode(content_type: &str, body: &[u8]) -> ApiResult<Patch> {
        let parse_json = || -> ApiResult<Value> {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
        };
        match content_type {
            "application/json-patch+json" => {
                let patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                Ok(Patch::Json(patch))
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let v = parse_json()?;
                if !v.is_object() {
                    return Err(ApiError::bad_request(
                        "error decoding patch: the patch must be a JSON object",
                    ));
                }
                if content_type == "application/merge-patch+json" {
                    Ok(Patch::Merge(v))
                } else {
                    Ok(Patch::Strategic(v))
                }
            }
            "application/apply-patch+yaml" => {
                let v: Value = serde_yaml::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                if !v.is_object() {
                    return Err(ApiError::bad_request(
                        "error decoding YAML: the configuration must be an object",
                    ));
                }
                Ok(Patch::Apply(v))
            }
            other => Err(ApiError::UnsupportedMediaType {
                content_type: other.to_string(),
            }),
        }
    }

    fn is_apply(&self) -> bool {
        matches!(self, Patch::Apply(_))
    }

    /// Apply to `current` (None: the object doesn't exist; only server-side apply creates).
    fn apply(&self, current: Option<&Value>, fields: &FieldManager) -> ApiResult<Value> {
        if let Patch::Apply(config) = self {
            let mut config = config.clone();
            if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            return fields.apply(current, &config);
        }
        let empty = json!({});
        let current = current.unwrap_or(&empty);
        let mut doc = current.clone();
        match self {
            Patch::Json(p) => json_patch::patch(&mut doc, p).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?,
            Patch::Merge(p) => json_patch::merge(&mut doc, p),
            Patch::Strategic(p) => {
                let api_version = current
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let kind = current.get("kind").and_then(Value::as_str).unwrap_or("");
                let meta = kubelab_patch::builtin_meta(api_version, kind);
                if !meta.is_builtin() {
                    return Err(ApiError::UnsupportedMediaType {
                        content_type: "application/strategic-merge-patch+json".into(),
                    });
                }
                doc = kubelab_patch::strategic_merge(current, p, &meta).map_err(|e| {
                    ApiError::bad_request(format!("error applying strategic merge patch: {e}"))
                })?;
            }
            Patch::Apply(_) => {}
        }
        if !doc.is_object() {
            return Err(ApiError::bad_request(
                "the patch made the object not a JSON object",
            ));
        }
        fields.track(Some(current), &mut doc);
        Ok(doc)
    }
}

fn scale_paths(reg: &Registry, rt: &ResourceType) -> ScalePaths {
    reg.custom()
        .of(rt)
        .and_then(|cv| cv.scale.clone())
        .unwrap_or_else(ScalePaths::builtin)
}

/// The autoscaling/v1 Scale view of a scalable object.
fn to_scale(obj: &Value, paths: &ScalePaths) -> Value {
    let meta = crate::object::metadata(obj).cloned().unwrap_or_default();
    let selector = match &paths.label_selector {
        Some(p) => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        None => obj
            .pointer("/spec/selector")
            .map(selector_string)
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer(&paths.spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer(&paths.status_replicas).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

async fn update_scale<F>(
    reg: &Registry,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    query: &Query,
    mut desired_scale: F,
) -> ApiResult<Response>
where
    F: FnMut(&Value) -> ApiResult<Value> + Send,
{
    let paths = scale_paths(reg, rt);
    let updated = reg
        .update(rt, ns, name, None, query.dry_run()?, |current| {
            let scale = desired_scale(&to_scale(current, &paths))?;
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::bad_request("spec.replicas: Required value"))?;
            if replicas < 0 {
                return Err(crate::registry::invalid(
                    rt,
                    name,
                    vec![kubelab_resources::validation::FieldError {
                        reason: "FieldValueInvalid",
                        field: "spec.replicas".into(),
                        message: format!(
                            "Invalid value: {replicas}: must be greater than or equal to 0"
                        ),
                    }],
                ));
            }
            let mut obj = current.clone();
            set_pointer(&mut obj, &paths.spec_replicas, json!(replicas));
            let rv = scale
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(meta) = crate::object::metadata_mut(&mut obj) {
                if rv.as_str().is_some_and(|s| !s.is_empty()) {
                    meta.insert("resourceVersion".into(), rv);
                } else {
                    meta.remove("resourceVersion");
                }
            }
            Ok(obj)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &to_scale(&updated, &paths)))
}

/// A copy without `metadata.resourceVersion`: patches are conditional only when they set it.
fn without_resource_version(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    obj
}

/// `spec.selector` (a LabelSelector object) in the string form of Scale's `status.selector`.
fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
                Some("Exists") => parts.push(key.to_string()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// Set the value at a JSON pointer, creating intermediate objects.
fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = pointer.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("just made an object");
        if i + 1 == parts.len() {
            map.insert(part.to_string(), value);
            return;
        }
        cur = map.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

/// `/openapi/v3` and `/openapi/v3/<group-version path>`.
fn openapi(state: &ApiState, gv_path: &str) -> ApiResult<Response> {
    let custom = custom_documents(state);
    if gv_path.is_empty() {
        let mut index = state.openapi.index();
        for (path, (_, hash)) in &custom {
            index["paths"][path.as_str()] =
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")});
        }
        return Ok(json_response(StatusCode::OK, &index));
    }
    let gv_path = gv_path.trim_start_matches('/');
    let (bytes, hash) = match state.openapi.document(gv_path) {
        Some((bytes, hash)) => (bytes.to_vec(), hash.to_string()),
        None => custom.get(gv_path).cloned().ok_or(ApiError::NoRoute)?,
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ETAG, format!("\"{hash}\""))
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(axum::body::Body::from(bytes))
        .map_err(ApiError::internal)
}

/// The documents of custom group-versions, by index path (`apis/<group>/<version>`), with
/// their hashes. Built on demand: they change whenever a CRD does.
fn custom_documents(state: &ApiState) -> std::collections::BTreeMap<String, (Vec<u8>, String)> {
    use sha2::Digest;
    let mut by_gv: std::collections::BTreeMap<String, Vec<Arc<crate::custom::CustomVersion>>> =
        Default::default();
    for cv in state.registry.custom().all() {
        by_gv
            .entry(format!("apis/{}/{}", cv.rt.group, cv.rt.version))
            .or_default()
            .push(cv);
    }
    by_gv
        .into_iter()
        .map(|(path, types)| {
            let doc =
                crate::custom::openapi_document(types[0].rt.group, types[0].rt.version, &types);
            let bytes = serde_json::to_vec(&doc).unwrap_or_default();
            let hash = format!("{:X}", sha2::Sha512::digest(&bytes));
            (path, (bytes, hash))
        })
        .collect()
}

/// The raw body when it is JSON (duplicate-field detection needs the bytes).
fn json_body<'a>(body: &'a [u8], content_type: &str) -> Option<&'a [u8]> {
    matches!(content_type, "application/json" | "").then_some(body)
}

/// fieldValidation: unknown and duplicate fields are an error (Strict), warnings (Warn, the
/// default) or ignored.
fn check_fields(
    state: &ApiState,
    rt: &ResourceType,
    obj: &Value,
    raw_json: Option<&[u8]>,
    query: &Query,
) -> ApiResult<Vec<String>> {
    let mode = query.non_empty("fieldValidation").unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {mode:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        )));
    }
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    let mut problems = match state.registry.custom().of(rt) {
        Some(cv) => crate::custom::unknown_fields(&cv, obj),
        None => state
            .openapi
            .unknown_fields(&rt.api_version(), rt.kind, obj),
    };
    if let Some(raw) = raw_json {
        problems.extend(kubelab_openapi::duplicate_fields(raw));
    }
    if mode == "Strict" && !problems.is_empty() {
        return Err(ApiError::bad_request(
            kubelab_openapi::strict_decoding_error(&problems),
        ));
    }
    Ok(problems)
}

/// Add `Warning: 299 - "..."` headers, as kubectl prints them.
fn with_warnings(response: ApiResult<Response>, warnings: &[String]) -> ApiResult<Response> {
    let mut response = response?;
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
    Ok(response)
}

fn success_status(code: StatusCode) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}),
    )
}

/// `pods/binding`: assign a pod to a node, once.
async fn bind_pod(
    reg: &Registry,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    binding: &Value,
    dry_run: bool,
) -> ApiResult<Response> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            crate::registry::invalid(
                rt,
                name,
                vec![kubelab_resources::validation::FieldError {
                    reason: "FieldValueRequired",
                    field: "target.name".into(),
                    message: "Required value".into(),
                }],
            )
        })?
        .to_string();
    reg.update(rt, Some(ns), name, None, dry_run, |pod| {
        if crate::object::is_deleting(pod) {
            return Err(ApiError::Conflict {
                group: String::new(),
                kind: "pods".into(),
                name: name.into(),
                message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
            });
        }
        if let Some(current) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::Conflict {
                group: String::new(),
                kind: "pods".into(),
                name: name.into(),
                message: format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""),
            });
        }
        let mut next = without_resource_version(pod);
        next["spec"]["nodeName"] = json!(node);
        Ok(next)
    })
    .await?;
    // The scheduled condition is status, written separately like the upstream binding does.
    reg.update(rt, Some(ns), name, Some("status"), dry_run, |pod| {
        let mut next = without_resource_version(pod);
        let mut conditions: Vec<Value> = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        conditions.push(
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": crate::object::now_rfc3339()}),
        );
        next["status"]["conditions"] = json!(conditions);
        Ok(next)
    })
    .await?;
    Ok(success_status(StatusCode::CREATED))
}

/// Who writes (`fieldManager`, or the user agent's program name) and how: managed fields are
/// tracked for every write, and server-side apply merges by ownership.
#[derive(Clone)]
struct FieldManager {
    manager: String,
    force: bool,
    track: bool,
}

impl FieldManager {
    fn new(query: &Query, headers: &HeaderMap, apply: bool) -> ApiResult<Self> {
        let manager = match query.non_empty("fieldManager") {
            Some(m) => m.to_string(),
            None if apply => {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ))
            }
            None => headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        if manager.len() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: may not be more than 128 bytes",
            ));
        }
        let force = match query.get("force") {
            None | Some("" | "false") => false,
            Some("true") if apply => true,
            Some("true") => {
                return Err(ApiError::bad_request(
                    "force: Invalid value: true: may not be specified for non-apply patch",
                ))
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "force: Invalid value: {other:?}: must be true or false"
                )))
            }
        };
        Ok(FieldManager {
            manager,
            force,
            track: true,
        })
    }

    fn meta(obj: &Value) -> kubelab_patch::BuiltinMeta {
        kubelab_patch::builtin_meta(
            obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            obj.get("kind").and_then(Value::as_str).unwrap_or(""),
        )
    }

    fn track(&self, old: Option<&Value>, new: &mut Value) {
        if !self.track {
            return;
        }
        let meta = Self::meta(new);
        kubelab_patch::track_update(
            old,
            new,
            &meta,
            &self.manager,
            &crate::object::now_rfc3339(),
        );
    }

    fn apply(&self, live: Option<&Value>, config: &Value) -> ApiResult<Value> {
        let meta = Self::meta(config);
        let now = crate::object::now_rfc3339();
        let opts = kubelab_patch::ApplyOptions {
            manager: &self.manager,
            force: self.force,
            now: &now,
        };
        kubelab_patch::apply(live, config, &meta, &opts).map_err(|e| match e {
            kubelab_patch::ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
                message: kubelab_patch::ApplyError::Conflicts(conflicts.clone()).to_string(),
                causes: conflicts
                    .into_iter()
                    .map(|c| (c.field, c.message))
                    .collect(),
            },
            other => ApiError::bad_request(other.to_string()),
        })
    }
}
