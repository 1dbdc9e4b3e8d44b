//! Code layout of release builds. The functions the node agent runs, listed in
//! `src/agent.order` (made by `benches/agent-order.sh`; mangled names with their per-build
//! parts written as wildcards: `Cs*_` crate disambiguators, `17h*E` legacy hashes), are linked next to each other in a `.text.agent` section ahead of
//! `.text`, so the agent maps a few MiB of the multi-call binary instead of 64 KiB
//! fault-around windows scattered over all of it. It is a linker-script fragment
//! (`INSERT BEFORE .text`) for LLD, the linker rustc uses on x86_64 Linux since 1.90. With
//! another target or linker, or with `KUBELAB_NO_LAYOUT` set, the binary is linked as usual:
//! same code, more agent memory. Names no longer in the build match nothing and cost nothing.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/agent.order");
    println!("cargo:rerun-if-env-changed=KUBELAB_NO_LAYOUT");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if !release || std::env::var_os("KUBELAB_NO_LAYOUT").is_some() || !rustc_links_with_lld() {
        return;
    }
    let (Ok(dir), Ok(out)) = (
        std::env::var("CARGO_MANIFEST_DIR"),
        std::env::var("OUT_DIR"),
    ) else {
        return;
    };
    let Ok(order) = std::fs::read_to_string(Path::new(&dir).join("src/agent.order")) else {
        return;
    };
    // Only characters of mangled names and the `*` wildcard: anything else would be read as
    // linker-script syntax.
    let names = order.lines().map(str::trim).filter(|l| {
        !l.is_empty()
            && !l.starts_with('#')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c))
    });
    let mut script = String::from("SECTIONS {\n  .text.agent : {\n");
    for name in names {
        // ThinLTO gives promoted local functions a `.llvm.<hash>` suffix that changes often;
        // LLVM puts #[cold] functions in `.text.unlikely.` sections.
        let _ = writeln!(
            script,
            "    *(.text.{name} .text.{name}.llvm.* .text.unlikely.{name} .text.unlikely.{name}.llvm.*)"
        );
    }
    script.push_str("  }\n} INSERT BEFORE .text;\n");
    let path = Path::new(&out).join("agent-layout.ld");
    if std::fs::write(&path, script).is_ok() {
        println!("cargo:rustc-link-arg-bin=kubelab=-Wl,-T,{}", path.display());
    }
}

/// Whether rustc links this target with its bundled LLD: x86_64-unknown-linux-gnu from
/// rustc 1.90 on, unless the flags choose the linker.
fn rustc_links_with_lld() -> bool {
    if std::env::var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu") {
        return false;
    }
    if std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link")) {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("release: ").map(str::to_owned));
    let mut parts = version.as_deref().unwrap_or("").split('.');
    let (major, minor) = (
        parts.next(),
        parts.next().and_then(|m| m.parse::<u32>().ok()),
    );
    major == Some("1") && minor.is_some_and(|m| m >= 90)
}
