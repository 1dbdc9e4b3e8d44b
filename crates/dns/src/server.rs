//! The hickory request handler: names under the cluster domain (and PTR of cluster addresses)
//! from the index, everything else forwarded upstream; on UDP and TCP on one address.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use crate::resolve::{resolve, Resolution, Response};
use crate::upstream::Upstream;
use crate::watch::Snapshot;
use crate::{Error, Result};

/// How many CNAMEs of ExternalName Services are followed inside the cluster domain.
const MAX_CHASE: usize = 8;

/// How long `serve` waits for the first records before it listens.
const SYNC_WAIT: Duration = Duration::from_secs(5);

pub struct ServerConfig {
    /// UDP and TCP address to answer on.
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    pub upstream: Upstream,
}

pub struct Handler {
    zone: Name,
    snapshot: Snapshot,
    upstream: Upstream,
}

impl Handler {
    pub fn new(cluster_domain: &str, snapshot: Snapshot, upstream: Upstream) -> Result<Handler> {
        let invalid = |reason: String| Error::Domain {
            domain: cluster_domain.to_owned(),
            reason,
        };
        let mut zone = Name::from_ascii(cluster_domain)
            .map_err(|e| invalid(e.to_string()))?
            .to_lowercase();
        zone.set_fqdn(true);
        if zone.is_root() {
            return Err(invalid("the root cannot be the cluster domain".into()));
        }
        Ok(Handler {
            zone,
            snapshot,
            upstream,
        })
    }

