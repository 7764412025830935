"""The report page: one Jinja2 template with autoescape on (model text is untrusted), plots as data: URIs.

Two layers keep model output inert: every value is HTML-escaped by Jinja2, and the page's Content-Security-
Policy allows no script at all and images only from data: URIs (so the page makes no network request).
"""

from __future__ import annotations

import base64
from importlib import resources
from typing import Any

from jinja2 import Environment, StrictUndefined

from imitlab.study.report import POSITION_BIAS_WARN

NOT_RUN = "not run"


def num(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def tokens(v: float | None) -> str:
    if v is None:
        return ""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.0f}"


def render_html(report: dict[str, Any], plots: dict[str, bytes]) -> str:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, tokens=tokens)
    images = {name: base64.b64encode(png).decode("ascii") for name, png in plots.items()}
    template = env.from_string(resources.files("imitlab.study").joinpath("templates/report.html").read_text("utf-8"))
    return template.render(r=report, img=images, NOT_RUN=NOT_RUN, POSITION_BIAS_WARN=POSITION_BIAS_WARN)
