#!/usr/bin/env python3
"""Count seqlayers' public items from rustdoc's JSON output.

Usage (needs a nightly toolchain for rustdoc's JSON backend):
    cargo +nightly rustdoc --lib -- -Z unstable-options --output-format json
    python3 scripts/public_api_count.py target/doc/seqlayers.json

Counts what a user can name: items rustdoc documents (it strips private and
unreachable ones), grouped by kind, plus the paths under which each type is
reachable (a type re-exported at two paths is counted once, and listed).
"""
import json
import sys
from collections import Counter


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    root = index[str(doc["root"])]
    kinds = Counter()
    methods = 0
    fields = 0
    for item in index.values():
        if item.get("crate_id") != 0 or item.get("visibility") != "public":
            continue
        inner = item["inner"]
        kind = next(iter(inner)) if isinstance(inner, dict) else inner
        if kind == "function" and item["id"] not in top_fns(index):
            methods += 1
            continue
        if kind == "struct_field":
            fields += 1
            continue
        kinds[kind] += 1
    # Paths: every path rustdoc knows for a local item.
    paths = Counter()
    for p in doc["paths"].values():
        if p["crate_id"] == 0:
            paths[p["kind"]] += 1
    top = {k: v for k, v in kinds.items() if k not in ("impl", "variant", "use", "assoc_const", "assoc_type")}
    print(f"crate {root['name']}: {sum(top.values())} named items, {methods} pub methods, {fields} pub fields")
    for k, v in sorted(top.items(), key=lambda kv: -kv[1]):
        print(f"  {k:>12}: {v}")
    print(f"  {'re-exports':>12}: {kinds.get('use', 0)}")
    reach = reachable_paths(index, doc["root"])
    many = {i: ps for i, ps in reach.items() if len(ps) > 1}
    print(f"{len(reach)} items reachable from the crate root; {len(many)} of them by more than one path")
    for ps in sorted(many.values()):
        print("  " + " = ".join(sorted(ps)))


def reachable_paths(index, root):
    """Every path under which a local item is reachable through public modules."""
    paths = {}

    def walk(module_id, prefix, seen):
        module = index[str(module_id)]
        for child in module["inner"]["module"]["items"]:
            item = index.get(str(child))
            if item is None or item.get("crate_id") != 0:
                continue
            inner = item["inner"]
            kind = next(iter(inner))
            if kind == "use":
                use = inner["use"]
                target = use.get("id")
                if target is None or str(target) not in index:
                    continue
                name = use["name"]
                if use.get("is_glob"):
                    continue
                target_item = index[str(target)]
                if "module" in target_item["inner"]:
                    if target not in seen:
                        walk(target, f"{prefix}::{name}", seen | {target})
                    continue
                paths.setdefault(target, set()).add(f"{prefix}::{name}")
            elif kind == "module":
                if child not in seen:
                    walk(child, f"{prefix}::{item['name']}", seen | {child})
            elif item.get("name") and kind not in ("impl",):
                paths.setdefault(child, set()).add(f"{prefix}::{item['name']}")

    walk(root, index[str(root)]["name"], {root})
    return paths


_TOP = None


def top_fns(index):
    """Ids of free functions: those listed directly in a module."""
    global _TOP
    if _TOP is None:
        _TOP = set()
        for item in index.values():
            inner = item.get("inner")
            if isinstance(inner, dict) and "module" in inner:
                for child in inner["module"]["items"]:
                    c = index.get(str(child))
                    if c and isinstance(c["inner"], dict) and "function" in c["inner"]:
                        _TOP.add(c["id"])
    return _TOP


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/doc/seqlayers.json")
