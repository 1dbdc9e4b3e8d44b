//! The listeners and the request path: one routing decision per request against the current
//! table, then a redirect, a short 404/413/502/503 answer, or the request forwarded to a ready
//! endpoint of the backend (round robin; a refused connection moves to the next endpoint when
//! the request has no body). Bodies stream both ways; an `Upgrade` request (WebSocket) that the
//! backend answers 101 becomes a byte pipe between the two connections.
//!
//! Headers as ingress-nginx sets them by default: the client's `Host` kept, `X-Real-IP` and
//! `X-Forwarded-For` = the client's address (incoming forwarded headers are not trusted),
//! `X-Forwarded-Host`, `X-Forwarded-Port` (the port the request arrived on),
//! `X-Forwarded-Proto`/`X-Forwarded-Scheme`/`X-Scheme`; hop-by-hop headers are dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::annotations::BackendProtocol;
use crate::routes::{Backend, Decision};
use crate::watch::Shared;
use crate::Error;

type BodyError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;
type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Connection attempts per request without a body (one per endpoint, at most this many).
const ATTEMPTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to listen.
#[derive(Clone, Copy, Debug)]
pub struct Listeners {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
}

/// The clients to the backends, one per protocol, each with its connection pool.
struct Clients {
    http: Client<HttpConnector, ProxyBody>,
    https: Client<HttpsConnector, ProxyBody>,
    h2c: Client<HttpConnector, ProxyBody>,
    h2: Client<HttpsConnector, ProxyBody>,
}

impl Clients {
    fn new() -> Clients {
        let mut plain = HttpConnector::new();
        plain.set_connect_timeout(Some(CONNECT_TIMEOUT));
        plain.set_nodelay(true);
        plain.enforce_http(false);
        // The connector sets ALPN itself: http/1.1 or h2.
        let tls = |http2: bool| {
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(crate::tls::backend_client_config())
                .https_or_http();
            if http2 {
                builder.enable_http2().wrap_connector(plain.clone())
            } else {
                builder.enable_http1().wrap_connector(plain.clone())
            }
        };
        let pooled = || {
            let mut builder = Client::builder(TokioExecutor::new());
            builder.pool_idle_timeout(Duration::from_secs(60));
            builder
        };
        Clients {
            http: pooled().build(plain.clone()),
            https: pooled().build(tls(false)),
            h2c: pooled().http2_only(true).build(plain.clone()),
            h2: pooled().http2_only(true).build(tls(true)),
        }
    }

    async fn send(
        &self,
        protocol: BackendProtocol,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match protocol {
            BackendProtocol::Http => self.http.request(request).await,
            BackendProtocol::Https => self.https.request(request).await,
            BackendProtocol::Grpc => self.h2c.request(request).await,
            BackendProtocol::Grpcs => self.h2.request(request).await,
        }
    }
}

/// The connection a request came on.
#[derive(Clone, Copy, Debug)]
struct Connection {
    client: SocketAddr,
    port: u16,
    https: bool,
}

struct Proxy {
    shared: Arc<Shared>,
    clients: Clients,
}

