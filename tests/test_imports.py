"""common's modules import each other without cycles (function-level imports included)."""

import ast
from pathlib import Path

COMMON = Path(__file__).resolve().parents[1] / "common"


def graph() -> dict[str, set[str]]:
    names = {p.stem for p in COMMON.glob("*.py")}
    out = {}
    for p in COMMON.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "common":
                    deps |= {a.name for a in node.names if a.name in names}
                elif node.module.startswith("common."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("common.")}
        out[p.stem] = deps - {p.stem}
    return out


def cycles(g: dict[str, set[str]]) -> set[frozenset[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), set(), [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.add(frozenset(comp))

    for v in g:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_common_has_no_import_cycle():
    assert cycles(graph()) == set()
