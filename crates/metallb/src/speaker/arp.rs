//! ARP over Ethernet for IPv4 (RFC 826), the frames the layer-2 speaker reads and writes:
//! parsing a request, the reply that claims an address for this node's MAC, and the
//! gratuitous ARP that tells the segment (the host's neighbour cache) an address moved.

use std::net::Ipv4Addr;

pub type Mac = [u8; 6];

pub const ETHERTYPE_ARP: u16 = 0x0806;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;
/// The shortest Ethernet frame without its checksum; shorter frames are padded.
const MIN_FRAME: usize = 60;
pub const BROADCAST: Mac = [0xff; 6];

/// An ARP request for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// The request in an Ethernet frame, if it is one (anything else, replies included: None).
pub fn parse_request(frame: &[u8]) -> Option<Request> {
    if frame.len() < 42 || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_ARP {
        return None;
    }
    let arp = &frame[14..42];
    let htype = u16::from_be_bytes([arp[0], arp[1]]);
    let ptype = u16::from_be_bytes([arp[2], arp[3]]);
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    if htype != 1 || ptype != 0x0800 || arp[4] != 6 || arp[5] != 4 || op != OP_REQUEST {
        return None;
    }
    let mut sender_mac = [0u8; 6];
    sender_mac.copy_from_slice(&arp[8..14]);
    Some(Request {
        sender_mac,
        sender_ip: Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]),
        target_ip: Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]),
    })
}

fn frame(
    eth_dst: Mac,
    op: u16,
    sender_mac: Mac,
    sender_ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target_ip.octets());
    f.resize(MIN_FRAME, 0);
    f
}

/// "`request.target_ip` is at `mac`", sent to the asker.
pub fn reply(request: &Request, mac: Mac) -> Vec<u8> {
    frame(
        request.sender_mac,
        OP_REPLY,
        mac,
        request.target_ip,
        request.sender_mac,
        request.sender_ip,
    )
}

/// A gratuitous ARP reply: `ip` is at `mac`, broadcast.
pub fn gratuitous(ip: Ipv4Addr, mac: Mac) -> Vec<u8> {
    frame(BROADCAST, OP_REPLY, mac, ip, BROADCAST, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Mac = [0x02, 0x42, 0xac, 0x1e, 0x07, 0x01];
    const NODE: Mac = [0x02, 0x42, 0xac, 0x1e, 0x07, 0x03];

    fn request_frame(target: Ipv4Addr) -> Vec<u8> {
        frame(
            BROADCAST,
            OP_REQUEST,
            HOST,
            Ipv4Addr::new(172, 30, 7, 1),
            [0; 6],
            target,
        )
    }

    #[test]
    fn a_request_gets_a_reply_from_our_mac() {
        let target = Ipv4Addr::new(172, 30, 7, 224);
        let request = parse_request(&request_frame(target)).unwrap();
        assert_eq!(request.sender_ip, Ipv4Addr::new(172, 30, 7, 1));
        assert_eq!(request.target_ip, target);
        let answer = reply(&request, NODE);
        assert_eq!(answer.len(), 60);
        assert_eq!(&answer[0..6], &HOST, "unicast back to the asker");
        assert_eq!(&answer[6..12], &NODE);
        assert_eq!(&answer[20..22], &[0, 2], "op reply");
        assert_eq!(&answer[22..28], &NODE, "sender hardware address");
        assert_eq!(&answer[28..32], &target.octets(), "sender protocol address");
        assert_eq!(&answer[32..38], &HOST);
        assert_eq!(&answer[38..42], &[172, 30, 7, 1]);
        // A reply is not a request (the speaker ignores its own and others' replies).
        assert_eq!(parse_request(&answer), None);
        assert_eq!(parse_request(&answer[..30]), None);
    }

    #[test]
    fn gratuitous_arp_is_broadcast() {
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        let g = gratuitous(ip, NODE);
        assert_eq!(&g[0..6], &BROADCAST);
        assert_eq!(&g[28..32], &ip.octets());
        assert_eq!(&g[38..42], &ip.octets());
    }
}
