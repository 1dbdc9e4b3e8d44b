//! Pool addresses: `spec.addresses` entries are CIDRs (`192.168.10.0/24`, one address as
//! `/32`) or inclusive ranges (`192.168.10.10-192.168.10.20`), IPv4 here. A CIDR's every
//! address is usable (as MetalLB: the network and broadcast addresses too) unless the pool has
//! `avoidBuggyIPs`, which skips addresses ending in `.0` and `.255`.

use std::net::Ipv4Addr;

use crate::{Error, Result};

/// An inclusive IPv4 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl Range {
    /// Parses a CIDR or an `A-B` range.
    pub fn parse(text: &str) -> Result<Range> {
        let invalid = |reason: &str| Error::Range {
            range: text.to_owned(),
            reason: reason.to_owned(),
        };
        let text = text.trim();
        if let Some((a, b)) = text.split_once('-') {
            let first: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| invalid("the first address is not IPv4"))?;
            let last: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| invalid("the last address is not IPv4"))?;
            if u32::from(first) > u32::from(last) {
                return Err(invalid("the first address is after the last"));
            }
            return Ok(Range { first, last });
        }
        let (ip, len) = text
            .split_once('/')
            .ok_or_else(|| invalid("expected a CIDR (A.B.C.D/N) or a range (A-B)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| invalid("not an IPv4 address (IPv6 pools are not supported)"))?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| invalid("the prefix length must be 0 to 32"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let base = u32::from(ip) & mask;
        Ok(Range {
            first: Ipv4Addr::from(base),
            last: Ipv4Addr::from(base | !mask),
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }

    /// How many addresses it holds.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Whether `avoidBuggyIPs` excludes the address.
pub fn is_buggy(ip: Ipv4Addr) -> bool {
    matches!(ip.octets()[3], 0 | 255)
}

/// The default pool of a cluster network (a /24 or larger): its top 31 addresses below the
/// broadcast address (`.224-.254` of a /24), which Docker's IPAM never hands out because
/// kubelab creates the network with an `ip_range` below them.
pub fn default_pool(subnet: &str) -> Result<Range> {
    let net = Range::parse(subnet)?;
    if net.len() < 64 {
        return Err(Error::Range {
            range: subnet.to_owned(),
            reason: "the cluster network is smaller than a /26".into(),
        });
    }
    let last = u32::from(net.last) - 1;
    Ok(Range {
        first: Ipv4Addr::from(last - 30),
        last: Ipv4Addr::from(last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_ranges() {
        let r = Range::parse("192.168.10.0/30").unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            [
                "192.168.10.0",
                "192.168.10.1",
                "192.168.10.2",
                "192.168.10.3"
            ]
        );
        let one = Range::parse("42.176.25.64/32").unwrap();
        assert_eq!((one.first, one.len()), ("42.176.25.64".parse().unwrap(), 1));
        let r = Range::parse("10.0.0.250 - 10.0.1.2").unwrap();
        assert_eq!(r.len(), 9);
        assert!(r.contains("10.0.1.0".parse().unwrap()));
        assert!(!r.contains("10.0.1.3".parse().unwrap()));
        assert_eq!(r.to_string(), "10.0.0.250-10.0.1.2");
        // A CIDR with host bits is its network.
        assert_eq!(
            Range::parse("10.1.2.3/24").unwrap().first.to_string(),
            "10.1.2.0"
        );
        for bad in [
            "10.0.0.5-10.0.0.1",
            "10.0.0.0/33",
            "fd00::/64",
            "nonsense",
            "1.2.3.4",
        ] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
        assert!(is_buggy("10.0.1.0".parse().unwrap()) && is_buggy("10.0.0.255".parse().unwrap()));
        assert!(!is_buggy("10.0.0.254".parse().unwrap()));
    }

    #[test]
    fn default_pool_is_the_top_of_the_network() {
        let pool = default_pool("172.30.7.0/24").unwrap();
        assert_eq!(pool.to_string(), "172.30.7.224-172.30.7.254");
        assert_eq!(pool.len(), 31);
        assert!(default_pool("10.0.0.0/28").is_err());
    }
}
