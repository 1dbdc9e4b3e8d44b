//! Rough throughput figures for the SQLite store: creates from 16 concurrent tasks (group commit,
//! each acknowledged write durable), then LIST of every key, then RSS.
//!
//! `cargo run --release -p kubelab-store --example store_bench -- [creates] [value bytes] [dir]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubelab_store::{SqliteOptions, SqliteStore, Store};

const TASKS: usize = 16;

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let creates: usize = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(10_000);
    let value_bytes: usize = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(1024);
    let dir = tempfile::tempdir_in(args.next().unwrap_or_else(|| ".".into()))?;
    let path = dir.path().join("state.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default())?);

    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (task..creates).step_by(TASKS) {
                    let key = format!("/registry/configmaps/bench/object-{i:06}");
                    let begun = Instant::now();
                    store.create(&key, vec![b'x'; value_bytes]).await?;
                    latencies.push(begun.elapsed());
                }
                Ok::<_, kubelab_store::Error>(latencies)
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{creates} creates of {value_bytes} B from {TASKS} tasks: {:.0} creates/s, p50 {:?}, p99 {:?}, max {:?}",
        creates as f64 / elapsed.as_secs_f64(),
        percentile(0.50),
        percentile(0.99),
        latencies[latencies.len() - 1],
    );

    let start = Instant::now();
    let listed = store.list("/registry/configmaps/", None, 0).await?;
    println!("list of {} keys: {:?}", listed.items.len(), start.elapsed());
    drop(listed);

    let start = Instant::now();
    let page = store.list("/registry/configmaps/", None, 500).await?;
    println!(
        "list page of {} keys: {:?}",
        page.items.len(),
        start.elapsed()
    );

    if let Some(rss) = rss_kib() {
        println!("rss: {} MiB", rss / 1024);
    }
    drop(store);
    let start = Instant::now();
    let store = SqliteStore::open(&path, SqliteOptions::default())?;
    println!(
        "reopen with {} keys: {:?}",
        store.count("").await?,
        start.elapsed()
    );
    Ok(())
}
