//! Cluster profiles: versioned YAML (`apiVersion: kubelab.dev/v1alpha1`, `kind: Cluster`)
//! describing what `kubelab up --profile FILE` creates. Unknown fields are errors naming the
//! field; command-line flags given explicitly win over the profile.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::create::{NodeFilter, PortSpec};
use crate::provider::BindMount;
use crate::{Error, Result};

pub const API_VERSION: &str = "kubelab.dev/v1alpha1";
pub const KIND: &str = "Cluster";

/// A cluster profile.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    pub api_version: String,
    pub kind: String,
    /// Cluster name.
    #[serde(default)]
    pub name: Option<String>,
    /// Number of servers (1 until the HA datastore exists).
    #[serde(default = "one")]
    pub servers: u32,
    /// Number of agents.
    #[serde(default)]
    pub agents: u32,
    /// Node image (default: kubelab's, built when missing).
    #[serde(default)]
    pub image: Option<String>,
    /// Host port of the API server (default: a free one).
    #[serde(default)]
    pub api_port: Option<u16>,
    /// Ports published from nodes.
    #[serde(default)]
    pub ports: Vec<ProfilePort>,
    /// Host directories mounted into every node.
    #[serde(default)]
    pub mounts: Vec<ProfileMount>,
    #[serde(default)]
    pub networking: Networking,
    /// Addons on or off (others keep their default).
    #[serde(default)]
    pub addons: BTreeMap<String, bool>,
    #[serde(default)]
    pub kubeconfig: KubeconfigOptions,
    /// How long `up` waits for every node Ready (e.g. 120s).
    #[serde(default)]
    pub wait: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfilePort {
    /// Host address (default 127.0.0.1).
    #[serde(default)]
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub node_port: u16,
    /// tcp (default), udp or sctp.
    #[serde(default)]
    pub protocol: Option<String>,
    /// `server` (the first server, default), `servers`, `agents`, `all`, or a node index.
    #[serde(default)]
    pub nodes: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProfileMount {
    pub host_path: String,
    pub node_path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    /// The range node podCIDRs are carved from (default 10.244.0.0/16).
    #[serde(default)]
    pub pod_subnet: Option<String>,
    /// The Service ClusterIP range (default 10.96.0.0/12).
    #[serde(default)]
    pub service_subnet: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeconfigOptions {
    /// Merge the cluster into the user's kubeconfig.
    #[serde(default = "yes")]
    pub update: bool,
    /// Make it the current context.
    #[serde(default = "yes")]
    pub switch_context: bool,
}

impl Default for KubeconfigOptions {
    fn default() -> Self {
        KubeconfigOptions {
            update: true,
            switch_context: true,
        }
    }
}

fn yes() -> bool {
    true
}

impl Profile {
    /// Parses and validates a profile.
    pub fn parse(path: &Path, text: &str) -> Result<Profile> {
        let invalid = |reason: String| Error::Profile {
            path: path.to_owned(),
            reason,
        };
        let profile: Profile = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if profile.api_version != API_VERSION {
            return Err(invalid(format!(
                "apiVersion is {:?}; this kubelab reads {API_VERSION}",
                profile.api_version
            )));
        }
        if profile.kind != KIND {
            return Err(invalid(format!(
                "kind is {:?}; expected {KIND}",
                profile.kind
            )));
        }
        if let Some(name) = &profile.name {
            crate::cluster::validate_name(name).map_err(|e| invalid(e.to_string()))?;
        }
        if profile.servers != 1 {
            return Err(invalid(
                "servers must be 1 until the HA datastore exists".into(),
            ));
        }
        for port in &profile.ports {
            port.spec().map_err(|e| invalid(e.to_string()))?;
        }
        for addon in profile.addons.keys() {
            if crate::addons::find(addon).is_none() {
                return Err(invalid(format!(
                    "unknown addon {addon:?}; known: {}",
                    crate::addons::names().join(", ")
                )));
            }
        }
        Ok(profile)
    }

    /// Reads and parses a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        Profile::parse(path, &text)
    }

    pub fn port_specs(&self) -> Result<Vec<PortSpec>> {
        self.ports.iter().map(ProfilePort::spec).collect()
    }

    pub fn bind_mounts(&self) -> Vec<BindMount> {
        self.mounts
            .iter()
            .map(|m| BindMount {
                host_path: m.host_path.clone(),
                container_path: m.node_path.clone(),
                read_only: m.read_only,
            })
            .collect()
    }

    /// `kubelab server` arguments for the networking options.
    pub fn server_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(s) = &self.networking.pod_subnet {
            args.push(format!("--cluster-cidr={s}"));
        }
        if let Some(s) = &self.networking.service_subnet {
            args.push(format!("--service-cidr={s}"));
        }
        args
    }
}

impl ProfilePort {
    fn spec(&self) -> Result<PortSpec> {
        let protocol = self.protocol.clone().unwrap_or_else(|| "tcp".into());
        if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
            return Err(Error::Invalid(format!(
                "port protocol {protocol:?}: use tcp, udp or sctp"
            )));
        }
        let nodes = match self.nodes.as_deref() {
            None | Some("server") => NodeFilter::FirstServer,
            Some("servers") => NodeFilter::AllServers,
            Some("agents") => NodeFilter::AllAgents,
            Some("all") => NodeFilter::All,
            Some(other) => NodeFilter::Index(other.parse().map_err(|_| {
                Error::Invalid(format!(
                    "port nodes {other:?}: use server, servers, agents, all or a node index"
                ))
            })?),
        };
        Ok(PortSpec {
            host_ip: self.host_ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
            host_port: self.host_port,
            container_port: self.node_port,
            protocol,
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = Profile::parse(
            Path::new("p.yaml"),
            "apiVersion: kubelab.dev/v1alpha1\nkind: Cluster\nagents: 1\nagnets: 2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("agnets"), "{err}");
        let err = Profile::parse(
            Path::new("p.yaml"),
            "apiVersion: kubelab.dev/v1alpha1\nkind: Cluster\nnetworking: {podSubnet: 10.1.0.0/16, dns: x}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("dns"), "{err}");
    }

    #[test]
    fn versions_kinds_and_addons_are_checked() {
        for (text, needle) in [
            ("apiVersion: kubelab.dev/v9\nkind: Cluster\n", "apiVersion"),
            ("apiVersion: kubelab.dev/v1alpha1\nkind: Pod\n", "kind"),
            (
                "apiVersion: kubelab.dev/v1alpha1\nkind: Cluster\naddons: {nope: true}\n",
                "unknown addon",
            ),
            (
                "apiVersion: kubelab.dev/v1alpha1\nkind: Cluster\nservers: 3\n",
                "HA",
            ),
        ] {
            let err = Profile::parse(Path::new("p.yaml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// Every file in profiles/ parses and validates; the three documented ones exist.
    #[test]
    fn every_shipped_profile_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let profile = Profile::load(&path).unwrap_or_else(|e| panic!("{e}"));
            profile.port_specs().unwrap();
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        for wanted in ["ci.yaml", "default.yaml", "lab.yaml"] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} missing: {names:?}"
            );
        }
        let lab = Profile::load(&dir.join("lab.yaml")).unwrap();
        assert_eq!((lab.servers, lab.agents), (1, 2));
        let ports: Vec<u16> = lab
            .port_specs()
            .unwrap()
            .iter()
            .map(|p| p.host_port)
            .collect();
        assert_eq!(ports, [80, 443]);
        let ci = Profile::load(&dir.join("ci.yaml")).unwrap();
        assert_eq!(ci.addons.get("storage"), Some(&false));
    }
}
