//! `kubelab`: one multi-call binary. Host verbs manage clusters; node verbs (`server`, `agent`)
//! run the control plane and node agents.

mod addons;
mod agent;
mod client;
mod controller_manager;
mod dns;
mod down;
mod export;
mod ingress;
mod kubeconfig;
mod list;
mod load;
mod metallb;
mod node;
mod node_image;
mod node_init;
mod progress;
mod secrets;
mod server;
mod status;
mod stop;
mod up;

use clap::{Parser, Subcommand};

/// jemalloc: a long-running server with many threads keeps far less memory than with glibc's
/// per-thread arenas (measured by `cargo bench --bench scheduler`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The node agent's allocator settings, for the calling thread (and with `first`, for the
/// arena): every agent thread allocates from arena 0 without a thread cache, and that arena
/// returns freed pages after 1 s instead of 10. A node agent is small and mostly idle; one
/// arena instead of four per core, and no per-thread caches, keep its heap about 1 MiB smaller
/// (`cargo bench --bench kubelet`). The server and the other verbs keep jemalloc's defaults.
fn agent_allocator(first: bool) {
    fn set<T>(name: &std::ffi::CStr, mut value: T) {
        // SAFETY: `name` is NUL-terminated, and `value` has the type jemalloc documents for
        // it (unsigned for thread.arena, bool for thread.tcache.enabled, ssize_t for
        // arena.<i>.dirty_decay_ms); jemalloc only reads `size_of::<T>()` bytes of it.
        let _ = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                (&mut value as *mut T).cast(),
                std::mem::size_of::<T>(),
            )
        };
    }
    set(c"thread.arena", 0u32);
    set(c"thread.tcache.enabled", false);
    if first {
        set(c"arena.0.dirty_decay_ms", 1000isize);
    }
}

#[derive(Parser)]
#[command(
    name = "kubelab",
    version,
    about = "Dev Kubernetes clusters with a Rust control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane node: the API server on an embedded SQLite store.
    Server(server::ServerArgs),
    /// Run the controllers out of process (leader-elected with any other candidate).
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Run a node agent: a kubelet over containerd's CRI that joins a server (--fake: simulated).
    Agent(agent::AgentArgs),
    /// Entrypoint of node containers: prepare the container, then supervise containerd and
    /// the server or agent.
    NodeInit(node_init::NodeInitArgs),
    /// Build the node image.
    NodeImage(node_image::NodeImageArgs),
    /// Create a cluster of container nodes and merge its kubeconfig.
    Up(up::UpArgs),
    /// Remove a cluster (containers, volumes, network, kubeconfig entries).
    Down(down::DownArgs),
    /// List the clusters.
    List(list::ListArgs),
    /// Show a cluster's nodes, API endpoint and health.
    Status(status::StatusArgs),
    /// Load images into every node of a cluster.
    Load(load::LoadArgs),
    /// Add or remove a node of a cluster.
    Node(node::NodeArgs),
    /// Stop a cluster's nodes (their state is kept).
    Stop(stop::StopArgs),
    /// Start a stopped cluster.
    Start(stop::StartArgs),
    /// Export a cluster's logs.
    Export(export::ExportArgs),
    /// Print, merge or write a cluster's admin kubeconfig.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// List, enable or disable a cluster's addons.
    Addons(addons::AddonsArgs),
    /// Run the cluster DNS server (the `coredns` addon's pods run it).
    Dns(dns::DnsArgs),
    /// Encryption at rest of Secrets: status, key rotation, re-encryption.
    Secrets(secrets::SecretsArgs),
    /// Run MetalLB's controller or layer-2 speaker (the `metallb` addon's pods run them).
    Metallb(metallb::MetallbArgs),
    /// Run the ingress controller (the `ingress` addon's pods run it).
    Ingress(ingress::IngressArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Host verbs print their own progress: only warnings from the libraries (the API client
    // logs every refused connection while a cluster starts).
    let default_filter = match cli.command {
        Command::Up(_)
        | Command::Down(_)
        | Command::List(_)
        | Command::Status(_)
        | Command::Load(_)
        | Command::Node(_)
        | Command::Stop(_)
        | Command::Start(_)
        | Command::Export(_)
        | Command::Kubeconfig(_)
        | Command::Addons(_)
        | Command::Secrets(_) => "warn,kube_client=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    // The node entrypoint is PID 1 and takes signals on its main thread: no runtime threads.
    let cli = match cli.command {
        Command::NodeInit(args) => return exit_code(node_init::run(args)),
        command => Cli { command },
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Agent(_)) {
        agent_allocator(true);
        builder.on_thread_start(|| agent_allocator(false));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::ControllerManager(args) => controller_manager::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::NodeImage(args) => node_image::run(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Down(args) => down::run(args).await,
            Command::List(args) => list::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Node(args) => node::run(args).await,
            Command::Stop(args) => stop::stop(args).await,
            Command::Start(args) => stop::start(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Kubeconfig(args) => kubeconfig::run(args).await,
            Command::Addons(args) => addons::run(args).await,
            Command::Dns(args) => dns::run(args).await,
            Command::Secrets(args) => secrets::run(args).await,
            Command::Metallb(args) => metallb::run(args).await,
            Command::Ingress(args) => ingress::run(args).await,
            Command::NodeInit(_) => unreachable!("node-init runs without the runtime"),
        }
    });
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
