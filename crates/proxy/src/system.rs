//! The boundary to the kernel: iptables and the routing table, each a trait with the real
//! implementation (the `iptables`, `iptables-restore`, `iptables-save` and `ip` commands of the
//! node) and an in-memory fake for tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::routes::{Route, ROUTE_PROTOCOL};
use crate::rules::{saved_chains, Jump, Table};
use crate::Error;

/// iptables as the proxy uses it.
pub trait Iptables: Send + 'static {
    /// Feeds `input` (one or more tables) to `iptables-restore --noflush`: one process, one
    /// transaction per table (with the nf_tables backend, one for all).
    fn restore(&mut self, input: &str) -> Result<(), Error>;
    /// The kubelab chains present in `table`, with the number of rules of each.
    fn chains(&mut self, table: Table) -> Result<BTreeMap<String, usize>, Error>;
    /// Inserts the jump at the head of its built-in chain unless it is there; returns whether
    /// it had to.
    fn ensure_jump(&mut self, jump: &Jump) -> Result<bool, Error>;
}

/// The routing table as the proxy uses it: only routes with [`ROUTE_PROTOCOL`].
pub trait RouteTable: Send + 'static {
    fn list(&mut self) -> Result<Vec<Route>, Error>;
    fn replace(&mut self, route: &Route) -> Result<(), Error>;
    fn delete(&mut self, route: &Route) -> Result<(), Error>;
}

/// The connection tracking table as the proxy uses it.
pub trait Conntrack: Send + std::fmt::Debug + 'static {
    /// Deletes the entries of `protocol` (IPPROTO_*) whose replies come from one of
    /// `endpoints` after a DNAT; returns how many were deleted.
    fn delete_answered_by(
        &mut self,
        protocol: u8,
        endpoints: &[(Ipv4Addr, u16)],
    ) -> Result<usize, Error>;
}

/// Runs `program args` with `stdin`; its stdout, or an error with its stderr.
fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<String, Error> {
    let command = format!("{program} {}", args.join(" "));
    let fail = |message: String| Error::Command {
        command: command.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The node's iptables commands.
#[derive(Clone, Debug, Default)]
pub struct IptablesCommand;

impl Iptables for IptablesCommand {
    fn restore(&mut self, input: &str) -> Result<(), Error> {
        run(
            "iptables-restore",
            &strings(&["-w", "--noflush"]),
            Some(input),
        )
        .map(drop)
    }

    fn chains(&mut self, table: Table) -> Result<BTreeMap<String, usize>, Error> {
        run("iptables-save", &strings(&["-t", table.as_str()]), None).map(|s| saved_chains(&s))
    }

    fn ensure_jump(&mut self, jump: &Jump) -> Result<bool, Error> {
        let args = |op: &str| {
            let mut a = strings(&["-w", "-t", jump.table.as_str(), op, jump.chain]);
            if op == "-I" {
                a.push("1".into());
            }
            a.extend(jump.rule.iter().cloned());
            a
        };
        if run("iptables", &args("-C"), None).is_ok() {
            return Ok(false);
        }
        run("iptables", &args("-I"), None).map(|_| true)
    }
}

/// The node's routing table through `ip route`.
#[derive(Clone, Debug, Default)]
pub struct IpRoute;

impl RouteTable for IpRoute {
    fn list(&mut self) -> Result<Vec<Route>, Error> {
        let proto = ROUTE_PROTOCOL.to_string();
        run(
            "ip",
            &strings(&["-4", "route", "show", "proto", &proto]),
            None,
        )
        .map(|s| crate::routes::parse_routes(&s))
    }

    fn replace(&mut self, route: &Route) -> Result<(), Error> {
        let (dst, via, proto) = (
            route.destination.to_string(),
            route.gateway.to_string(),
            ROUTE_PROTOCOL.to_string(),
        );
        run(
            "ip",
            &strings(&["-4", "route", "replace", &dst, "via", &via, "proto", &proto]),
            None,
        )
        .map(drop)
    }

    fn delete(&mut self, route: &Route) -> Result<(), Error> {
        let (dst, proto) = (route.destination.to_string(), ROUTE_PROTOCOL.to_string());
        run(
            "ip",
            &strings(&["-4", "route", "del", &dst, "proto", &proto]),
            None,
        )
        .map(drop)
    }
}

/// An in-memory iptables: applies restore input to a model of the chains, so tests can
/// assert what the kernel would hold and how much each sync wrote.
#[derive(Clone, Debug, Default)]
pub struct FakeIptables {
    pub tables: BTreeMap<Table, BTreeMap<String, Vec<String>>>,
    pub jumps: Vec<Jump>,
    /// Every restore input, in order.
    pub restores: Vec<String>,
}

impl Iptables for FakeIptables {
    fn restore(&mut self, input: &str) -> Result<(), Error> {
        self.restores.push(input.to_owned());
        let mut table = Table::Filter;
        for line in input.lines() {
            let chains = self.tables.entry(table).or_default();
            if let Some(name) = line.strip_prefix('*') {
                table = match name {
                    "nat" => Table::Nat,
                    _ => Table::Filter,
                };
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                chains.insert(name.to_owned(), Vec::new());
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let (name, rule) = rule.split_once(' ').unwrap_or((rule, ""));
                chains
                    .get_mut(name)
                    .ok_or_else(|| Error::Command {
                        command: "iptables-restore".into(),
                        message: format!("chain {name} not declared"),
                    })?
                    .push(rule.to_owned());
            } else if let Some(name) = line.strip_prefix("-X ") {
                chains.remove(name);
            }
        }
        Ok(())
    }

    fn chains(&mut self, table: Table) -> Result<BTreeMap<String, usize>, Error> {
        Ok(self
            .tables
            .get(&table)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.len())).collect())
            .unwrap_or_default())
    }

    fn ensure_jump(&mut self, jump: &Jump) -> Result<bool, Error> {
        if self.jumps.contains(jump) {
            return Ok(false);
        }
        self.jumps.push(jump.clone());
        Ok(true)
    }
}

