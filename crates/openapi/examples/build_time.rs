//! Measures `OpenApi::build()` and prints the size of each document; with a directory argument,
//! also writes the index and the documents there (`api__v1.json`, `apis__apps__v1.json`, ...).
//!
//! `cargo run --release -p kubelab-openapi --example build_time [-- DIR]`

use std::time::Instant;

use kubelab_openapi::OpenApi;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let openapi = OpenApi::build()?;
    let elapsed = start.elapsed();
    let out = std::env::args().nth(1).map(std::path::PathBuf::from);
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec_pretty(&openapi.index())?,
        )?;
    }
    let mut total = 0;
    for gv in openapi.group_versions() {
        let (bytes, hash) = openapi
            .document(gv)
            .ok_or("document listed but not served")?;
        total += bytes.len();
        println!("{gv:45} {:>9} bytes  hash {}…", bytes.len(), &hash[..12]);
        if let Some(dir) = &out {
            std::fs::write(dir.join(format!("{}.json", gv.replace('/', "__"))), bytes)?;
        }
    }
    println!(
        "{} documents, {total} bytes, built in {elapsed:?}",
        openapi.group_versions().count()
    );
    Ok(())
}
