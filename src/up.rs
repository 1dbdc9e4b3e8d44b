//! `kubelab up`: create a cluster of container nodes (see kubelab_cluster::create).

use std::time::Duration;

use anyhow::Context;
use kubelab_cluster::create::{self, CreateSpec, PortSpec};
use kubelab_cluster::provider::{DockerProvider, Provider};
use std::path::PathBuf;

use kubelab_cluster::profile::Profile;
use kubelab_cluster::{addons, cluster, kubeconfig, node_image};

use crate::progress::Steps;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Cluster name (default: the profile's, else kubelab).
    #[arg(long)]
    name: Option<String>,
    /// Number of nodes, servers included (default: the profile's, else 1).
    #[arg(long)]
    nodes: Option<u32>,
    /// Number of servers (more than one needs the HA datastore, not there yet).
    #[arg(long)]
    servers: Option<u32>,
    /// A cluster profile (apiVersion kubelab.dev/v1alpha1, kind Cluster; see profiles/).
    /// Flags given on the command line win over it.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Node image (default: kubelab/node:v<version>, built when missing or older than this
    /// binary).
    #[arg(long)]
    image: Option<String>,
    /// How long to wait for every node Ready (e.g. 90s, 2m; 0 does not wait; default 120s).
    #[arg(long, value_parser = parse_duration)]
    wait: Option<Duration>,
    /// Keep what was created when `up` fails (for debugging).
    #[arg(long)]
    retain: bool,
    /// Do not make the new cluster the kubeconfig's current context.
    #[arg(long)]
    no_switch_context: bool,
    /// Do not write the kubeconfig at all.
    #[arg(long)]
    no_kubeconfig: bool,
    /// Publish a port of the first server: [HOST_IP:]HOST_PORT:NODE_PORT[/PROTO] (repeatable;
    /// the host address defaults to 127.0.0.1).
    #[arg(long = "port")]
    ports: Vec<String>,
    /// Host port of the API server on 127.0.0.1 (default: a free one).
    #[arg(long)]
    api_port: Option<u16>,
    /// Extra argument of `kubelab server` on server nodes (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true, hide = true)]
    server_args: Vec<String>,
    /// Extra argument of `kubelab agent` on every node (repeatable).
    #[arg(long = "agent-arg", allow_hyphen_values = true, hide = true)]
    agent_args: Vec<String>,
}