fn full(text: impl Into<Bytes>) -> ProxyBody {
    Full::new(text.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A short plain-text answer.
fn answer(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The request's host as sent (`Host`, or the HTTP/2 authority), with its port if any.
fn host_header<B>(request: &Request<B>) -> String {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// `host[:port]` → lower-case host (IPv6 brackets kept).
fn host_name(host: &str) -> String {
    let name = if host.starts_with('[') {
        host.split_once(']')
            .map(|(h, _)| format!("{h}]"))
            .unwrap_or_else(|| host.to_owned())
    } else {
        host.split(':').next().unwrap_or_default().to_owned()
    };
    name.to_ascii_lowercase()
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Drops hop-by-hop headers (and those `Connection` names); keeps `Connection: upgrade` and
/// `Upgrade` when `upgrade`, `TE: trailers` when `keep_te_trailers` (gRPC).
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool, keep_te_trailers: bool) {
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if upgrade {
        if let Some(value) = upgrade_value {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, value);
        }
    }
    if keep_te_trailers && te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

async fn handle(
    proxy: Arc<Proxy>,
    request: Request<Incoming>,
    connection: Connection,
) -> Result<Response<ProxyBody>, Infallible> {
    let host = host_header(&request);
    let name = host_name(&host);
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let table = proxy.shared.table();
    let (backend, upstream_path, body_limit) =
        match table.decide(&name, &path_and_query, connection.https) {
            Decision::NotFound => {
                return Ok(answer(
                    StatusCode::NOT_FOUND,
                    "404 Not Found: no Ingress rule matches this host and path",
                ))
            }
            Decision::Redirect {
                status,
                https,
                location,
            } => {
                let url = if https && !connection.https {
                    format!("https://{name}{location}")
                } else {
                    let scheme = if connection.https { "https" } else { "http" };
                    format!("{scheme}://{host}{location}")
                };
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
                let mut response = answer(status, status.canonical_reason().unwrap_or(""));
                if let Ok(url) = HeaderValue::from_str(&url) {
                    response.headers_mut().insert(header::LOCATION, url);
                }
                return Ok(response);
            }
            Decision::DefaultBackend(backend) => (
                backend.clone(),
                path_and_query,
                Some(crate::annotations::DEFAULT_BODY_LIMIT),
            ),
            Decision::Route {
                rule,
                path_and_query,
            } => (
                rule.backend.clone(),
                path_and_query,
                rule.options.body_limit,
            ),
        };
    drop(table);
    if let (Some(limit), Some(length)) = (body_limit, request.body().size_hint().exact()) {
        if length > limit {
            return Ok(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            ));
        }
    }
    Ok(forward(
        &proxy,
        &backend,
        request,
        &upstream_path,
        &host,
        body_limit,
        connection,
    )
    .await)
}

async fn forward(
    proxy: &Proxy,
    backend: &Backend,
    mut request: Request<Incoming>,
    path_and_query: &str,
    host: &str,
    body_limit: Option<u64>,
    connection: Connection,
) -> Response<ProxyBody> {
    if backend.endpoints.is_empty() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: the backend has no ready endpoint",
        );
    }
    let upgrade = is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let grpc = matches!(
        backend.protocol,
        BackendProtocol::Grpc | BackendProtocol::Grpcs
    );
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade, grpc);
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, value);
    }
    let client_ip = connection.client.ip().to_string();
    let scheme = if connection.https { "https" } else { "http" };
    set(&mut headers, "x-real-ip", &client_ip);
    set(&mut headers, "x-forwarded-for", &client_ip);
    set(&mut headers, "x-forwarded-host", host);
    set(
        &mut headers,
        "x-forwarded-port",
        &connection.port.to_string(),
    );
    set(&mut headers, "x-forwarded-proto", scheme);
    set(&mut headers, "x-forwarded-scheme", scheme);
    set(&mut headers, "x-scheme", scheme);
    let bodyless = body.is_end_stream();
    let mut body = Some(body);
    let target_scheme = match backend.protocol {
        BackendProtocol::Http | BackendProtocol::Grpc => "http",
        BackendProtocol::Https | BackendProtocol::Grpcs => "https",
    };
    let version = if grpc {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let mut last_error = String::new();
    for endpoint in backend.candidates().take(ATTEMPTS) {
        let request_body = if bodyless {
            empty()
        } else {
            match body.take() {
                Some(b) => match body_limit {
                    Some(limit) => Limited::new(b, limit as usize).boxed_unsync(),
                    None => b.map_err(BodyError::from).boxed_unsync(),
                },
                None => break,
            }
        };
        let uri = format!("{target_scheme}://{endpoint}{path_and_query}");
        let mut outgoing = Request::new(request_body);
        *outgoing.method_mut() = parts.method.clone();
        *outgoing.version_mut() = version;
        *outgoing.headers_mut() = headers.clone();
        match uri.parse() {
            Ok(uri) => *outgoing.uri_mut() = uri,
            Err(e) => return answer(StatusCode::BAD_REQUEST, &format!("400 Bad Request: {e}")),
        }
        match proxy.clients.send(backend.protocol, outgoing).await {
            Ok(response) => return respond(response, client_upgrade),
            Err(e) if body_too_large(&e) => {
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "413 Request Entity Too Large",
                );
            }
            Err(e) => {
                tracing::debug!(backend = %backend.name, endpoint, error = %e, "backend request failed");
                last_error = e.to_string();
                if !(e.is_connect() && bodyless) {
                    break;
                }
            }
        }
    }
    tracing::warn!(backend = %backend.name, error = %last_error, "no endpoint answered");
    answer(
        StatusCode::BAD_GATEWAY,
        "502 Bad Gateway: the backend did not answer",
    )
}