/// An in-memory routing table.
#[derive(Clone, Debug, Default)]
pub struct FakeRoutes {
    pub routes: Vec<Route>,
}

impl RouteTable for FakeRoutes {
    fn list(&mut self) -> Result<Vec<Route>, Error> {
        Ok(self.routes.clone())
    }

    fn replace(&mut self, route: &Route) -> Result<(), Error> {
        self.routes.retain(|r| r.destination != route.destination);
        self.routes.push(route.clone());
        Ok(())
    }

    fn delete(&mut self, route: &Route) -> Result<(), Error> {
        self.routes.retain(|r| r.destination != route.destination);
        Ok(())
    }
}

/// The kernel's conntrack table over ctnetlink (`NETLINK_NETFILTER`; needs CAP_NET_ADMIN).
#[derive(Clone, Debug, Default)]
pub struct NetlinkConntrack;

fn netlink_error(what: &str, error: std::io::Error) -> Error {
    Error::Command {
        command: format!("conntrack netlink {what}"),
        message: error.to_string(),
    }
}

impl NetlinkConntrack {
    fn socket() -> Result<OwnedFd, Error> {
        // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(netlink_error("socket", std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a valid timeval of the size passed.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(socket)
    }

    fn send(socket: &OwnedFd, message: &[u8]) -> Result<(), Error> {
        // SAFETY: the buffer is valid for its length.
        let sent = unsafe {
            libc::send(
                socket.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(netlink_error("send", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn receive(socket: &OwnedFd, buf: &mut [u8]) -> Result<crate::conntrack::Received, Error> {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(netlink_error("receive", std::io::Error::last_os_error()));
        }
        Ok(crate::conntrack::parse(&buf[..n as usize]))
    }
}

impl Conntrack for NetlinkConntrack {
    fn delete_answered_by(
        &mut self,
        protocol: u8,
        endpoints: &[(Ipv4Addr, u16)],
    ) -> Result<usize, Error> {
        use crate::conntrack::{delete_request, dump_request};
        let socket = Self::socket()?;
        let mut buf = vec![0u8; 256 * 1024];
        Self::send(&socket, &dump_request(1))?;
        let mut doomed = Vec::new();
        loop {
            let received = Self::receive(&socket, &mut buf)?;
            doomed.extend(received.entries.into_iter().filter(|e| {
                endpoints
                    .iter()
                    .any(|endpoint| e.answered_by(protocol, *endpoint))
            }));
            if received.done || received.errors.iter().any(|e| *e != 0) {
                break;
            }
        }
        let mut deleted = 0;
        for (i, entry) in doomed.iter().enumerate() {
            Self::send(
                &socket,
                &delete_request(2 + i as u32, &entry.original_attribute),
            )?;
            // 0: deleted; -ENOENT: gone meanwhile.
            if Self::receive(&socket, &mut buf)?.errors.first() == Some(&0) {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// A conntrack table that records what it was asked to delete.
#[derive(Clone, Debug, Default)]
pub struct FakeConntrack {
    pub deleted: Vec<(u8, Vec<(Ipv4Addr, u16)>)>,
}

impl Conntrack for FakeConntrack {
    fn delete_answered_by(
        &mut self,
        protocol: u8,
        endpoints: &[(Ipv4Addr, u16)],
    ) -> Result<usize, Error> {
        self.deleted.push((protocol, endpoints.to_vec()));
        Ok(0)
    }
}