/// "90s", "2m", "1h", "500ms", or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 90s, 2m, 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: use e.g. 90s, 2m, 500ms"
            ))
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let profile = match &args.profile {
        Some(path) => Some(Profile::load(path)?),
        None => None,
    };
    let name = args
        .name
        .clone()
        .or_else(|| profile.as_ref().and_then(|p| p.name.clone()))
        .unwrap_or_else(|| cluster::DEFAULT_NAME.to_owned());
    let servers = args
        .servers
        .or(profile.as_ref().map(|p| p.servers))
        .unwrap_or(1);
    let nodes = args
        .nodes
        .or(profile.as_ref().map(|p| p.servers + p.agents))
        .unwrap_or(1);
    if nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    if servers > nodes {
        anyhow::bail!("--servers ({servers}) cannot exceed --nodes ({nodes})");
    }
    let wait = match (args.wait, profile.as_ref().and_then(|p| p.wait.clone())) {
        (Some(w), _) => w,
        (None, Some(text)) => parse_duration(&text).map_err(anyhow::Error::msg)?,
        (None, None) => Duration::from_secs(120),
    };
    let mut ports = match &profile {
        Some(p) => p.port_specs()?,
        None => vec![],
    };
    for p in &args.ports {
        ports.push(PortSpec::parse(p)?);
    }
    let mut server_args = profile
        .as_ref()
        .map(Profile::server_args)
        .unwrap_or_default();
    server_args.extend(args.server_args.iter().cloned());
    let (update_kubeconfig, switch) = match &profile {
        Some(p) => (p.kubeconfig.update, p.kubeconfig.switch_context),
        None => (true, true),
    };
    let overrides = profile
        .as_ref()
        .map(|p| p.addons.clone())
        .unwrap_or_default();
    let mut facts = addons::ClusterFacts::new(&name, nodes as usize);
    if let Some(p) = &profile {
        if let Some(s) = &p.networking.pod_subnet {
            facts.pod_subnet = s.clone();
        }
        if let Some(s) = &p.networking.service_subnet {
            facts.service_subnet = s.clone();
        }
    }
    let addons = addons::enabled(&overrides)?;
    for addon in &addons {
        // Fails now, before any container exists, if a manifest cannot render.
        addons::render(addon, &facts.clone().with_network("10.0.0.0/24"))?;
    }
    let docker = DockerProvider::connect().await?;
    let steps = Steps::new();
    let image = match args
        .image
        .or_else(|| profile.as_ref().and_then(|p| p.image.clone()))
    {
        Some(image) => {
            if docker.image_id(&image).await?.is_none() {
                return Err(kubelab_cluster::Error::ImageMissing {
                    image: image.clone(),
                    reason: "the engine does not have it; build it with `kubelab node-image build --image IMAGE` or `docker pull` it".into(),
                }
                .into());
            }
            image
        }
        None => ensure_default_image(&docker, &steps).await?,
    };
    let spec = CreateSpec {
        name,
        servers,
        agents: nodes - servers,
        image,
        api_port: args.api_port.or(profile.as_ref().and_then(|p| p.api_port)),
        ports,
        mounts: profile
            .as_ref()
            .map(Profile::bind_mounts)
            .unwrap_or_default(),
        server_args,
        agent_args: args.agent_args,
        wait,
        retain: args.retain,
        kubeconfig: (update_kubeconfig && !args.no_kubeconfig).then(|| {
            (
                kubeconfig::default_path(),
                switch && !args.no_switch_context,
            )
        }),
        addons,
        facts,
    };
    let created = create::create(&docker, &spec, &steps).await?;
    println!(
        "cluster {} is up in {:.1}s: {} node{}, API at {}{}",
        created.name,
        created.elapsed.as_secs_f64(),
        created.nodes.len(),
        if created.nodes.len() == 1 { "" } else { "s" },
        created.api_url,
        match &created.kubeconfig {
            Some(path) => format!(
                "; kubectl context {} in {}",
                kubeconfig::entry_name(&created.name),
                path.display()
            ),
            None => String::new(),
        }
    );
    Ok(())
}

/// The default image, built when missing or made from another kubelab binary.
pub async fn ensure_default_image(
    docker: &DockerProvider,
    steps: &Steps,
) -> anyhow::Result<String> {
    use kubelab_cluster::create::Progress;
    let image = node_image::default_image();
    let binary = std::env::current_exe().context("cannot find the kubelab binary")?;
    let labels = docker.image_labels(&image).await?;
    let hash = node_image::binary_sha256(&binary)?;
    let current = labels
        .as_ref()
        .and_then(|l| l.get(node_image::BINARY_LABEL))
        .is_some_and(|h| *h == hash);
    if current {
        return Ok(image);
    }
    let step = steps.begin(&format!(
        "Building node image {image} ({})",
        if labels.is_some() {
            "this kubelab binary is newer"
        } else {
            "missing"
        }
    ));
    let options = node_image::BuildOptions {
        image: image.clone(),
        binary,
        rebuild_base: false,
        offline: false,
        mirror: None,
    };
    let quiet = |_: &str| {};
    match node_image::build(docker, &options, &quiet).await {
        Ok(report) => {
            step.succeed(&format!("{:.0} MB", report.size_bytes as f64 / 1e6));
            Ok(image)
        }
        Err(e) => {
            step.fail(&e);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5x").is_err());
    }
}
