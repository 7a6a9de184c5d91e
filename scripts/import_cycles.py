#!/usr/bin/env python3
"""File-level import cycles inside each crate of the workspace.

An edge A -> B when the code of file A (tests and comments aside) names an item that file B
defines: `use crate::x::Item`, `crate::x::f(..)`, `super::Item`, a child `x::Item`, or a
glob `use x::*` (an edge to that module's file). A re-export (`pub use`) is no edge, and a path through
one is followed to the file that defines the item, so a parent module that re-exports its
children is no cycle by itself.
Prints each cycle (a strongly connected component of more than one file) and exits 1 when
there is one.

    python3 scripts/import_cycles.py [crates]
"""
import os
import re
import sys

DEF = re.compile(
    r"(?m)^\s*(?:pub(?:\([\w: ]+\))?\s+)?(?:async\s+|unsafe\s+|const\s+)*"
    r"(?:fn|struct|enum|trait|type|const|static|macro_rules!)\s+(\w+)")


def code_of(text):
    """The file's code: tests, comments and re-exports (`pub use`, which declare the
    module's surface, not what its code depends on) left out."""
    cut = re.search(r"(?m)^#\[cfg\(test\)\]", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"(?ms)^\s*pub(?:\([\w: ]+\))?\s+use\s+[^;]*;", "", text)


def defs_of(text):
    """The items a file defines (its re-exports included, for following them)."""
    return set(DEF.findall(re.sub(r"//[^\n]*", "", text)))


def module_of(src, path):
    parts = os.path.relpath(path, src)[:-3].split(os.sep)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def crate_cycles(src):
    files = {}
    for d, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(d, n)
                files[module_of(src, p)] = p
    code = {m: code_of(open(p).read()) for m, p in files.items()}
    defs = {m: defs_of(open(p).read()) for m, p in files.items()}

    def definer(prefix, name):
        """The file defining `name` in module `prefix` or below it (re-exports followed)."""
        if prefix in defs and name in defs[prefix]:
            return prefix
        under = [m for m in defs if m[: len(prefix)] == prefix and name in defs[m]]
        return min(under, key=len) if under else None

    edges = {m: set() for m in files}
    for m, text in code.items():
        is_dir = files[m].endswith(("mod.rs", "lib.rs", "main.rs"))
        here = list(m) if is_dir else list(m[:-1])
        children = {c[-1] for c in files if len(c) == len(m) + 1 and c[: len(m)] == m}
        for stmt in re.findall(r"\b((?:crate|super|self|%s)::[\w:{}, *\n]+)" % "|".join(
                sorted(children) or ["__none__"]), text):
            head, _, rest = stmt.partition("::")
            base = list(here)
            if head == "crate":
                base = []
            elif head == "super":
                base = base[:-1]
                while rest.startswith("super::"):
                    base, rest = base[:-1], rest[len("super::"):]
            elif head != "self":
                base = base + [head]
            # expand one level of `{a, b::c}` groups
            group = re.match(r"([\w:]*?)\{([^}]*)\}", rest)
            paths = ([group.group(1) + p.strip() for p in group.group(2).split(",") if p.strip()]
                     if group else [rest])
            for p in paths:
                parts = [x for x in p.strip().split("::") if x]
                mods = list(base)
                while parts and tuple(mods + [parts[0]]) in files:
                    mods.append(parts.pop(0))
                target = None
                if not parts or parts[0] == "*":
                    target = tuple(mods)
                else:
                    target = definer(tuple(mods), parts[0])
                if target is not None and target != m and target in files:
                    edges[m].add(target)
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    sys.setrecursionlimit(10000)
    for v in sorted(files):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "crates"
    found = 0
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        if os.path.isdir(src):
            for c in crate_cycles(src):
                found += 1
                print(crate + ": " + " <-> ".join("::".join(x) or "lib" for x in c))
    print(f"{found} file-level import cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
