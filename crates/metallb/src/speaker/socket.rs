//! The kernel boundary of the speaker: the node's interfaces (getifaddrs: name, index, MAC,
//! IPv4 networks) and one AF_PACKET raw socket receiving every ARP frame of every interface
//! and sending frames out of a chosen one. Needs CAP_NET_RAW in the node's network namespace
//! (a hostNetwork pod).

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::arp::{Mac, ETHERTYPE_ARP};
use crate::{Error, Result};

/// An interface with IPv4 addresses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    pub index: i32,
    pub mac: Mac,
    /// (address, prefix length)
    pub networks: Vec<(Ipv4Addr, u32)>,
}

impl Interface {
    /// Whether `ip` is inside one of its networks.
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.networks.iter().any(|(addr, len)| {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(*addr) & mask == u32::from(ip) & mask
        })
    }
}

/// The interfaces that are up, have a MAC and an IPv4 address (loopback excluded), by index.
pub fn interfaces() -> io::Result<BTreeMap<i32, Interface>> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, released below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: a non-null entry of the list getifaddrs returned.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null()
            || entry.ifa_flags & libc::IFF_UP as u32 == 0
            || entry.ifa_flags & libc::IFF_LOOPBACK as u32 != 0
        {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string for every entry.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let interface = by_name.entry(name.clone()).or_insert_with(|| Interface {
            name,
            ..Interface::default()
        });
        // SAFETY: ifa_addr is non-null; its family says which sockaddr it is.
        match i32::from(unsafe { (*entry.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let addr = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
                let len = if entry.ifa_netmask.is_null() {
                    32
                } else {
                    let mask = unsafe { &*(entry.ifa_netmask as *const libc::sockaddr_in) };
                    u32::from_be(mask.sin_addr.s_addr).count_ones()
                };
                interface.networks.push((ip, len));
            }
            libc::AF_PACKET => {
                let ll = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_ll) };
                interface.index = ll.sll_ifindex;
                if ll.sll_halen == 6 {
                    interface.mac.copy_from_slice(&ll.sll_addr[..6]);
                }
            }
            _ => {}
        }
    }
    // SAFETY: the list came from getifaddrs and is not used after this.
    unsafe { libc::freeifaddrs(list) };
    Ok(by_name
        .into_values()
        .filter(|i| i.index > 0 && !i.networks.is_empty() && i.mac != [0; 6])
        .map(|i| (i.index, i))
        .collect())
}

/// An AF_PACKET socket for ARP frames on every interface.
pub struct ArpSocket {
    fd: OwnedFd,
}

fn socket_error(operation: &'static str, interface: &str) -> Error {
    Error::Socket {
        operation,
        interface: interface.to_owned(),
        source: io::Error::last_os_error(),
    }
}

impl ArpSocket {
    pub fn open() -> Result<ArpSocket> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETHERTYPE_ARP.to_be()),
            )
        };
        if fd < 0 {
            return Err(socket_error(
                "open an AF_PACKET socket (needs CAP_NET_RAW)",
                "any",
            ));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(ArpSocket { fd })
    }

    /// The next ARP frame received (not one this host sent) and its interface index; None
    /// after a second without one.
    pub fn receive(&self, buffer: &mut [u8]) -> Result<Option<(usize, i32)>> {
        loop {
            // SAFETY: zeroed sockaddr_ll is valid; recvfrom writes at most its size.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr() as *mut libc::c_void,
                    buffer.len(),
                    0,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                return match error.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(Error::Socket {
                        operation: "receive",
                        interface: "any".into(),
                        source: error,
                    }),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some((n as usize, from.sll_ifindex)));
        }
    }

    /// Sends an Ethernet frame (destination MAC first) out of `interface`.
    pub fn send(&self, interface: &Interface, frame: &[u8]) -> Result<()> {
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETHERTYPE_ARP.to_be();
        to.sll_ifindex = interface.index;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto with a valid buffer and address of the given sizes.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &to as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(socket_error("send", &interface.name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_hold_addresses() {
        let i = Interface {
            networks: vec![(Ipv4Addr::new(172, 30, 7, 3), 24)],
            ..Default::default()
        };
        assert!(i.holds(Ipv4Addr::new(172, 30, 7, 224)));
        assert!(!i.holds(Ipv4Addr::new(172, 30, 8, 224)));
    }

    /// Reads the machine's interfaces (every Linux machine running these tests has one up with
    /// IPv4, or none: both are fine, the call must not fail).
    #[test]
    fn interfaces_are_listed() {
        let list = interfaces().unwrap();
        for (index, i) in &list {
            assert_eq!(*index, i.index);
            assert_ne!(i.name, "lo");
        }
    }
}
