"""Shadow a migration: the same queries on the old and the new vector column.

Each query is embedded with each column's own model (never across spaces) and the
two top-k lists are compared: overlap@k, Jaccard, rank-biased overlap (RBO, p=0.9,
truncated at k and normalized so identical lists score 1), the rank each old hit has
in the new list, and nDCG@k for both columns when relevance labels are given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...backends import lance
from ...errors import BadInput
from ..display import esc, html_table, text_table, warnings_block
from .embedders import EmbedderSpec, get_embedder
from .table import check_space, layout, search_column


def overlap_at_k(a: list, b: list, k: int) -> float:
    return len(set(a[:k]) & set(b[:k])) / k if k else 0.0


def jaccard(a: list, b: list) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def rbo(a: list, b: list, p: float = 0.9) -> float:
    """Rank-biased overlap truncated at the shorter depth, scaled so identical lists give 1."""
    depth = min(len(a), len(b))
    if depth == 0:
        return 1.0 if len(a) == len(b) else 0.0
    score = sum(p ** (d - 1) * len(set(a[:d]) & set(b[:d])) / d for d in range(1, depth + 1))
    return score * (1 - p) / (1 - p**depth)


def ndcg(ranked: list, relevant: set, k: int) -> float:
    """Binary-relevance nDCG@k."""
    dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(ranked[:k]) if x in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def rank_changes(old: list, new: list) -> list[dict]:
    """Where each old hit landed: its new rank, or None when it left the top-k."""
    pos = {x: i + 1 for i, x in enumerate(new)}
    return [{"id": x, "old_rank": i + 1, "new_rank": pos.get(x)} for i, x in enumerate(old)]


@dataclass
class ShadowReport:
    """Per-query comparison of the old and new column, and the aggregates."""

    table: str
    k: int
    old: EmbedderSpec
    new: EmbedderSpec
    old_column: str
    new_column: str
    coverage: float
    rows: list[dict] = field(default_factory=list)
    run_id: str | None = None
    version: int = 0
    warnings: list = field(default_factory=list)

    def _mean(self, key: str) -> float | None:
        vals = [r[key] for r in self.rows if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    def headline(self) -> dict:
        out = {
            "queries": len(self.rows),
            "k": self.k,
            "coverage": round(self.coverage, 4),
            "mean_overlap_at_k": self._mean("overlap"),
            "mean_jaccard": self._mean("jaccard"),
            "mean_rbo": self._mean("rbo"),
            "mean_abs_rank_shift": self._mean("mean_abs_rank_shift"),
            "dropped_per_query": self._mean("dropped"),
        }
        if any(r.get("ndcg_old") is not None for r in self.rows):
            out["ndcg_old"] = self._mean("ndcg_old")
            out["ndcg_new"] = self._mean("ndcg_new")
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items() if v is not None}

    @property
    def summary(self) -> str:
        h = self.headline()
        text = (
            f"{h['queries']} queries, overlap@{self.k} {h.get('mean_overlap_at_k', 0):.2f}, "
            f"RBO {h.get('mean_rbo', 0):.2f}"
        )
        if "ndcg_new" in h:
            text += f", nDCG@{self.k} {h['ndcg_old']:.3f} -> {h['ndcg_new']:.3f}"
        if self.coverage < 1:
            text += f" (only {self.coverage:.0%} of rows have new vectors: backfill first)"
        return text

    def per_query(self) -> dict:
        keys = ["query", "overlap", "jaccard", "rbo", "mean_abs_rank_shift", "dropped", "ndcg_old", "ndcg_new"]
        return {k: [r.get(k) for r in self.rows] for k in keys}

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    @property
    def figure(self):
        """A plotly chart: overlap, Jaccard, RBO (and nDCG) per query."""
        import plotly.graph_objects as go

        labels = [f"q{i + 1}" for i in range(len(self.rows))]
        fig = go.Figure()
        for key, name in (("overlap", f"overlap@{self.k}"), ("jaccard", "Jaccard"), ("rbo", "RBO")):
            fig.add_bar(x=labels, y=[r[key] for r in self.rows], name=name, hovertext=[r["query"] for r in self.rows])
        if any(r.get("ndcg_old") is not None for r in self.rows):
            fig.add_scatter(
                x=labels, y=[r["ndcg_old"] for r in self.rows], mode="markers", name=f"nDCG old ({self.old.ref})"
            )
            fig.add_scatter(
                x=labels, y=[r["ndcg_new"] for r in self.rows], mode="markers", name=f"nDCG new ({self.new.ref})"
            )
        fig.update_layout(
            barmode="group",
            yaxis_range=[0, 1.05],
            height=360,
            title=f"{self.table}: {self.old.ref} -> {self.new.ref} (k={self.k})",
        )
        return fig

    def _repr_mimebundle_(self, include=None, exclude=None):
        headers = ["query", f"overlap@{self.k}", "Jaccard", "RBO", "|rank shift|", "dropped"]
        with_labels = any(r.get("ndcg_old") is not None for r in self.rows)
        if with_labels:
            headers += ["nDCG old", "nDCG new"]
        body = []
        for r in self.rows:
            row = [
                r["query"],
                f"{r['overlap']:.2f}",
                f"{r['jaccard']:.2f}",
                f"{r['rbo']:.2f}",
                "-" if r["mean_abs_rank_shift"] is None else f"{r['mean_abs_rank_shift']:.1f}",
                r["dropped"],
            ]
            if with_labels:
                row += [f"{r['ndcg_old']:.3f}", f"{r['ndcg_new']:.3f}"]
            body.append(row)
        head = (
            f"shadow {self.table}: {self.old_column} ({self.old.ref}) vs {self.new_column} ({self.new.ref}): "
            f"{self.summary}"
        )
        warn_text, warn_html = warnings_block(self.warnings)
        bundle = {
            "text/plain": head + "\n" + text_table(headers, body) + warn_text,
            "text/html": f"<div class='llmops-migrate'><b>{esc(head)}</b>{html_table(headers, body)}{warn_html}</div>",
        }
        bundle["application/vnd.plotly.v1+json"] = self.figure.to_plotly_json()
        return bundle


def _labels_for(labels, queries: list[str]) -> list[set] | None:
    if labels is None:
        return None
    if isinstance(labels, dict):
        missing = [q for q in queries if q not in labels]
        if missing:
            raise BadInput(
                f"labels name no relevant ids for {len(missing)} queries, e.g. {missing[0]!r}: "
                "give a dict query -> list of ids covering every query"
            )
        return [set(labels[q]) for q in queries]
    labels = list(labels)
    if len(labels) != len(queries):
        raise BadInput(f"{len(labels)} label lists for {len(queries)} queries: give one list of relevant ids per query")
    return [set(x) for x in labels]


def shadow_compare(mig, t, state: dict, queries, *, k: int = 10, labels=None) -> ShadowReport:
    """Compare ``state``'s old and new columns of table ``t`` on ``queries``."""
    if isinstance(queries, str):
        queries = [queries]
    queries = [q for q in (queries or []) if isinstance(q, str) and q.strip()]
    if not queries:
        raise BadInput("no queries: give a list of query strings (a variable or a file with one per line)")
    if k < 1:
        raise BadInput(f"--k must be at least 1, got {k}")
    rel = _labels_for(labels, queries)
    lay = layout(t)
    old_col, new_col = state["from_column"], state["to_column"]
    old_spec, new_spec = EmbedderSpec(**state["from"]), EmbedderSpec(**state["to"])
    old_emb, new_emb = get_embedder(old_spec.ref, cfg=mig.cfg), get_embedder(new_spec.ref, cfg=mig.cfg)
    check_space(old_col, old_spec, query=old_emb.spec)
    check_space(new_col, new_spec, query=new_emb.spec)
    total = t.count_rows()
    coverage = (total - t.count_rows(lance.is_null(new_col))) / total if total else 0.0
    old_vecs, new_vecs = old_emb.embed(queries), new_emb.embed(queries)
    report = ShadowReport(mig.name, k, old_spec, new_spec, old_col, new_col, coverage)
    for i, q in enumerate(queries):
        a = [r["id"] for r in search_column(t, lay, old_col, old_vecs[i], k=k)]
        b = [r["id"] for r in search_column(t, lay, new_col, new_vecs[i], k=k)]
        changes = rank_changes(a, b)
        shifts = [abs(c["new_rank"] - c["old_rank"]) for c in changes if c["new_rank"] is not None]
        row = {
            "query": q,
            "old_ids": a,
            "new_ids": b,
            "overlap": overlap_at_k(a, b, k),
            "jaccard": jaccard(a, b),
            "rbo": rbo(a, b),
            "rank_changes": changes,
            "mean_abs_rank_shift": sum(shifts) / len(shifts) if shifts else None,
            "dropped": sum(c["new_rank"] is None for c in changes),
        }
        if rel is not None:
            row["ndcg_old"], row["ndcg_new"] = ndcg(a, rel[i], k), ndcg(b, rel[i], k)
        report.rows.append(row)
    return report
