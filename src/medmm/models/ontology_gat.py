"""G-BERT ontology embedding of medical codes (MedM-PLM Eq. 1-2; Shang et al., G-BERT, 2019).

Every code of a vocabulary is a leaf of its ontology tree (ICD-9-CM: code -> category -> chapter
range -> ROOT; ATC-3: level 3 -> level 2 -> level 1 -> ROOT). A matrix M holds one learned
vector per tree node (codes and all their ancestors). Two graph-attention passes then give each
code its embedding:

* Eq. 1, stage one: `e_nl = GAT(A_{parent<-child}, M)`. Each node attends over itself and its
  direct children ({c} u ch(c), G-BERT's g(c, ch(c), M)); one pass over the whole tree, so every
  parent aggregates its children's *initial* vectors. A leaf has only its self loop.
* Eq. 2, stage two: `e_c = GAT(A_{leaf<-ancestors}, e_nl)`. Each code attends over itself and all
  its ancestors ({c} u pa(c), G-BERT's g(c, pa(c), .)) using the stage-one vectors.

Edges follow PyG's convention: `edge_index[0]` is the source (message sender), `edge_index[1]`
the target; GATConv normalises attention over each target's incoming edges and sums there. So
stage one has edges child -> parent and stage two ancestor -> code. (MedM-PLM's public code
normalises over `edge_index[0]` while summing over `edge_index[1]`; that bug is not copied.)

The tree is given as a plain child -> parent dict (the code encoder's config stores it) so this
module never needs the ontology package or its files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
from torch_geometric.nn import GATConv

ROOT = "ROOT"


def normalise_tree(tree: Mapping[str, str | None], system: str = "codes") -> dict[str, str]:
    """child -> parent with None mapped to ROOT and the ROOT entry dropped; checks parents exist."""
    out: dict[str, str] = {}
    for child, par in tree.items():
        if child == ROOT:
            continue
        out[child] = ROOT if par is None else par
    for child, par in out.items():
        if par != ROOT and par not in out:
            raise ValueError(f"{system} tree: parent {par!r} of {child!r} is not in the tree")
    return out


def ancestors(code: str, parent: Mapping[str, str], system: str = "codes") -> list[str]:
    """Ancestors of `code`, parent first, ROOT last (code excluded); errors on cycles/unknowns."""
    if code not in parent:
        raise ValueError(f"{system} code {code!r} is in the vocabulary but not in its ontology tree")
    out: list[str] = []
    node = code
    while node != ROOT:
        node = parent[node]
        if node in out or node == code:
            raise ValueError(f"{system} tree: the parent relation has a cycle through {node!r}")
        out.append(node)
    return out


def restrict_tree(tree: Mapping[str, str | None], codes: Sequence[str], system: str = "codes") -> dict[str, str]:
    """The child -> parent entries needed by `codes`: the codes and all their ancestors."""
    parent = normalise_tree(tree, system)
    keep: dict[str, str] = {}
    for code in codes:
        node = code
        for a in ancestors(code, parent, system):
            keep[node] = a
            node = a
    return keep


class OntologyGraph:
    """Node list and the two edge sets of one code system's tree (pure Python, deterministic).

    Node order: the vocabulary's codes in vocabulary order, then ancestors in order of first
    appearance walking up from each code, so the rows of M are fixed by the config alone.
    """

    def __init__(self, codes: Sequence[str], tree: Mapping[str, str | None], system: str = "codes"):
        if len(set(codes)) != len(codes):
            dup = sorted({c for c in codes if list(codes).count(c) > 1})[:5]
            raise ValueError(f"{system} vocabulary has duplicate codes: {dup}")
        parent = normalise_tree(tree, system)
        self.codes = list(codes)
        self.nodes: list[str] = list(codes)
        index = {c: i for i, c in enumerate(self.nodes)}
        paths: list[list[str]] = []
        for code in codes:
            path = ancestors(code, parent, system)
            paths.append(path)
            for a in path:
                if a not in index:
                    index[a] = len(self.nodes)
                    self.nodes.append(a)
        self.index = index
        one: set[tuple[int, int]] = set()
        two: set[tuple[int, int]] = set()
        for code, path in zip(codes, paths):
            chain = [code, *path]
            for child, par in zip(chain[:-1], chain[1:]):
                one.add((index[child], index[par]))  # Eq. 1: child -> parent
            for a in path:
                two.add((index[a], index[code]))  # Eq. 2: ancestor -> code
        self.stage_one_edges = _edge_tensor(one)  # (2, E1) [source; target]
        self.stage_two_edges = _edge_tensor(two)  # (2, E2)


def _edge_tensor(edges: set[tuple[int, int]]) -> torch.Tensor:
    if not edges:
        return torch.zeros(2, 0, dtype=torch.long)
    return torch.tensor(sorted(edges), dtype=torch.long).t().contiguous()


class OntologyEmbedding(nn.Module):
    """(n_codes, heads * embed_dim) code embeddings from Eq. 1-2 for one code system."""

    def __init__(self, codes: Sequence[str], tree: Mapping[str, str | None], embed_dim: int = 75,
                 heads: int = 4, dropout: float = 0.0, system: str = "codes"):
        super().__init__()
        self.graph = OntologyGraph(codes, tree, system)
        hidden = embed_dim * heads
        self.n_codes = len(codes)
        self.M = nn.Parameter(torch.empty(len(self.graph.nodes), hidden))  # initial node matrix
        nn.init.normal_(self.M, std=0.02)
        # GATConv adds self loops, so each target attends over {itself} u its sources.
        self.stage_one = GATConv(hidden, embed_dim, heads=heads, concat=True, dropout=dropout)
        self.stage_two = GATConv(hidden, embed_dim, heads=heads, concat=True, dropout=dropout)
        # Derived from the config, so not saved in the state dict.
        self.register_buffer("edges_one", self.graph.stage_one_edges, persistent=False)
        self.register_buffer("edges_two", self.graph.stage_two_edges, persistent=False)

    def node_embeddings(self) -> torch.Tensor:
        """Eq. 1: stage-one vectors of every node. (N_nodes, H)"""
        return self.stage_one(self.M, self.edges_one)

    def forward(self) -> torch.Tensor:
        if self.n_codes == 0:
            return self.M.new_zeros(0, self.M.shape[1])
        e_nl = self.node_embeddings()  # (N_nodes, H)
        e = self.stage_two(e_nl, self.edges_two)  # (N_nodes, H), Eq. 2
        return e[: self.n_codes]  # codes come first in node order -> (n_codes, H)
