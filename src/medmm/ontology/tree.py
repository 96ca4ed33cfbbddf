"""A rooted tree of code strings for one coding system (ICD-9-CM diagnoses, ATC, ...).

The G-BERT / MedM-PLM code embedding (paper-notes, MedM-PLM Eq. 1-2) runs a graph-attention pass
over each vocabulary's ontology: non-leaf nodes attend over their children, each leaf attends
over its ancestors. `CodeTree` is that ontology as plain data: a child -> parent dict under one
synthetic root ``"ROOT"``. `subtree(codes)` keeps only the codes of a vocabulary plus their
ancestors, which is the graph a model is built on; `to_json` / `from_json` let the model config
store it so a checkpoint loads without the ontology files at hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

ROOT = "ROOT"


class CodeTree:
    """A rooted tree over the codes of one system.

    Args:
        system: name of the code system (used in error messages and the JSON form), e.g. "icd9_dx".
        parent: child -> parent. A parent of ``None`` or ``"ROOT"`` puts the code directly under
            the root; an entry ``"ROOT": None`` is allowed and ignored. Every parent must itself be
            a key (or the root), and the relation must be acyclic.
        names: optional code -> human-readable name.

    ``len(tree)`` and ``code in tree`` count the codes only; the root is not a code (but
    ``"ROOT" in tree`` is True so that ancestors can be looked up uniformly).
    """

    def __init__(self, system: str, parent: Mapping[str, str | None], names: Mapping[str, str] | None = None):
        self.system = system
        self._parent: dict[str, str] = {}
        for child, par in parent.items():
            if not isinstance(child, str) or not child:
                raise ValueError(f"{system}: code {child!r} is not a non-empty string")
            if child == ROOT:
                if par is not None:
                    raise ValueError(f"{system}: the root {ROOT!r} cannot have a parent (got {par!r})")
                continue
            self._parent[child] = ROOT if par is None else par
        for child, par in self._parent.items():
            if par != ROOT and par not in self._parent:
                raise ValueError(f"{system}: parent {par!r} of code {child!r} is not a code of the tree")
        self._depth: dict[str, int] = {ROOT: 0}
        for code in self._parent:
            self._compute_depth(code)
        self._children: dict[str, list[str]] = {ROOT: []}
        for child in sorted(self._parent):
            self._children.setdefault(child, [])
            self._children.setdefault(self._parent[child], []).append(child)
        self._names: dict[str, str] = dict(names) if names else {}

    def _compute_depth(self, code: str) -> int:
        # Iterative walk up to the first node of known depth; a revisited node means a cycle.
        path: list[str] = []
        seen: set[str] = set()
        node = code
        while node not in self._depth:
            if node in seen:
                raise ValueError(f"{self.system}: the parent relation has a cycle through {node!r}")
            seen.add(node)
            path.append(node)
            node = self._parent[node]
        d = self._depth[node]
        for n in reversed(path):
            d += 1
            self._depth[n] = d
        return self._depth[code]

    def _check(self, code: str) -> None:
        if code != ROOT and code not in self._parent:
            raise KeyError(f"{self.system}: unknown code {code!r}")

    # ---- queries -------------------------------------------------------------------------------

    def __contains__(self, code: object) -> bool:
        return code == ROOT or code in self._parent

    def __len__(self) -> int:
        return len(self._parent)

    def __iter__(self) -> Iterator[str]:
        """Codes (not the root) in sorted order."""
        return iter(sorted(self._parent))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodeTree) and self.system == other.system and self._parent == other._parent

    def __repr__(self) -> str:
        return f"CodeTree(system={self.system!r}, codes={len(self)}, leaves={len(self.leaves())})"

    def parent(self, code: str) -> str | None:
        """The parent of `code` (``"ROOT"`` for top-level codes, ``None`` for the root)."""
        self._check(code)
        return self._parent.get(code)

    def ancestors(self, code: str) -> list[str]:
        """Ancestors of `code`, parent first and ``"ROOT"`` last; `code` itself excluded."""
        self._check(code)
        out: list[str] = []
        node = code
        while node != ROOT:
            node = self._parent[node]
            out.append(node)
        return out

    def depth(self, code: str) -> int:
        """Number of edges from the root (root = 0)."""
        self._check(code)
        return self._depth[code]

    def children(self, code: str) -> list[str]:
        """Direct children of `code`, sorted."""
        self._check(code)
        return list(self._children.get(code, []))

    def leaves(self) -> list[str]:
        """Codes without children, sorted."""
        return sorted(c for c in self._parent if not self._children.get(c))

    def codes(self) -> list[str]:
        """All codes (not the root), sorted."""
        return sorted(self._parent)

    def edges(self) -> list[tuple[str, str]]:
        """(child, parent) pairs, root edges included, sorted by child."""
        return [(c, self._parent[c]) for c in sorted(self._parent)]

    def name(self, code: str) -> str:
        """Human-readable name of `code`; the code itself when the source gives no name."""
        self._check(code)
        return self._names.get(code, code)

    # ---- derived trees and serialisation -------------------------------------------------------

    def subtree(self, codes: Iterable[str]) -> CodeTree:
        """The tree restricted to `codes` plus all their ancestors (names carried over)."""
        keep: dict[str, str] = {}
        for code in codes:
            self._check(code)
            node = code
            while node != ROOT and node not in keep:
                keep[node] = self._parent[node]
                node = self._parent[node]
        names = {c: self._names[c] for c in keep if c in self._names}
        return CodeTree(self.system, keep, names)

    def to_json(self, with_names: bool = False) -> dict[str, Any]:
        """A JSON-ready dict: ``{"system", "parent": {child: parent}}`` (+ ``"names"`` if asked).

        Top-level codes have parent ``"ROOT"``.
        """
        out: dict[str, Any] = {"system": self.system, "parent": {c: self._parent[c] for c in sorted(self._parent)}}
        if with_names:
            out["names"] = {c: self._names[c] for c in sorted(self._names) if c in self._parent}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CodeTree:
        """Inverse of `to_json`."""
        if not isinstance(data, Mapping) or "system" not in data or "parent" not in data:
            raise ValueError("CodeTree.from_json expects a dict with keys 'system' and 'parent'")
        return cls(str(data["system"]), dict(data["parent"]), data.get("names"))