/// The request failed because its (chunked) body went over `proxy-body-size`.
fn body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The backend's response on its way back; a 101 joins the two upgraded connections.
fn respond(
    mut response: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    match (switching, client_upgrade) {
        (true, Some(client_upgrade)) => {
            let backend_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match futures::future::try_join(client_upgrade, backend_upgrade).await {
                    Ok((client, backend)) => {
                        let mut client = TokioIo::new(client);
                        let mut backend = TokioIo::new(backend);
                        if let Err(e) =
                            tokio::io::copy_bidirectional(&mut client, &mut backend).await
                        {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            let (mut parts, _) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers, true, false);
            Response::from_parts(parts, empty())
        }
        _ => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers, false, true);
            parts.version = Version::HTTP_11;
            Response::from_parts(parts, body.map_err(BodyError::from).boxed_unsync())
        }
    }
}

async fn serve_connection(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    client: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let connection = Connection {
        client,
        port,
        https: tls.is_some(),
    };
    let service = hyper::service::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { handle(proxy, request, connection).await }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let served = match tls {
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await
            }
            Err(e) => {
                tracing::debug!(%client, error = %e, "TLS handshake failed");
                return;
            }
        },
        None => {
            builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}

async fn accept(listener: TcpListener, proxy: Arc<Proxy>, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                tokio::spawn(serve_connection(proxy.clone(), stream, client, tls.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen { address, source })
}

/// Serves HTTP (and HTTPS) on `listeners` from the tables `shared` holds, once the first table
/// is in; runs until the listeners fail.
pub async fn serve(listeners: Listeners, shared: Arc<Shared>) -> Result<(), Error> {
    shared.wait_ready().await;
    let proxy = Arc::new(Proxy {
        shared: shared.clone(),
        clients: Clients::new(),
    });
    let http = bind(listeners.http).await?;
    tracing::info!(address = %listeners.http, "serving HTTP");
    let https = match listeners.https {
        Some(address) => {
            let listener = bind(address).await?;
            let config = crate::tls::server_config(shared.resolver.clone())?;
            tracing::info!(%address, "serving HTTPS");
            Some((listener, tokio_rustls::TlsAcceptor::from(Arc::new(config))))
        }
        None => None,
    };
    let plain = accept(http, proxy.clone(), None);
    match https {
        Some((listener, acceptor)) => {
            futures::future::join(plain, accept(listener, proxy, Some(acceptor))).await;
        }
        None => plain.await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("A.Test:8080"), "a.test");
        assert_eq!(host_name("a.test"), "a.test");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name(""), "");
    }

    #[test]
    fn hop_by_hop_headers_go_upgrades_stay() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-private"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        assert!(is_upgrade(&headers));
        let mut upgrade = headers.clone();
        strip_hop_by_hop(&mut upgrade, true, false);
        assert_eq!(upgrade.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(upgrade.get(header::CONNECTION).unwrap(), "upgrade");
        assert!(upgrade.get("x-private").is_none() && upgrade.get("keep-alive").is_none());
        assert!(upgrade.get(header::TE).is_none());
        let mut plain = headers.clone();
        strip_hop_by_hop(&mut plain, false, true);
        assert!(plain.get(header::UPGRADE).is_none() && plain.get(header::CONNECTION).is_none());
        assert_eq!(plain.get(header::TE).unwrap(), "trailers");
        assert_eq!(plain.get("x-kept").unwrap(), "1");
    }
}
