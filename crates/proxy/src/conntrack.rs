//! Conntrack entries of removed UDP endpoints. A UDP "connection" keeps the endpoint its first
//! packet was DNATed to for as long as packets flow (or 30–120 s after): a client that keeps
//! its source port would go on sending to a removed endpoint. After a sync removed UDP
//! endpoints, the proxy deletes the entries whose reply comes from one of them, as kube-proxy
//! does. The messages (ctnetlink over `NETLINK_NETFILTER`) are built and parsed here as pure
//! functions; `system::NetlinkConntrack` sends them.

use std::net::Ipv4Addr;

/// `nlmsghdr` size.
const NLMSG_HDRLEN: usize = 16;
/// `nfgenmsg` size.
const NFGEN_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const AF_INET: u8 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// IPPROTO_UDP.
pub const UDP: u8 = 17;

/// One side of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A conntrack entry of a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub original: Tuple,
    pub reply: Tuple,
    /// The `CTA_TUPLE_ORIG` attribute as received: what a delete names the entry by.
    pub original_attribute: Vec<u8>,
}

impl Entry {
    /// Whether the entry's replies come from `endpoint` (its packets were DNATed there).
    pub fn answered_by(&self, protocol: u8, endpoint: (Ipv4Addr, u16)) -> bool {
        self.reply.protocol == protocol
            && self.reply.src == Some(endpoint.0)
            && self.reply.src_port == endpoint.1
            && self.original.dst != Some(endpoint.0)
    }
}

fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGEN_LEN + payload.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[AF_INET, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// A request for every IPv4 conntrack entry.
pub fn dump_request(seq: u32) -> Vec<u8> {
    message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, &[])
}

/// A request deleting the entry whose original tuple is `original_attribute`.
pub fn delete_request(seq: u32, original_attribute: &[u8]) -> Vec<u8> {
    message(
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        original_attribute,
    )
}

/// What a receive buffer held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub entries: Vec<Entry>,
    /// The dump is complete (`NLMSG_DONE`).
    pub done: bool,
    /// Errors (negative errno) of `NLMSG_ERROR` messages; 0 is an acknowledgement.
    pub errors: Vec<i32>,
}

/// Parses the netlink messages in `buf`.
pub fn parse(buf: &[u8]) -> Received {
    let mut received = Received::default();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let body = &rest[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => received.done = true,
            NLMSG_ERROR if body.len() >= 4 => received
                .errors
                .push(i32::from_ne_bytes(body[0..4].try_into().expect("4 bytes"))),
            _ if kind >> 8 == NFNL_SUBSYS_CTNETLINK && body.len() >= NFGEN_LEN => {
                if let Some(entry) = parse_entry(&body[NFGEN_LEN..]) {
                    received.entries.push(entry);
                }
            }
            _ => {}
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    received
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Attributes: (type without flags, payload, the whole attribute).
fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len], &buf[..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    out
}

fn parse_entry(buf: &[u8]) -> Option<Entry> {
    let mut original = None;
    let mut reply = None;
    for (kind, payload, whole) in attributes(buf) {
        match kind {
            CTA_TUPLE_ORIG => original = Some((parse_tuple(payload), whole.to_vec())),
            CTA_TUPLE_REPLY => reply = Some(parse_tuple(payload)),
            _ => {}
        }
    }
    let (original, original_attribute) = original?;
    Some(Entry {
        original,
        reply: reply?,
        original_attribute,
    })
}

fn parse_tuple(buf: &[u8]) -> Tuple {
    let mut tuple = Tuple::default();
    let ip = |p: &[u8]| <[u8; 4]>::try_from(p).ok().map(Ipv4Addr::from);
    let port = |p: &[u8]| <[u8; 2]>::try_from(p).map(u16::from_be_bytes).unwrap_or(0);
    for (kind, payload, _) in attributes(buf) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, payload, _) in attributes(payload) {
                    match kind {
                        CTA_IP_V4_SRC => tuple.src = ip(payload),
                        CTA_IP_V4_DST => tuple.dst = ip(payload),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, payload, _) in attributes(payload) {
                    match kind {
                        CTA_PROTO_NUM => tuple.protocol = payload.first().copied().unwrap_or(0),
                        CTA_PROTO_SRC_PORT => tuple.src_port = port(payload),
                        CTA_PROTO_DST_PORT => tuple.dst_port = port(payload),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    tuple
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let nested = 0x8000;
        let ip = [
            attribute(CTA_IP_V4_SRC, &src),
            attribute(CTA_IP_V4_DST, &dst),
        ]
        .concat();
        let proto = [
            attribute(CTA_PROTO_NUM, &[UDP]),
            attribute(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
            attribute(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
        .concat();
        [
            attribute(CTA_TUPLE_IP | nested, &ip),
            attribute(CTA_TUPLE_PROTO | nested, &proto),
        ]
        .concat()
    }

    /// A dump answer: the entry of a pod 10.244.1.5:40000 → ClusterIP 10.96.0.10:53 DNATed
    /// to 10.244.2.7:53, then NLMSG_DONE.
    pub fn dump_answer() -> Vec<u8> {
        let original = tuple([10, 244, 1, 5], [10, 96, 0, 10], 40000, 53);
        let reply = tuple([10, 244, 2, 7], [10, 244, 1, 5], 53, 40000);
        let payload = [
            attribute(CTA_TUPLE_ORIG | 0x8000, &original),
            attribute(CTA_TUPLE_REPLY | 0x8000, &reply),
            attribute(3, &[0, 0, 0, 8]), // CTA_STATUS
        ]
        .concat();
        let mut out = message(IPCTNL_MSG_CT_GET, 0x2, 1, &payload);
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        out.extend_from_slice(&done);
        out
    }

    #[test]
    fn parses_a_dump_and_names_the_entry_for_deletion() {
        let received = parse(&dump_answer());
        assert!(received.done);
        assert_eq!(received.entries.len(), 1);
        let entry = &received.entries[0];
        assert_eq!(entry.original.dst, Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(entry.original.dst_port, 53);
        assert_eq!(entry.reply.src, Some(Ipv4Addr::new(10, 244, 2, 7)));
        assert!(entry.answered_by(UDP, (Ipv4Addr::new(10, 244, 2, 7), 53)));
        assert!(!entry.answered_by(UDP, (Ipv4Addr::new(10, 244, 2, 7), 54)));
        assert!(!entry.answered_by(6, (Ipv4Addr::new(10, 244, 2, 7), 53)));
        let delete = delete_request(9, &entry.original_attribute);
        assert_eq!(
            u32::from_ne_bytes(delete[0..4].try_into().unwrap()) as usize,
            delete.len()
        );
        assert_eq!(u16::from_ne_bytes([delete[4], delete[5]]), 0x0102);
        assert_eq!(&delete[20..], &entry.original_attribute[..]);
    }

    #[test]
    fn acknowledgements_and_errors() {
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse(&ack).errors, [-2]);
        assert_eq!(dump_request(1).len(), 20);
    }
}
