//! Making a container fit to run containers: cgroups writable (v1 and v2), `/proc/sys` writable,
//! `/` shared for mount propagation, the sysctls pods need.

use std::path::Path;

use nix::mount::{mount, umount, MsFlags};

use crate::{Error, Result};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: String,
    pub options: String,
    pub fs_type: String,
    pub super_options: String,
}

impl MountInfo {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses /proc/self/mountinfo.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                mount_point: unescape(left.get(4)?),
                options: left.get(5)?.to_string(),
                fs_type: right.first()?.to_string(),
                super_options: right.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn mounts() -> Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text))
}

/// The cgroup version the node sees: 2 when /sys/fs/cgroup is a cgroup2 mount.
pub fn cgroup_version() -> Result<u8> {
    let all = mounts()?;
    let v2 = all
        .iter()
        .any(|m| m.mount_point == "/sys/fs/cgroup" && m.fs_type == "cgroup2");
    Ok(if v2 { 2 } else { 1 })
}

/// Remounts every cgroup hierarchy read-write (Docker mounts them read-only in unprivileged
/// containers). With a private cgroup namespace a fresh mount shows the container's own
/// subtree as its root. On v2, moves this process into `/init.scope` and enables every
/// controller for the children (cgroup v2 allows no processes in a cgroup that delegates).
pub fn prepare_cgroups() -> Result<u8> {
    let all = mounts()?;
    if let Some(root) = all
        .iter()
        .find(|m| m.mount_point == "/sys/fs/cgroup" && m.fs_type == "cgroup2")
    {
        if root.read_only() {
            remount_fresh("/sys/fs/cgroup", "cgroup2", None)?;
        }
        delegate_v2(Path::new("/sys/fs/cgroup"))?;
        return Ok(2);
    }
    for m in all
        .iter()
        .filter(|m| m.fs_type == "cgroup" && m.mount_point.starts_with("/sys/fs/cgroup/"))
    {
        if !m.read_only() {
            continue;
        }
        // The controllers (or name=) are the super options other than rw/ro.
        let data: Vec<&str> = m
            .super_options
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect();
        remount_fresh(&m.mount_point, "cgroup", Some(&data.join(",")))?;
    }
    Ok(1)
}

fn remount_fresh(target: &str, fs_type: &str, data: Option<&str>) -> Result<()> {
    umount(target).map_err(|e| Error::node_init(format!("unmount {target}"), e))?;
    mount(
        Some(fs_type),
        target,
        Some(fs_type),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME,
        data,
    )
    .map_err(|e| {
        Error::node_init(
            format!("mount {fs_type} on {target} ({})", data.unwrap_or("")),
            e,
        )
    })
}

fn delegate_v2(root: &Path) -> Result<()> {
    let init = root.join("init.scope");
    std::fs::create_dir_all(&init).map_err(|e| Error::io("create", &init, e))?;
    let procs = std::fs::read_to_string(root.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter(|l| !l.trim().is_empty()) {
        // Processes may be gone already; the ones that matter (this one) move.
        let _ = std::fs::write(init.join("cgroup.procs"), pid);
    }
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let enable: Vec<String> = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if !enable.is_empty() {
        let path = root.join("cgroup.subtree_control");
        std::fs::write(&path, enable.join(" "))
            .map_err(|e| Error::io("enable controllers in", &path, e))?;
    }
    Ok(())
}

/// Makes /proc/sys writable (Docker binds it read-only in unprivileged containers).
pub fn writable_proc_sys() -> Result<()> {
    let all = mounts()?;
    let Some(m) = all.iter().find(|m| m.mount_point == "/proc/sys") else {
        return Ok(());
    };
    if !m.read_only() {
        return Ok(());
    }
    let flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mount(None::<&str>, "/proc/sys", None::<&str>, flags, None::<&str>)
        .or_else(|_| {
            mount(
                None::<&str>,
                "/proc/sys",
                None::<&str>,
                MsFlags::MS_REMOUNT,
                None::<&str>,
            )
        })
        .map_err(|e| Error::node_init("remount /proc/sys read-write", e))
}

/// `mount --make-rshared /`: volume mounts made by the kubelet propagate into containers.
pub fn shared_root() -> Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::node_init("make / shared", e))
}

/// The sysctls pods and service routing need, where the kernel lets a container set them.
/// Returns the ones that could not be set (not namespaced, or absent).
pub fn sysctls() -> Vec<String> {
    let wanted = [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/route_localnet", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
        ("net/bridge/bridge-nf-call-ip6tables", "1"),
        ("net/ipv6/conf/all/forwarding", "1"),
    ];
    let mut failed = Vec::new();
    for (key, value) in wanted {
        let path = Path::new("/proc/sys").join(key);
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            continue;
        }
        if std::fs::write(&path, value).is_err() {
            failed.push(key.replace('/', "."));
        }
    }
    failed
}

/// Whether this process has CAP_SYS_RESOURCE (containerd must not raise oom_score_adj below
/// its own without it: `restrict_oom_score_adj`).
pub fn has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Whether overlayfs works on `dir` (not on every file system under the node's /var).
pub fn overlay_works(dir: &Path) -> bool {
    let base = dir.join(format!(".overlay-check-{}", std::process::id()));
    let (lower, upper, work, merged) = (
        base.join("l"),
        base.join("u"),
        base.join("w"),
        base.join("m"),
    );
    let ok = [&lower, &upper, &work, &merged]
        .iter()
        .all(|d| std::fs::create_dir_all(d).is_ok())
        && mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(
                format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                )
                .as_str(),
            ),
        )
        .is_ok();
    if ok {
        let _ = umount(&merged);
    }
    let _ = std::fs::remove_dir_all(&base);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "30 25 0:26 / /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime master:11 - cgroup cgroup rw,cpu\n\
                    31 25 0:27 / /sys/fs/cgroup/systemd ro,nosuid - cgroup systemd rw,name=systemd\n\
                    40 20 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
                    41 20 0:5 /sys /proc/sys ro,relatime - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].mount_point, "/sys/fs/cgroup/cpu");
        assert!(m[0].read_only());
        assert_eq!(m[0].super_options, "rw,cpu");
        assert_eq!(m[1].super_options, "rw,name=systemd");
        assert_eq!(m[2].fs_type, "cgroup2");
        assert!(!m[2].read_only());
        assert_eq!(m[3].mount_point, "/proc/sys");
    }
}