    /// The answer to one question, forwarding when it is not the cluster's.
    async fn answer(&self, name: &Name, qtype: RecordType) -> Option<Response> {
        let lower = name.to_lowercase();
        let index = self.snapshot.get();
        let mut response = match &index {
            Some(index) => match resolve(index, &self.zone, name, qtype) {
                Resolution::Answer(response) => response,
                Resolution::Forward => return None,
            },
            // Not synced yet: the cluster's names fail (clients retry), others are forwarded.
            None if self.zone.zone_of(&lower) => Response {
                code: ResponseCode::ServFail,
                answers: Vec::new(),
                authorities: Vec::new(),
                additionals: Vec::new(),
                chase: None,
            },
            None => return None,
        };
        // ExternalName: the target's addresses after the CNAME, as CoreDNS adds them.
        let mut target = response.chase.take();
        for _ in 0..MAX_CHASE {
            let Some(next) = target.take() else { break };
            if self.zone.zone_of(&next.to_lowercase()) {
                if let Some(Resolution::Answer(more)) = index
                    .as_ref()
                    .map(|index| resolve(index, &self.zone, &next, qtype))
                {
                    response.answers.extend(more.answers);
                    target = more.chase;
                }
            } else if let Some(more) = self.upstream.lookup(&next, qtype).await {
                if more.metadata.response_code == ResponseCode::NoError {
                    response.answers.extend(more.answers);
                }
            }
        }
        Some(response)
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        response_handle: &mut R,
    ) -> std::result::Result<ResponseInfo, String> {
        let info = match request.request_info() {
            Ok(info) => info,
            // Not exactly one question: FORMERR, as CoreDNS.
            Err(_) => {
                let builder = MessageResponseBuilder::from_message_request(request);
                let message = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return response_handle
                    .send_response(message)
                    .await
                    .map_err(|e| e.to_string());
            }
        };
        let name: Name = info.query.original().name().clone();
        let qtype = info.query.query_type();
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns.set_version(0);
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let udp_limit = (request.protocol() == Protocol::Udp)
            .then(|| usize::from(edns.as_ref().map(Edns::max_payload).unwrap_or(512)));
        if let Some(response) = self.answer(&name, qtype).await {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.authoritative = response.code != ResponseCode::ServFail;
            metadata.recursion_available = true;
            metadata.response_code = response.code;
            let sections = [
                &response.answers,
                &response.authorities,
                &response.additionals,
            ];
            if udp_limit.is_some_and(|limit| !fits(limit, request, sections, edns.as_ref())) {
                return truncated(metadata, builder, response_handle).await;
            }
            let message = builder.build(
                metadata,
                response.answers.iter(),
                response.authorities.iter(),
                std::iter::empty::<&Record>(),
                response.additionals.iter(),
            );
            return response_handle
                .send_response(message)
                .await
                .map_err(|e| e.to_string());
        }
        let tcp = request.protocol() == Protocol::Tcp;
        let forwarded = match self.upstream.forward(request.as_slice(), tcp).await {
            Some(bytes) => Message::from_vec(&bytes).ok(),
            None => None,
        };
        let Some(upstream) = forwarded else {
            tracing::debug!(%name, ?qtype, "no upstream answered: SERVFAIL");
            let message = builder.error_msg(&request.metadata, ResponseCode::ServFail);
            return response_handle
                .send_response(message)
                .await
                .map_err(|e| e.to_string());
        };
        let mut metadata = upstream.metadata;
        metadata.id = request.metadata.id;
        let sections = [
            &upstream.answers,
            &upstream.authorities,
            &upstream.additionals,
        ];
        if udp_limit.is_some_and(|limit| !fits(limit, request, sections, edns.as_ref())) {
            return truncated(metadata, builder, response_handle).await;
        }
        let message = builder.build(
            metadata,
            upstream.answers.iter(),
            upstream.authorities.iter(),
            std::iter::empty::<&Record>(),
            upstream
                .additionals
                .iter()
                .filter(|r| r.record_type() != RecordType::OPT),
        );
        response_handle
            .send_response(message)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Whether the response with these sections fits in `limit` bytes (the client's UDP payload
/// size: 512 without EDNS). hickory's encoder fails (SERVFAIL) on a message over the limit
/// instead of truncating it, so an oversized answer is replaced by an empty one with TC set,
/// and the client asks again over TCP.
fn fits(limit: usize, request: &Request, sections: [&Vec<Record>; 3], edns: Option<&Edns>) -> bool {
    // The common case without encoding twice: up to three address records (owner names
    // compressed to the question's) stay under 512 bytes whatever the name.
    let records = || sections.iter().flat_map(|s| s.iter());
    if records().count() < 4
        && records().all(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
    {
        return true;
    }
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.add_queries(
        request
            .queries
            .queries()
            .iter()
            .map(|q| q.original().clone()),
    );
    message.add_answers(sections[0].iter().cloned());
    message.add_authorities(sections[1].iter().cloned());
    message.add_additionals(sections[2].iter().cloned());
    if let Some(edns) = edns {
        message.set_edns(edns.clone());
    }
    message.to_vec().is_ok_and(|bytes| bytes.len() <= limit)
}

async fn truncated<R: ResponseHandler>(
    mut metadata: Metadata,
    builder: MessageResponseBuilder<'_>,
    response_handle: &mut R,
) -> std::result::Result<ResponseInfo, String> {
    metadata.truncation = true;
    response_handle
        .send_response(builder.build_no_records(metadata))
        .await
        .map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        match self.respond(request, &mut response_handle).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot answer");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// Binds UDP and TCP on `config.listen` (the TCP port follows a UDP port 0 picked by the
/// system) once the first records are in (at most 5 s) and answers until the server fails.
pub async fn serve(config: ServerConfig, snapshot: Snapshot) -> Result<()> {
    // As CoreDNS's kubernetes plugin: start answering once the cluster's records are in, or
    // after a few seconds without them (then the cluster's names get SERVFAIL until they are).
    if !snapshot.wait_ready(SYNC_WAIT).await {
        tracing::warn!(
            "the cluster's records are not in after {SYNC_WAIT:?}: answering anyway (SERVFAIL for the cluster's names until they are)"
        );
    }
    let listen_error = |protocol: &'static str, address: SocketAddr| {
        move |source| Error::Listen {
            address,
            protocol,
            source,
        }
    };
    let udp = UdpSocket::bind(config.listen)
        .await
        .map_err(listen_error("udp", config.listen))?;
    let bound = udp
        .local_addr()
        .map_err(listen_error("udp", config.listen))?;
    let tcp = TcpListener::bind(bound)
        .await
        .map_err(listen_error("tcp", bound))?;
    tracing::info!(address = %bound, upstream = ?config.upstream.servers(), "cluster DNS listening");
    let handler = Handler::new(&config.cluster_domain, snapshot, config.upstream)?;
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10), 64);
    server
        .block_until_done()
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}
