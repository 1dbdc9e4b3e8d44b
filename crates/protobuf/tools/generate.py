#!/usr/bin/env python3
"""Generate crates/protobuf/src/generated.rs: JSON field tables for k8s-pb messages.

Inputs (facts only, nothing is copied into the output but names):
  * the k8s-pb crate source (prost structs: Rust field name + protobuf tag number),
  * the Go API types of kubernetes/api and kubernetes/apimachinery at the Kubernetes
    version k8s-pb was generated from (json tag, protobuf tag number, pointer-ness).

A Rust field is matched to its Go field by protobuf tag number, so the JSON name is the
Go `json:"..."` name exactly (volumeID, clusterIP, hostIPC ...), never a guess.

The emission mode of each field follows what encoding/json does with the Go field:
  opt      pointer, struct, or omitempty collection: emit when set
  omitzero non-pointer scalar with omitempty: emit when set and not zero
  req      no omitempty: emit when set; an empty list/map is emitted as null (a nil slice)
  nullable pointer without omitempty: emit when set, null when not
  inline   embedded struct with `json:",inline"`: its fields are merged into the parent

Usage:
  python3 tools/generate.py K8S_PB_SRC GO_API_DIR GO_APIMACHINERY_DIR > src/generated.rs
e.g. K8S_PB_SRC=~/.cargo/registry/src/index.crates.io-*/k8s-pb-0.9.0/src and the Go
checkouts at tag v0.35.0 (k8s-pb 0.9.0 was generated from Kubernetes 1.35.0).
"""

import os
import re
import sys

# Packages whose messages get a JSON table: every GA group-version plus meta/v1.
PACKAGES = [
    "api/admissionregistration/v1",
    "api/apps/v1",
    "api/authentication/v1",
    "api/authorization/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/batch/v1",
    "api/certificates/v1",
    "api/coordination/v1",
    "api/core/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/flowcontrol/v1",
    "api/networking/v1",
    "api/node/v1",
    "api/policy/v1",
    "api/rbac/v1",
    "api/resource/v1",
    "api/scheduling/v1",
    "api/storage/v1",
    "apimachinery/pkg/apis/meta/v1",
]

# Messages whose JSON form is not an object of their fields: hand-written in src/special.rs.
SPECIAL = {
    "apimachinery/pkg/apis/meta/v1": {"Time", "MicroTime", "Duration", "FieldsV1", "Verbs"},
}
# Go `type X []string` wrappers that protobuf encodes as `message X { repeated string items }`.
LIST_WRAPPERS = {"ExtraValue", "Verbs"}

SCALARS = {"string", "bool", "int", "int32", "int64", "uint32", "uint64", "float32", "float64", "byte"}


def parse_rust(path):
    """Return [(struct_name, [(rust_field, tag)])] in file order."""
    structs = []
    current = None
    pending_tag = None
    with open(path) as f:
        for line in f:
            s = line.strip()
            m = re.match(r"pub struct (\w+) \{", s)
            if m:
                current = (m.group(1), [])
                structs.append(current)
                continue
            if current is None:
                continue
            m = re.match(r'#\[prost\(.*tag = "(\d+)"', s)
            if m:
                pending_tag = int(m.group(1))
                continue
            m = re.match(r"pub ((?:r#)?\w+):", s)
            if m and pending_tag is not None:
                current[1].append((m.group(1), pending_tag))
                pending_tag = None
                continue
            if s == "}":
                current = None
    return structs


def go_files(directory):
    for name in sorted(os.listdir(directory)):
        if name.endswith(".go") and not name.endswith("_test.go") and "generated" not in name:
            yield os.path.join(directory, name)


def parse_go(directory):
    """Return (structs, named) where structs[name] = {tag: field} and named[name] = underlying."""
    structs = {}
    named = {}
    kinds = set()
    for path in go_files(directory):
        with open(path) as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"type (\w+) struct \{\s*$", line)
            if m:
                fields = {}
                i += 1
                depth = 1
                while i < len(lines) and depth > 0:
                    body = lines[i]
                    if re.match(r"^}", body):
                        depth -= 1
                        break
                    if re.match(r"\s*(metav1\.)?TypeMeta\s+`json:\",inline\"", body):
                        kinds.add(m.group(1))
                    parsed = parse_go_field(body)
                    if parsed:
                        fields[parsed["tag"]] = parsed
                    i += 1
                structs[m.group(1)] = fields
            else:
                m = re.match(r"type (\w+) (\S.*)$", line)
                if m and not m.group(2).startswith(("struct", "interface", "=")):
                    named[m.group(1)] = m.group(2).split("//")[0].strip()
            i += 1
    return structs, named, kinds


def group_name(directory):
    for path in go_files(directory):
        with open(path) as f:
            m = re.search(r'GroupName = "([^"]*)"', f.read())
        if m:
            return m.group(1)
    return None


