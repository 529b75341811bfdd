"""What ``%adapter_check`` found: findings, a verdict, the numbers behind it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..display import esc, html_table, run_link, text_table, warnings_block
from ..paths import shown_text

SEVERITIES = ("breaking", "warning", "info")
VERDICTS = ("compatible", "breaking", "degraded", "no-effect")
_COLORS = {
    "breaking": "#c0392b",
    "warning": "#b9770e",
    "info": "#566573",
    "compatible": "#1e8449",
    "degraded": "#b9770e",
    "no-effect": "#b9770e",
}


@dataclass(frozen=True)
class Finding:
    """One thing a check found.

    Attributes
    ----------
    severity : str
        ``breaking`` (it will not load or cannot work), ``warning`` (it loads but
        something is off, or one backend refuses it) or ``info``.
    check : str
        Which check: ``shape``, ``target_modules``, ``layers``, ``vocab``, ``rank``,
        ``vllm``, ``dtype``, ``architecture``, ``base``, ``tokenizer``, ``no-effect``,
        ``degraded``, ``agreement``, ``behavior``.
    subject : str
        The tensor or module concerned (or ``adapter`` / ``base``).
    expected, found : str
        What the new base needs vs what the adapter has (empty when not applicable).
    message : str
        One sentence for a person.
    """

    severity: str
    check: str
    subject: str
    expected: str = ""
    found: str = ""
    message: str = ""


@dataclass
class AdapterReport:
    """The result of checking one adapter against a new base model.

    ``verdict`` is ``breaking`` when any finding is, else ``no-effect`` or ``degraded``
    when the behavioral check says so, else ``compatible``.
    """

    adapter: str
    base: str
    old_base: str | None
    findings: list[Finding] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    static: dict = field(default_factory=dict)
    per_probe: dict = field(default_factory=dict)
    backend: str | None = None
    digests: dict = field(default_factory=dict)
    run_id: str | None = None
    # What did not happen, in one line each (e.g. the MLflow run was kept for later).
    warnings: list = field(default_factory=list)
    run_key: str | None = None
    # The MLflow trace of each greedy continuation the behavioral check generated.
    trace_ids: list = field(default_factory=list)

    @property
    def verdict(self) -> str:
        checks = {f.check for f in self.findings}
        if any(f.severity == "breaking" for f in self.findings):
            return "breaking"
        if "no-effect" in checks:
            return "no-effect"
        if "degraded" in checks:
            return "degraded"
        return "compatible"

    def by(self, *, severity: str | None = None, check: str | None = None) -> list[Finding]:
        """Findings filtered by severity and/or check."""
        return [
            f
            for f in self.findings
            if (severity is None or f.severity == severity) and (check is None or f.check == check)
        ]

    def to_dict(self) -> dict:
        """A JSON-ready dict (the MLflow artifact)."""
        return {
            "adapter": self.adapter,
            "base": self.base,
            "old_base": self.old_base,
            "verdict": self.verdict,
            "backend": self.backend,
            "findings": [asdict(f) for f in self.findings],
            "metrics": self.metrics,
            "static": self.static,
            "per_probe": self.per_probe,
            "digests": self.digests,
            "run_id": self.run_id,
        }

    def plot(self):
        """Per-probe drift: the adapter's vs the base's own, and the adapter's effect (plotly)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        probes = self.per_probe.get("probe", [])
        names = {
            "adapter_effect_kl": "adapter effect on new base (KL)",
            "adapter_drift_kl": "adapter drift old→new (KL)",
            "base_drift_kl": "base drift old→new (KL)",
        }
        for key, label in names.items():
            if key in self.per_probe:
                fig.add_bar(x=[str(p)[:40] for p in probes], y=self.per_probe[key], name=label)
        fig.update_layout(
            title=f"adapter check: {self.verdict}", barmode="group", yaxis_title="nats / token", xaxis_title="probe"
        )
        return fig

    def _summary(self) -> str:
        counts = {s: len(self.by(severity=s)) for s in SEVERITIES}
        parts = [
            f"verdict {self.verdict}",
            f"{counts['breaking']} breaking",
            f"{counts['warning']} warning",
            f"{counts['info']} info",
        ]
        if self.backend:
            parts.append(f"backend {self.backend}")
        if self.run_id:
            parts.append(f"run {self.run_id[:8]}")
        return " · ".join(parts)

    def _metric_rows(self) -> list[list]:
        return [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in self.metrics.items()]

    def _repr_mimebundle_(self, include=None, exclude=None):
        headers = ["severity", "check", "subject", "expected", "found", "message"]
        # A cell's output is shared with the notebook: folders as the notebook names them
        # (relative, <home>/..., ~/...), never this machine's absolute paths.
        rows = [
            [f.severity, f.check, *(shown_text(str(x)) for x in (f.subject, f.expected, f.found, f.message))]
            for f in self.findings
        ]
        title = shown_text(f"adapter {self.adapter} on base {self.base}")
        if self.old_base:
            title += f" (was {shown_text(str(self.old_base))})"
        text = f"{title}\n{self._summary()}\n\n" + (text_table(headers, rows) if rows else "no findings")
        if self.metrics:
            text += "\n\n" + text_table(["metric", "value"], self._metric_rows())
        link_text, link_html = run_link(self.run_id)
        warn_text, warn_html = warnings_block([shown_text(str(w)) for w in self.warnings])
        color = _COLORS.get(self.verdict, "inherit")
        html = (
            f"<div class='llmops-adapter-check'><div><b>{esc(title)}</b></div>"
            f"<div><span style='color:{color};font-weight:bold'>{esc(self.verdict)}</span>"
            f" · {esc(self._summary())}</div>"
            + (html_table(headers, rows) if rows else "<div>no findings</div>")
            + (html_table(["metric", "value"], self._metric_rows()) if self.metrics else "")
            + link_html
            + warn_html
            + "</div>"
        )
        text += link_text + warn_text
        return {"text/plain": text, "text/html": html}
