//! Golden test against real kubectl: every `tests/fixtures/<name>.pb` is a body kubectl 1.32
//! sent (protobuf), and `<name>.json` is the body kubectl 1.31 sent for the same command (JSON).
//! Decoding the first must give the second. See tests/fixtures/README.md for how they were made.

use std::path::Path;

#[test]
fn kubectl_protobuf_bodies_decode_to_the_json_kubectl_sends() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("pb") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let decoded = kubelab_protobuf::decode(&body)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        if decoded != expected {
            failures.push(format!(
                "{}:\n  decoded:  {decoded}\n  expected: {expected}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
