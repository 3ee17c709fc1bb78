"""The evidence pack as one self-contained HTML page (no script, no external resource).

Renders the document :mod:`creditops.services.evidence` builds; every number shown comes
from that document, which the pack also ships as JSON.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from creditops.reporting.model_report import report_environment

TEMPLATE = "evidence.html.j2"
LIGHT_CLASS = {"green": "", "amber": "warn", "red": "fail"}
STATUS_CLASS = {"fail": "fail", "insufficient_data": "warn", "reference": "ref"}


def render_evidence_html(pack: dict[str, Any]) -> str:
    source = resources.files("creditops.reporting").joinpath("templates").joinpath(TEMPLATE)
    template = report_environment().from_string(source.read_text(encoding="utf-8"))
    return template.render(pack=pack, light_class=LIGHT_CLASS, status_class=STATUS_CLASS)
