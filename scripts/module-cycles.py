#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a ring.

Usage: scripts/module-cycles.py CRATE_SRC_DIR...

Reads every path a module names — `use` trees (nested braces, `as`
renames) and paths written inline — starting at `crate::`, `super::` or
`self::` (outside comments and `#[cfg(test)] mod tests`). A path is
resolved to the module that defines what it names: through re-exports too
(`pub use a::Backend;` in lib.rs makes `crate::Backend` an edge to `a`), so
a ring hidden behind names re-exported from lib.rs or a mod.rs is found.
Edges from a module to its own ancestors are ignored (a parent re-exporting
its children is not a ring). Reports every strongly connected set of two or
more modules; exit 1 if there is one.
"""
import glob
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_DEF = r"\b(?:struct|enum|trait|fn|type|const|static|union|mod|macro_rules!)\s+{}\b"


def strip(text):
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # String literals could hold anything path-like.
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def use_tree(tree):
    """Expands a use tree (`a::{b, c::{d as e}}`) into (path, alias) pairs."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        name, _, alias = tree.partition(" as ")
        segs = [s for s in name.strip().split("::") if s]
        return [(segs, alias.strip() or (segs[-1] if segs else ""))]
    prefix = [s for s in tree[:brace].split("::") if s]
    close = tree.rfind("}")
    if close < brace:
        return []  # not a use tree (text the stripping left behind)
    inner = tree[brace + 1 : close]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    out = []
    for part in parts:
        if part.strip():
            for segs, alias in use_tree(part):
                segs = prefix + segs if segs != ["self"] else prefix
                out.append((segs, alias if alias != "self" else prefix[-1]))
    return out


class Crate:
    def __init__(self, root):
        self.files = {}
        for path in glob.glob("**/*.rs", root_dir=root, recursive=True):
            mod = path[:-3]
            mod = re.sub(r"(^|/)mod$", "", mod)
            mod = "" if mod in ("lib", "main") else mod.replace("/", "::")
            with open(os.path.join(root, path)) as f:
                self.files[mod] = strip(f.read())
        self.uses = {m: self.parse_uses(m, t) for m, t in self.files.items()}
        # (module, name) -> absolute path, for names a module re-exports.
        self.exports = {}
        for mod, uses in self.uses.items():
            for public, segs, alias in uses:
                if public and segs:
                    self.exports[(mod, alias)] = segs

    def absolute(self, mod, segs):
        """A path as written in `mod`, from the crate root; None if external."""
        here = mod.split("::") if mod else []
        if not segs:
            return None
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] in ("self", "super"):
            while segs and segs[0] in ("self", "super"):
                if segs[0] == "super":
                    here = here[:-1]
                segs = segs[1:]
            return here + segs
        # A bare path in a `use`: a child module of this one, else external.
        child = "::".join(here + [segs[0]])
        return here + segs if child in self.files else None

    def parse_uses(self, mod, text):
        found = []
        for m in re.finditer(r"(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
            public = bool(m.group(1))
            for segs, alias in use_tree(m.group(2)):
                path = self.absolute(mod, segs)
                if path is not None:
                    found.append((public, path, alias))
        return found

    def resolve(self, segs, seen=None):
        """The module defining what the absolute path `segs` names."""
        seen = seen or set()
        mod = ""
        for i, seg in enumerate(segs):
            child = f"{mod}::{seg}" if mod else seg
            if child in self.files:
                mod = child
                continue
            key = (mod, seg)
            if key in self.exports and key not in seen:
                seen.add(key)
                return self.resolve(self.exports[key] + segs[i + 1 :], seen)
            for (owner, alias), target in self.exports.items():
                if owner == mod and alias == "*" and (owner, "*", tuple(target)) not in seen:
                    glob_mod = self.resolve(target, seen | {(owner, "*", tuple(target))})
                    if glob_mod is not None and re.search(
                        ITEM_DEF.format(re.escape(seg)), self.files.get(glob_mod, "")
                    ):
                        return glob_mod
            break
        return mod

    def edges(self, mod):
        text = self.files[mod]
        paths = [segs for _, segs, _ in self.uses[mod]]
        inline = re.sub(r"use\s+[^;]+;", "", text)
        for m in re.finditer(rf"\b((?:crate|super|self)(?:::{IDENT})+)", inline):
            path = self.absolute(mod, m.group(1).split("::"))
            if path is not None:
                paths.append(path)
        deps = set()
        for segs in paths:
            target = self.resolve(segs)
            if target and target != mod and not mod.startswith(target + "::"):
                deps.add(target)
        return deps


def rings(graph):
    """Tarjan's strongly connected components of two or more nodes."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def check(root):
    crate = Crate(root)
    graph = {m: crate.edges(m) for m in crate.files if m}
    return rings(graph)


def main(roots):
    bad = False
    for root in [os.path.abspath(r) for r in roots]:
        for ring in check(root):
            bad = True
            print(f"{root}: modules import each other in a ring: {' -> '.join(ring)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
