"""Just enough PromQL reading to check the deploy assets against the gateway's metrics.

:func:`references` finds the metric names and the label names an expression uses (a small
tokenizer, not a parser: strings, label matchers, groupings and ranges are taken out first, then
every remaining identifier that is not a function, a keyword or a number is a metric name).
:func:`exposed` lists the series names the gateway's ``SPECS`` produce, with the suffixes of
the text format: ``_total`` for counters, ``_bucket`` / ``_sum`` / ``_count`` for histograms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aigw.gateway.monitoring.prometheus import SPECS

# Labels Prometheus adds to every scraped series (the deploy config's `component` included),
# and histograms' bucket label.
TARGET_LABELS = frozenset({"instance", "job", "component", "__name__"})
BUCKET_LABEL = "le"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
     "offset", "bool", "inf", "nan", "Inf", "NaN"}
)  # fmt: skip
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
_GRAFANA_DURATIONS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


@dataclass(frozen=True)
class References:
    metrics: frozenset[str]
    labels: frozenset[str]
    grouping: frozenset[str] = frozenset()
    """The labels of ``by (...)`` clauses: an aggregated result has only these."""


def references(expr: str) -> References:
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    grouping: set[str] = set()
    for block in _MATCHERS.findall(text):
        labels.update(_MATCHER_LABEL.findall(block))
    text = _MATCHERS.sub(" ", text)
    for keyword, group in _GROUPING.findall(text):
        names = {name.strip() for name in group.split(",") if name.strip()}
        labels |= names
        if keyword == "by":
            grouping |= names
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", _RANGE.sub(" ", text))
    metrics = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        rest = text[match.end() :].lstrip()
        if name in _KEYWORDS or rest.startswith("("):  # a function or an aggregation
            continue
        metrics.add(name)
    return References(frozenset(metrics), frozenset(labels), frozenset(grouping))


def label_values_references(query: str) -> References:
    """A Grafana variable's ``label_values(selector, label)`` query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query)
    assert match is not None, f"not a label_values(selector, label) query: {query}"
    found = references(match.group(1))
    return References(found.metrics, found.labels | {match.group(2)})


def exposed() -> dict[str, frozenset[str]]:
    """Every series name the gateway exposes (and Prometheus's ``up``) → its label names."""
    names: dict[str, frozenset[str]] = {"up": frozenset()}
    for spec in SPECS.values():
        labels = frozenset(spec.labels)
        if spec.name == "gateway_requests":
            labels |= {"key"}  # with AIGW_METRICS_KEY_LABEL=1
        if spec.kind == "counter":
            names[f"{spec.name}_total"] = labels
        elif spec.kind == "histogram":
            names[f"{spec.name}_bucket"] = labels | {BUCKET_LABEL}
            names[f"{spec.name}_sum"] = labels
            names[f"{spec.name}_count"] = labels
        else:
            names[spec.name] = labels
    return names


def problems(expr: str, refs: References | None = None) -> list[str]:
    """What is wrong with ``expr``'s names: unknown metrics, labels none of its metrics has."""
    refs = refs or references(expr)
    known = exposed()
    found = []
    unknown = sorted(refs.metrics - known.keys())
    if unknown:
        found.append(f"unknown metric(s) {unknown} in: {expr}")
    if not refs.metrics:
        found.append(f"no metric in: {expr}")
    allowed = set(TARGET_LABELS)
    for metric in refs.metrics & known.keys():
        allowed |= known[metric]
    stray = sorted(refs.labels - allowed)
    if stray:
        found.append(f"label(s) {stray} on none of {sorted(refs.metrics)} in: {expr}")
    return found


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with its Grafana variables replaced (durations; ``.*`` for the
    template variables, which the dashboard only uses in regex matchers)."""
    return _GRAFANA_VARIABLE.sub(lambda m: _GRAFANA_DURATIONS.get(m.group(1), ".*"), expr)
