//! `kubelab secrets status|rotate|reencrypt`: encryption at rest of a cluster's Secrets, run
//! k3s-style by the API server itself (`/v1-kubelab/encryption/...`): the server owns the
//! configuration file and the store, so a rotation survives this command being interrupted,
//! and running it again finishes an interrupted one.

use std::path::PathBuf;

use anyhow::Context;
use kubelab_cluster::cluster;
use kubelab_cluster::provider::DockerProvider;
use serde_json::Value;

#[derive(clap::Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
    /// Cluster name (a `kubelab up` cluster).
    #[arg(long, global = true, default_value = cluster::DEFAULT_NAME)]
    name: String,
    /// Talk to the server of this admin kubeconfig instead (e.g. a `kubelab server`'s
    /// `<data-dir>/admin.kubeconfig`).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum SecretsCommand {
    /// Whether Secrets are encrypted, with which keys, and where a rotation stands.
    Status {
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a new key the write key, re-encrypt every Secret with it, then drop the old keys.
    /// Safe to interrupt: running it again finishes an unfinished rotation.
    Rotate {
        /// Re-encryptions per second (0: as fast as the store writes).
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
    /// Re-encrypt every Secret with the current write key (after editing the file).
    Reencrypt {
        /// Re-encryptions per second (0: as fast as the store writes).
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
}

async fn client(args: &SecretsArgs) -> anyhow::Result<kube::Client> {
    if let Some(path) = &args.kubeconfig {
        return crate::client::from_kubeconfig(path).await;
    }
    let docker = DockerProvider::connect().await?;
    let state = cluster::require(&docker, &args.name).await?;
    let entry = cluster::admin_entry(&docker, &state).await?;
    Ok(cluster::client(&entry).await?)
}

async fn call(client: &kube::Client, method: http::Method, path: &str) -> anyhow::Result<Value> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .context("cannot build the request")?;
    let text = client.request_text(request).await.map_err(|e| match e {
        kube::Error::Api(status) => anyhow::anyhow!("{}", status.message),
        other => anyhow::anyhow!(other),
    })?;
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

pub async fn run(args: SecretsArgs) -> anyhow::Result<()> {
    let client = client(&args).await?;
    match args.command {
        SecretsCommand::Status { json } => {
            let status = call(&client, http::Method::GET, "/v1-kubelab/encryption/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            let s = |k: &str| status[k].as_str().unwrap_or("").to_owned();
            println!("Encryption Status: {}", s("encryptionStatus"));
            println!("Current Rotation Stage: {}", s("stage"));
            println!(
                "Configuration: {} (sha256 {})",
                s("configPath"),
                s("configHash")
            );
            if let Some(error) = status["reloadError"].as_str() {
                println!("Configuration on disk NOT in force: {error}");
            }
            println!("Active Key Type Names:");
            for (i, key) in status["keys"].as_array().into_iter().flatten().enumerate() {
                let key = key.as_str().unwrap_or("");
                let (provider, name) = key.split_once(':').unwrap_or((key, ""));
                let writes = if i == 0 { " (writes)" } else { "" };
                println!("  {:<10} {name}{writes}", provider.to_uppercase());
            }
            let by_key: Vec<String> = status["secretsByKey"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            println!(
                "Secrets: {} ({}); not under the write key: {}",
                status["secrets"],
                by_key.join(", "),
                status["pending"]
            );
        }
        SecretsCommand::Rotate { rate } => {
            let report = call(
                &client,
                http::Method::POST,
                &format!("/v1-kubelab/encryption/rotate?rate={rate}"),
            )
            .await?;
            match report["newKey"].as_str() {
                Some(key) => println!("new write key: {key}"),
                None => println!("finished an interrupted rotation"),
            }
            println!(
                "re-encrypted: {}; dropped keys: {}",
                report["reencrypted"], report["droppedKeys"]
            );
        }
        SecretsCommand::Reencrypt { rate } => {
            let report = call(
                &client,
                http::Method::POST,
                &format!("/v1-kubelab/encryption/reencrypt?rate={rate}"),
            )
            .await?;
            println!("re-encrypted: {}", report["reencrypted"]);
        }
    }
    Ok(())
}
