//! `kubelab node-init`: the entrypoint of node containers (see kubelab_cluster::node_init). It
//! runs before the async runtime exists: as PID 1 it takes every signal on its main thread.

use std::net::Ipv4Addr;

use anyhow::Context;
use kubelab_cluster::provider::Role;

#[derive(clap::Args)]
pub struct NodeInitArgs {
    /// `server` (runs `kubelab server` and an agent) or `agent`.
    #[arg(long)]
    role: String,
    /// The node's name (the container's host name by default).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's address on the cluster network.
    #[arg(long)]
    node_ip: Ipv4Addr,
    /// The API server agents join (agent nodes).
    #[arg(long)]
    server: Option<String>,
    /// The join token (agent nodes).
    #[arg(long, env = "KUBELAB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// An extra argument of `kubelab server` (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// An extra argument of `kubelab agent` (repeatable).
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    agent_args: Vec<String>,
    /// Do not run an agent on a server node.
    #[arg(long)]
    no_agent: bool,
}

pub fn run(args: NodeInitArgs) -> anyhow::Result<()> {
    let role = Role::parse(&args.role)
        .with_context(|| format!("invalid --role {:?}: use server or agent", args.role))?;
    if role == Role::Agent && (args.server.is_none() || args.token.is_none()) {
        anyhow::bail!("an agent node needs --server and --token (or KUBELAB_TOKEN)");
    }
    let node_name = match args.node_name {
        Some(n) => n,
        None => hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .context("cannot read the host name; pass --node-name")?,
    };
    let kubelab = std::env::current_exe().context("cannot find the kubelab binary")?;
    kubelab_cluster::node_init::run(kubelab_cluster::node_init::NodeInitConfig {
        role,
        node_name,
        node_ip: args.node_ip,
        server_url: args.server,
        token: args.token,
        server_args: args.server_args,
        agent_args: args.agent_args,
        server_runs_agent: !args.no_agent,
        kubelab,
    })?;
    Ok(())
}
