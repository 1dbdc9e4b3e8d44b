#!/bin/bash
# Regenerates src/agent.order, the functions the node agent runs, which build.rs links next
# to each other in release builds (see build.rs). Runs `cargo bench --bench kubelet` and, with
# --tests, the host agent tests (tests/kubelet.rs) with every `kubelab agent` under
# valgrind's callgrind, dumping its profile every 2 s, and keeps each function of the
# kubelab binary that ran at least once. Names are written with their build-specific parts
# as wildcards: v0 crate disambiguators (Cs*_), legacy hashes (17h*E), ThinLTO suffixes.
# Needs valgrind (Debian: valgrind), containerd and the CNI plugins (as the bench does).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "agent-order.sh: install valgrind (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d /tmp/kubelab-agent-order.XXXXXX)
trap 'kill "$dumper" 2>/dev/null || true' EXIT
# Profile a binary without the layout: valgrind does not see the function names of code
# moved into .text.agent. (Layout changes addresses only; the names are the same.)
KUBELAB_NO_LAYOUT=1 cargo bench --bench kubelet --no-run
bin=$PWD/target/release/kubelab
cat > "$work/kubelab" <<WRAP
#!/bin/sh
if [ "\$1" = agent ]; then
  exec valgrind --tool=callgrind --demangle=no --callgrind-out-file=$work/agent.%p "$bin" "\$@"
fi
exec "$bin" "\$@"
WRAP
chmod +x "$work/kubelab"
# The bench and tests kill the agent (SIGKILL) at the end, so callgrind never writes a final
# profile: ask for one every 2 s instead (each dump holds what ran since the previous one).
(while sleep 2; do callgrind_control -d >/dev/null 2>&1 || true; done) &
dumper=$!
KUBELAB_NO_LAYOUT=1 KUBELAB_BIN=$work/kubelab cargo bench --bench kubelet
if [ "${1:-}" = --tests ]; then
  KUBELAB_NO_LAYOUT=1 KUBELAB_BIN=$work/kubelab cargo test --release --test kubelet -- --test-threads=2 || \
    echo "agent-order.sh: some tests failed under valgrind; their functions still count" >&2
fi
kill "$dumper"
python3 - "$work" "$bin" > src/agent.order <<'PY'
import glob, re, subprocess, sys
# LLVM merges identical functions into aliases: callgrind names one of the symbols at an
# address, the linker places the section of another. Take every name at each address.
at, address = {}, {}
nm = subprocess.run(["nm", "--defined-only", sys.argv[2]], capture_output=True, text=True)
for line in nm.stdout.splitlines():
    fields = line.split()
    if len(fields) == 3 and fields[1] in "tTwW":
        at.setdefault(fields[0], []).append(fields[2])
        address[fields[2]] = fields[0]
names = set()
for path in glob.glob(sys.argv[1] + "/agent.*"):
    # Compressed names: "(id) name" the first time, "(id)" after; cfn/cob lines define too.
    objects, functions, current = {}, {}, ""
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, key, name = m.groups()
        table = objects if kind.endswith("ob") else functions
        if name:
            table[key] = name
        if kind == "ob":
            current = objects.get(key, "")
        elif kind == "fn" and current.endswith("/kubelab"):
            name = re.sub(r"'\d+$", "", functions.get(key, ""))
            for name in at.get(address.get(name), [name]):
                name = re.sub(r"\.llvm\.\d+$", "", name)
                name = re.sub(r"17h[0-9a-f]{16}E$", "17h*E", name)
                if name.startswith("_R"):
                    name = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name)
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.*]*", name):
                    names.add(name)
print("# Functions the node agent runs (benches/agent-order.sh); build.rs lays them out together.")
for name in sorted(names):
    print(name)
PY
echo "agent-order.sh: $(grep -vc '^#' src/agent.order) functions in src/agent.order" >&2