def parse_go_field(line):
    s = line.strip()
    if s.startswith("//") or "`" not in s:
        return None
    decl, tags = s.split("`", 1)
    tags = tags.rsplit("`", 1)[0]
    pm = re.search(r'protobuf:"([^"]*)"', tags)
    jm = re.search(r'json:"([^"]*)"', tags)
    if not pm or not jm:
        return None
    pparts = pm.group(1).split(",")
    tag = int(pparts[1])
    jparts = jm.group(1).split(",")
    json_name = jparts[0]
    options = set(jparts[1:])
    words = decl.split()
    if len(words) == 1:  # embedded field
        go_type = words[0]
    else:
        go_type = " ".join(words[1:])
    return {
        "json": json_name,
        "inline": "inline" in options,
        "omitempty": "omitempty" in options or "omitzero" in options,
        "type": go_type,
        "tag": tag,
    }


def underlying(go_type, named):
    """Resolve a named type to its underlying type (`ResourceList` -> `map[...]...`,
    `types.UID` -> `string`). Qualified names are looked up by their bare name in `named`,
    which holds the named types of every package read."""
    seen = set()
    while go_type not in seen and re.fullmatch(r"(\w+\.)?\w+", go_type):
        seen.add(go_type)
        bare = go_type.rsplit(".", 1)[-1]
        if bare not in named:
            break
        go_type = named[bare]
    return go_type


def mode_of(field, named):
    if field["inline"] and field["json"] == "":
        return "inline"
    t = field["type"]
    if t.startswith("*"):
        return "opt" if field["omitempty"] else "nullable"
    base = underlying(t, named)
    if base.startswith("[]") or base.startswith("map["):
        if t in LIST_WRAPPERS:
            return "opt"
        return "opt" if field["omitempty"] else "req"
    if base in SCALARS:
        return "omitzero" if field["omitempty"] else "req"
    return "opt"  # a struct: encoding/json always writes it


def go_dir_of(package, go_api, go_machinery):
    if package.startswith("api/"):
        return os.path.join(go_api, package.removeprefix("api/"))
    return os.path.join(go_machinery, package.removeprefix("apimachinery/"))


def camel(rust_name):
    name = rust_name.removeprefix("r#")
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def main():
    pb_src, go_api, go_machinery = sys.argv[1:4]
    out = []
    kinds = []
    warnings = []
    named = {}
    for package in PACKAGES:
        named.update(parse_go(go_dir_of(package, go_api, go_machinery))[1])
    named.update(parse_go(os.path.join(go_machinery, "pkg/types"))[1])
    for package in PACKAGES:
        rust_path = os.path.join(pb_src, package, "mod.rs")
        go_dir = go_dir_of(package, go_api, go_machinery)
        go_structs, local_named, go_kinds = parse_go(go_dir)
        package_named = {**named, **local_named}
        group = group_name(go_dir)
        version = package.rsplit("/", 1)[1]
        api_version = f"{group}/{version}" if group else version
        by_lower = {name.lower(): name for name in go_structs}
        module = "::".join(package.split("/"))
        special = SPECIAL.get(package, set())
        out.append(f"\n// {package}")
        for name, fields in parse_rust(rust_path):
            if name in special:
                continue
            if name in LIST_WRAPPERS:
                out.append(f"list_wrapper!({module}::{name});")
                continue
            go_name = by_lower.get(name.lower())
            go_fields = go_structs.get(go_name, {}) if go_name else {}
            if not go_name:
                warnings.append(f"{package}: no Go struct for {name}; camelCase names")
            rows = []
            for rust_field, tag in fields:
                go_field = go_fields.get(tag)
                if go_field is None:
                    if go_name:
                        warnings.append(f"{package}: {name}.{rust_field} (tag {tag}) not in Go")
                    rows.append((rust_field, camel(rust_field), "opt"))
                else:
                    rows.append((rust_field, go_field["json"], mode_of(go_field, package_named)))
            if not rows:
                out.append(f"message!({module}::{name} {{}});")
                continue
            out.append(f"message!({module}::{name} {{")
            for rust_field, json, mode in rows:
                out.append(f'    {rust_field}: "{json}" {mode},')
            out.append("});")
            if go_name in go_kinds and group is not None:
                kinds.append(f'    "{api_version}" "{go_name}" => {module}::{name};')
    print("// @generated by tools/generate.py from k8s-pb 0.9.0 and the Kubernetes 1.35 Go API types.")
    print("// Each row: rust field: \"json name\" emission mode (see src/fields.rs).")
    print()
    print("use crate::fields::{list_wrapper, message};")
    print("use crate::kinds;")
    print("\n".join(out))
    print("\nkinds! {")
    print("\n".join(kinds))
    print("}")
    for w in warnings:
        print("warning:", w, file=sys.stderr)


if __name__ == "__main__":
    main()
