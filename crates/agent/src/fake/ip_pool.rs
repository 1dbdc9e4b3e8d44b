//! The pod IP pool of one simulated node: addresses from the node's `spec.podCIDR`, each handed
//! to one pod at a time, freed when the pod ends or goes away, and reused (lowest free first).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 range parsed from CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(text: &str) -> Option<Ipv4Cidr> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let mask = mask(prefix);
        Some(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// The `index`-th address of the range.
    pub fn nth(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(index))
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// Pod addresses of one node. The network address, the gateway (`.1`, as a bridge CNI would
/// take it) and the broadcast address are never handed out.
#[derive(Debug, Default)]
pub struct PodIpPool {
    cidr: Option<Ipv4Cidr>,
    used: BTreeSet<u32>,
}

impl PodIpPool {
    pub fn cidr(&self) -> Option<Ipv4Cidr> {
        self.cidr
    }

    /// Sets the range; returns whether it changed. Addresses already handed out stay reserved.
    pub fn set_cidr(&mut self, cidr: Ipv4Cidr) -> bool {
        if self.cidr == Some(cidr) {
            return false;
        }
        self.cidr = Some(cidr);
        self.used.clear();
        true
    }

    fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let cidr = self.cidr?;
        if !cidr.contains(ip) {
            return None;
        }
        let index = u32::from(ip) - u32::from(cidr.network);
        (index >= 2 && u64::from(index) < cidr.size() - 1).then_some(index)
    }

    /// Hands out the lowest free address, or None when the range is missing or exhausted.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let cidr = self.cidr?;
        let last = cidr.size().checked_sub(2)?;
        let mut candidate = 2u32;
        for &used in self.used.iter() {
            if used > candidate {
                break;
            }
            if used == candidate {
                candidate += 1;
            }
        }
        if u64::from(candidate) > last {
            return None;
        }
        self.used.insert(candidate);
        Some(cidr.nth(candidate))
    }

    /// Marks `ip` as taken (a pod that already had it); false if it is outside the range or
    /// already taken.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        match self.index_of(ip) {
            Some(index) => self.used.insert(index),
            None => false,
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(index) = self.index_of(ip) {
            self.used.remove(&index);
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str) -> PodIpPool {
        let mut p = PodIpPool::default();
        p.set_cidr(Ipv4Cidr::parse(cidr).unwrap());
        p
    }

    #[test]
    fn parses_and_normalizes() {
        let c = Ipv4Cidr::parse("10.244.3.7/24").unwrap();
        assert_eq!(c.to_string(), "10.244.3.0/24");
        assert!(c.contains("10.244.3.200".parse().unwrap()));
        assert!(!c.contains("10.244.4.1".parse().unwrap()));
        assert_eq!(Ipv4Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Ipv4Cidr::parse("fd00::/64"), None);
    }

    #[test]
    fn allocates_unique_addresses_and_reuses_freed_ones() {
        let mut p = pool("10.244.1.0/24");
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
        p.release(a);
        assert_eq!(p.allocate().unwrap(), a);
        assert_eq!(p.allocate().unwrap(), Ipv4Addr::new(10, 244, 1, 4));
    }

    #[test]
    fn exhausts_without_network_gateway_or_broadcast() {
        let mut p = pool("10.244.1.0/29");
        let got: Vec<_> = std::iter::from_fn(|| p.allocate()).collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got.first(), Some(&Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 244, 1, 6)));
    }

    #[test]
    fn reserve_adopts_existing_addresses() {
        let mut p = pool("10.244.1.0/24");
        assert!(p.reserve(Ipv4Addr::new(10, 244, 1, 2)));
        assert!(!p.reserve(Ipv4Addr::new(10, 244, 1, 2)));
        assert!(!p.reserve(Ipv4Addr::new(10, 244, 2, 2)));
        assert!(!p.reserve(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(p.allocate().unwrap(), Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(p.in_use(), 2);
    }
}
