"""USE-method rules: the one place that says what is wrong with a snapshot.

Three users, one set of rules:
- the prompts quote these findings to ground every agent (`grounding_lines`);
- the simulated Ollama answers with them, per role (`agent_answer`), so its output is
  schema-valid and true to the snapshot;
- the fallback consolidation merges agents' structured findings (`merge_findings`) and,
  when no agent answered at all, reports the checks themselves (`insights_from_checks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.records import SEVERITIES, SEVERITY_RANK, Insight, Severity
from engine.sources.snapshot import FIELD_BY_NAME

Values = Mapping[str, float | None]  # snapshot field -> value (usually quantised)

ROLES: tuple[str, ...] = ("performance", "infrastructure", "security", "cost", "reliability")
ALL_ROLES = "generalist"  # the single-agent mode looks through every rule
_T = TypeVar("_T")


@dataclass(frozen=True)
class Rule:
    metric: str
    levels: tuple[tuple[float, Severity], ...]  # ascending thresholds
    roles: frozenset[str]
    title: str
    advice: tuple[str, ...]

    def severity(self, value: float) -> tuple[Severity, float] | None:
        hit: tuple[Severity, float] | None = None
        for threshold, severity in self.levels:
            if value >= threshold:
                hit = (severity, threshold)
        return hit


def _rule(metric: str, levels: tuple[float, float, float], roles: str, title: str,
          *advice: str) -> Rule:  # fmt: skip
    medium, high, critical = levels
    return Rule(
        metric,
        ((medium, "MEDIUM"), (high, "HIGH"), (critical, "CRITICAL")),
        frozenset(roles.split()),
        title,
        advice,
    )


RULES: tuple[Rule, ...] = (
    _rule(
        "cpu_util_pct",
        (70, 85, 95),
        "performance infrastructure cost reliability",
        "CPU utilisation is high",
        "Profile the hottest processes (perf top, py-spy) and cut CPU per request.",
        "Scale out horizontally or move to a larger instance class.",
        "Set CPU requests/limits so noisy neighbours cannot starve the service.",
    ),
    _rule(
        "cpu_load_per_core",
        (1.0, 1.5, 3.0),
        "performance infrastructure reliability",
        "CPU run queue is saturated",
        "Threads are waiting for CPU: reduce worker/thread counts to the core count.",
        "Add cores or replicas; saturation, not utilisation, is what users feel as latency.",
        "Check for lock contention or busy-wait loops with a profiler.",
    ),
    _rule(
        "cpu_iowait_pct",
        (10, 20, 40),
        "performance infrastructure",
        "CPU time is lost waiting on I/O",
        "Find the blocking I/O (iotop, pidstat -d) and make it asynchronous or cached.",
        "Move hot data to faster storage or add read caching.",
    ),
    _rule(
        "mem_util_pct",
        (80, 90, 97),
        "performance infrastructure cost reliability",
        "Memory utilisation is high",
        "Look for unbounded caches or a leak: compare RSS growth over time per process.",
        "Raise the memory limit or add nodes before the OOM killer does it for you.",
        "Set memory alerts at 85 % so growth is caught before it pages.",
    ),
    _rule(
        "mem_swap_pct",
        (10, 30, 60),
        "performance reliability",
        "The host is swapping (memory saturation)",
        "Swapping multiplies latency: free memory or add RAM; consider vm.swappiness=10.",
        "Restart the leaking process in a maintenance window to recover headroom.",
    ),
    _rule(
        "mem_oom_kills",
        (1, 2, 3),
        "reliability infrastructure",
        "Processes were killed by the OOM killer",
        "Find the killed processes in dmesg / journalctl -k and fix their memory bounds.",
        "Add restart policies and memory limits so one process cannot take the host down.",
    ),
    _rule(
        "disk_util_pct",
        (60, 80, 95),
        "performance infrastructure",
        "Disk is busy most of the time",
        "Identify the heaviest writers (iotop) and batch or defer their I/O.",
        "Move to faster volumes (NVMe, provisioned IOPS) for the hot data set.",
    ),
    _rule(
        "disk_queue_depth",
        (2, 4, 10),
        "performance infrastructure reliability",
        "Disk I/O is queueing (disk saturation)",
        "Requests wait in the disk queue: reduce concurrent I/O or spread it across volumes.",
        "Check for a runaway job (backup, compaction, log flood) saturating the device.",
    ),
    _rule(
        "disk_space_pct",
        (80, 90, 95),
        "infrastructure reliability cost",
        "Disk space is running out",
        "Rotate and compress logs; delete stale artefacts and old snapshots.",
        "Grow the volume or add retention policies before writes start failing.",
    ),
    _rule(
        "net_util_pct",
        (60, 80, 95),
        "performance infrastructure cost security",
        "Network link utilisation is high",
        "Find the top talkers (iftop, flow logs); compress or cache large responses.",
        "Move bulk transfers off-peak or onto a separate interface.",
    ),
    _rule(
        "net_drops_per_s",
        (10, 100, 1000),
        "performance security reliability",
        "Packets are being dropped (network saturation)",
        "Raise NIC ring buffers and socket backlogs; check for bursts exceeding the link.",
        "Rate-limit abusive sources at the edge if the traffic is unexpected.",
    ),
    _rule(
        "net_errors_per_s",
        (1, 10, 100),
        "infrastructure security",
        "Network interface errors",
        "Check cabling/virtual NIC health and driver logs; errors are never normal.",
        "Look for malformed traffic that may indicate scanning or an attack.",
    ),
    _rule(
        "error_rate_pct",
        (1, 2, 5),
        "reliability security",
        "Request error rate is elevated",
        "Correlate the errors with the latest deploy and roll back if they started with it.",
        "Check error budgets and page the owning team if the SLO is burning.",
    ),
)
RULE_BY_METRIC: dict[str, Rule] = {r.metric: r for r in RULES}


@dataclass(frozen=True)
class Finding:
    """One rule that fired: metric(s), the value, the threshold it crossed and what to do."""

    title: str
    severity: Severity
    metrics: tuple[str, ...]
    value: float
    threshold: float
    observation: str
    recommendations: tuple[str, ...]

    def to_agent_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "observation": self.observation,
            "recommendations": list(self.recommendations),
            "severity": self.severity,
            "confidence": _SEVERITY_CONFIDENCE[self.severity],
            "metrics": list(self.metrics),
        }


# How sure a rule-based finding is: a threshold crossed further up is less ambiguous.
_SEVERITY_CONFIDENCE: dict[str, int] = {"CRITICAL": 92, "HIGH": 88, "MEDIUM": 80, "LOW": 75}


def _fmt(metric: str, value: float) -> str:
    unit = FIELD_BY_NAME[metric].unit
    text = f"{value:g}"
    return f"{text}{unit}" if unit in ("%", "ms", "/s", "×") else f"{text} {unit}"


def _rule_findings(values: Values, role: str) -> list[Finding]:
    out: list[Finding] = []
    for rule in RULES:
        if role != ALL_ROLES and role not in rule.roles:
            continue
        value = values.get(rule.metric)
        if value is None:
            continue
        hit = rule.severity(value)
        if hit is None:
            continue
        severity, threshold = hit
        label = FIELD_BY_NAME[rule.metric].label
        out.append(
            Finding(
                title=rule.title,
                severity=severity,
                metrics=(rule.metric,),
                value=value,
                threshold=threshold,
                observation=(
                    f"{label} is {_fmt(rule.metric, value)}, at or above the "
                    f"{severity} threshold of {_fmt(rule.metric, threshold)}."
                ),
                recommendations=rule.advice,
            )
        )
    return out


def _latency_finding(values: Values, role: str) -> list[Finding]:
    """p95 latency against its own baseline: the service-level symptom of saturation."""
    if role not in (ALL_ROLES, "performance", "reliability"):
        return []
    p95, base = values.get("p95_latency_ms"), values.get("p95_baseline_ms")
    if p95 is None or not base:
        return []
    ratio = p95 / base
    severity: Severity | None = None
    for threshold, level in ((1.5, "MEDIUM"), (2.0, "HIGH"), (4.0, "CRITICAL")):
        if ratio >= threshold:
            severity = level  # type: ignore[assignment]
    if severity is None:
        return []
    return [
        Finding(
            title="p95 latency is far above its baseline",
            severity=severity,
            metrics=("p95_latency_ms", "p95_baseline_ms"),
            value=round(ratio, 2),
            threshold=1.5,
            observation=(
                f"p95 latency is {p95:g} ms against a baseline of {base:g} ms "
                f"({ratio:.1f}× the baseline)."
            ),
            recommendations=(
                "Find which resource saturates first (USE method) — latency follows saturation.",
                "Shed or queue load at the edge until the saturated resource recovers.",
            ),
        )
    ]


def _abuse_finding(values: Values, role: str) -> list[Finding]:
    """Errors and drops rising together with a traffic surge look like abuse, not a bug."""
    if role not in (ALL_ROLES, "security"):
        return []
    errors, rate = values.get("error_rate_pct"), values.get("request_rate_per_s")
    drops = values.get("net_drops_per_s") or 0.0
    if errors is None or rate is None or errors < 5 or (rate < 2000 and drops < 100):
        return []
    return [
        Finding(
            title="Traffic surge with errors: possible abuse or DDoS",
            severity="HIGH",
            metrics=("request_rate_per_s", "error_rate_pct", "net_drops_per_s"),
            value=rate,
            threshold=2000,
            observation=(
                f"{rate:g} requests/s with a {errors:g}% error rate and {drops:g} drops/s: "
                "consistent with a flood or credential-stuffing burst."
            ),
            recommendations=(
                "Inspect top client IPs and user agents in the access logs; block or rate-limit.",
                "Enable WAF / edge rate limiting and verify auth failure counts.",
            ),
        )
    ]


def _overprovision_finding(values: Values, role: str) -> list[Finding]:
    if role not in (ALL_ROLES, "cost"):
        return []
    cpu, mem = values.get("cpu_util_pct"), values.get("mem_util_pct")
    if cpu is None or mem is None or cpu >= 30 or mem >= 60:
        return []
    return [
        Finding(
            title="Host looks over-provisioned",
            severity="LOW",
            metrics=("cpu_util_pct", "mem_util_pct"),
            value=cpu,
            threshold=30,
            observation=f"CPU at {cpu:g}% and memory at {mem:g}% leave large idle headroom.",
            recommendations=(
                "Right-size to a smaller instance or pack more workloads per host.",
                "Use autoscaling with a lower minimum replica count off-peak.",
            ),
        )
    ]


_DERIVED: tuple[Callable[[Values, str], list[Finding]], ...] = (
    _latency_finding,
    _abuse_finding,
    _overprovision_finding,
)


def findings(values: Values, role: str = ALL_ROLES) -> list[Finding]:
    """Every rule that fires for `role` (or all rules), most severe first."""
    found = _rule_findings(values, role)
    for derive in _DERIVED:
        found.extend(derive(values, role))
    return sorted(found, key=lambda f: SEVERITY_RANK[f.severity])


def role_metrics(role: str) -> list[str]:
    metrics = [r.metric for r in RULES if role == ALL_ROLES or role in r.roles]
    if role in (ALL_ROLES, "performance", "reliability"):
        metrics += ["p95_latency_ms", "p95_baseline_ms"]
    if role in (ALL_ROLES, "security"):
        metrics += ["request_rate_per_s"]
    return list(dict.fromkeys(metrics))


def _all_clear(role: str, values: Values) -> Finding:
    watched = role_metrics(role)
    # Unknown (None or absent) metrics were not checked: say so, never call them fine.
    unknown = [m for m in watched if values.get(m) is None]
    known = [m for m in watched if values.get(m) is not None]
    if watched and not known:
        return Finding(
            title=f"No {role} data: every metric is unknown",
            severity="MEDIUM",
            metrics=tuple(watched[:3]),
            value=0,
            threshold=0,
            observation=(
                f"None of the {len(watched)} metrics the {role} checks read is known, so "
                "nothing could be checked; this is a monitoring gap, not a healthy host."
            ),
            recommendations=(
                "Restore the metric source (e.g. a stopped node_exporter) and analyse again.",
            ),
        )
    not_checked = f"; unknown, not checked: {', '.join(unknown)}" if unknown else ""
    return Finding(
        title=f"{ALL_CLEAR_PREFIX}{role}{ALL_CLEAR_SUFFIX}",
        severity="LOW",
        metrics=tuple((known or watched)[:3]),
        value=0,
        threshold=0,
        observation=(
            f"Every USE-method check in the {role} perspective is within its thresholds "
            f"({len(known)} metrics checked{not_checked})."
        ),
        recommendations=("Keep the current alert thresholds; re-check after the next deploy.",),
    )


def agent_answer(values: Values, role: str) -> dict[str, Any]:
    """A schema-valid agent answer grounded in the rules (what the simulated model says)."""
    found = findings(values, role)[:4] or [_all_clear(role, values)]
    worst = found[0]
    summary = (
        f"{len(found)} finding(s) from the {role} perspective; most severe: "
        f"{worst.title} ({worst.severity})."
    )
    return {"summary": summary, "findings": [f.to_agent_json() for f in found]}


def grounding_lines(values: Values, role: str) -> list[str]:
    """The checks quoted into a prompt so the model reasons from numbers, not vibes."""
    found = findings(values, role)
    if not found:
        unknown = [m for m in role_metrics(role) if values.get(m) is None]
        if unknown:
            return [f"- every known {role} check is within thresholds; unknown, not checked: "
                    f"{', '.join(unknown)}"]  # fmt: skip
        return [f"- all {role} USE-method checks are within thresholds"]
    return [
        f"- {f.severity}: {', '.join(f.metrics)} = {f.value:g} (threshold {f.threshold:g}) — {f.title}"
        for f in found
    ]


# --- consolidation without an LLM ------------------------------------------------------


_TEXT_LIMIT = 600  # model output is untrusted: keep any one field to a readable size


def _text(value: Any, limit: int = _TEXT_LIMIT) -> str:
    text = " ".join(str(value).split()) if value is not None else ""
    return text[:limit]


def normalise_insight(raw: Any, default_agents: Iterable[str] = ()) -> Insight | None:
    """Coerce one finding/insight from model JSON into an Insight, or None if unusable."""
    if not isinstance(raw, Mapping):
        return None
    title = _text(raw.get("title"), 160)
    observation = _text(raw.get("observation"))
    if not title and not observation:
        return None
    severity = str(raw.get("severity", "MEDIUM")).upper()
    recs = raw.get("recommendations")
    recommendations = [_text(r, 300) for r in recs if _text(r)] if isinstance(recs, list) else []
    metrics_raw = raw.get("metrics")
    metrics = (
        [m for m in metrics_raw if isinstance(m, str) and m in FIELD_BY_NAME]
        if isinstance(metrics_raw, list)
        else []
    )
    agents_raw = raw.get("agents")
    agents = (
        [_text(a, 60) for a in agents_raw if isinstance(a, str)]
        if isinstance(agents_raw, list)
        else list(default_agents)
    )
    try:
        confidence = int(float(raw.get("confidence", 70)))
    except (TypeError, ValueError, OverflowError):  # "high", None, "inf"
        confidence = 70
    return Insight(
        title=title or observation[:80],
        observation=observation,
        recommendations=recommendations[:5],
        severity=severity if severity in SEVERITIES else "MEDIUM",
        confidence=max(0, min(100, confidence)),
        agents=list(dict.fromkeys(agents)),
        metrics=list(dict.fromkeys(metrics)),
    )


def insights_from_output(agent: str, output: Mapping[str, Any]) -> list[Insight]:
    """An agent's `findings` (or a consolidator's `insights`) as Insight records."""
    items = output.get("findings", output.get("insights", []))
    if not isinstance(items, list):
        return []
    out = [normalise_insight(item, default_agents=[agent]) for item in items]
    return [i for i in out if i is not None]


@dataclass(frozen=True)
class Problem:
    """Findings on different metrics that are one problem: a finding whose metrics all
    belong to `metrics` joins the others; two or more of them read as `title`."""

    key: str
    title: str
    metrics: frozenset[str]
    observation: str


# Written once: the simulated server's answers (its verdicts) and the deterministic merge
# (the fallback) both group through `_group_key`.
PROBLEMS: tuple[Problem, ...] = (
    Problem(
        "memory-leak",
        "Memory leak: memory growth, swapping and OOM kills",
        frozenset({"mem_util_pct", "mem_swap_pct", "mem_oom_kills"}),
        "Memory is high, the host swaps and/or the OOM killer fired: together the signs "
        "of memory that grows without bound, not of a one-off peak.",
    ),
)


def problem_of(insight: Insight) -> Problem | None:
    metrics = set(insight.metrics)
    return next((p for p in PROBLEMS if metrics and metrics <= p.metrics), None)


def _group_key(insight: Insight) -> tuple[str, ...]:
    """Findings that rest on the same metrics are the same problem seen by several agents;
    so are findings within one of the `PROBLEMS`."""
    problem = problem_of(insight)
    if problem is not None:
        return (f"problem:{problem.key}",)
    return tuple(sorted(insight.metrics)) or (insight.title.lower(),)


ALL_CLEAR_PREFIX, ALL_CLEAR_SUFFIX = "No ", " issue found"


def is_all_clear(insight: Insight) -> bool:
    """An "every check of this perspective passed" insight (`_all_clear`)."""
    return (
        insight.severity == "LOW"
        and insight.title.startswith(ALL_CLEAR_PREFIX)
        and insight.title.endswith(ALL_CLEAR_SUFFIX)
    )


def _rank(insight: Insight) -> tuple[int, int, str]:
    """Most severe first; among equals, the one more agents support."""
    return (SEVERITY_RANK[insight.severity], -len(insight.agents), insight.title)


def merge_group(members: Sequence[Insight]) -> Insight:
    """One insight from findings about one problem: keep the most severe wording, union
    the agents and advice, and let agreement raise confidence a little (3 points per
    extra agent), never above 99."""
    # Ties broken on the text too, so the merge does not depend on who answered first.
    ordered = sorted(
        members, key=lambda i: (SEVERITY_RANK[i.severity], -i.confidence, i.title, i.agents)
    )
    lead = ordered[0]
    agents = list(dict.fromkeys(a for m in ordered for a in m.agents))
    # Every member's first advice is kept (a grouped problem has several members).
    firsts = [m.recommendations[0] for m in ordered if m.recommendations]
    recs = list(dict.fromkeys([*firsts, *(r for m in ordered for r in m.recommendations)]))
    mean = sum(m.confidence for m in ordered) / len(ordered)
    metrics = list(dict.fromkeys(m for i in ordered for m in i.metrics))
    problem = problem_of(lead)
    title, observation = lead.title, lead.observation
    if problem is not None and len(set(metrics) & problem.metrics) >= 2:
        seen = list(dict.fromkeys(m.observation for m in ordered if m.observation))
        title = problem.title
        observation = " ".join([problem.observation, *seen[:3]])
    return Insight(
        title=title,
        observation=observation,
        recommendations=recs[: max(5, len(set(firsts)))],
        severity=lead.severity,
        confidence=min(99, round(mean + 3 * (len(agents) - 1))),
        agents=agents,
        metrics=metrics,
    )


def _ranked_groups(items: Sequence[_T], insight_of: Callable[[_T], Insight]) -> list[list[_T]]:
    """Items grouped by problem (`_group_key`), the groups in the merged insights' order."""
    groups: dict[tuple[str, ...], list[_T]] = {}
    for item in items:
        groups.setdefault(_group_key(insight_of(item)), []).append(item)
    merged = [(merge_group([insight_of(m) for m in g]), g) for g in groups.values()]
    merged.sort(key=lambda pair: _rank(pair[0]))
    return [g for _, g in merged]


def merge_insights(insights: Iterable[Insight]) -> list[Insight]:
    """Deterministic consolidation: one insight per underlying problem, most severe first."""
    return [merge_group(g) for g in _ranked_groups(list(insights), lambda i: i)]


def merge_findings(outputs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Insight]:
    """Merge several agents' structured answers (agent name, parsed JSON)."""
    return merge_insights(i for name, out in outputs for i in insights_from_output(name, out))


def insights_from_checks(values: Values) -> list[Insight]:
    """When no agent answered: the rules' own findings, attributed to no agent."""
    found = findings(values, ALL_ROLES) or [_all_clear("overall", values)]
    return merge_insights(
        normalise_insight(f.to_agent_json(), default_agents=()) or Insight(f.title, "")
        for f in found
    )


# --- compact consolidation -------------------------------------------------------------
#
# The Consolidator does not rewrite the agents' answers: it reads one line per finding
# (id, role, severity, title, metrics and their values) and returns a short verdict:
# the most important insights first, each as the ids of the findings that merge into it,
# a one-line summary and its confidence. The insights themselves are assembled here from
# the agents' own findings, so nothing an agent found is lost.


@dataclass(frozen=True)
class CompactFinding:
    """One agent finding as the Consolidator sees it, with the full finding kept aside."""

    id: str
    role: str
    insight: Insight  # the agent's own finding (agents = [the agent])

    def to_prompt_json(self, values: Values) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "severity": self.insight.severity,
            "title": self.insight.title,
            "metrics": {m: values.get(m) for m in self.insight.metrics},
        }

    @classmethod
    def from_prompt_json(cls, raw: Mapping[str, Any]) -> CompactFinding:
        """What the simulated Consolidator rebuilds from a prompt line (no advice, no text)."""
        metrics = raw.get("metrics")
        insight = normalise_insight(
            {
                "title": raw.get("title"),
                "severity": raw.get("severity"),
                "metrics": list(metrics) if isinstance(metrics, Mapping) else [],
            },
            default_agents=[str(raw.get("role", ""))],
        )
        if insight is None:
            raise ValueError(f"finding {raw.get('id')!r} has no title")
        return cls(str(raw["id"]), str(raw.get("role", "")), insight)


def _id_prefixes(roles: Iterable[str]) -> dict[str, str]:
    """A short, unique, upper-case prefix per role: performance → P, security → S."""
    prefixes: dict[str, str] = {}
    for role in dict.fromkeys(roles):
        letters = "".join(ch for ch in role.upper() if ch.isalpha()) or "X"
        size = 1
        while letters[:size] in prefixes.values() and size < len(letters):
            size += 1
        prefix = letters[:size]
        if prefix in prefixes.values():  # two roles spelled alike: number them
            prefix = f"{letters[:2]}{len(prefixes)}"
        prefixes[role] = prefix
    return prefixes


def compact_findings(outputs: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[CompactFinding]:
    """(agent, role, parsed answer) in arrival order → findings with ids like P1, P2, S1.

    An id depends only on the agent's role and the finding's place in its answer, so the
    lines already sent for earlier agents never change when a later one arrives."""
    prefix = _id_prefixes(role for _, role, _ in outputs)
    found: list[CompactFinding] = []
    for agent, role, answer in outputs:
        for n, insight in enumerate(insights_from_output(agent, answer), start=1):
            found.append(CompactFinding(f"{prefix[role]}{n}", role, insight))
    return found


@dataclass(frozen=True)
class Verdict:
    """The Consolidator's compact answer, checked against the findings it was shown."""

    groups: tuple[tuple[str, ...], ...]  # most important first; ids that merge into one
    summary: str
    confidence: int | None


def read_verdict(raw: Mapping[str, Any], known_ids: Iterable[str]) -> Verdict | None:
    """A usable verdict, or None. Unknown and repeated ids are dropped (model output is
    untrusted); a verdict that names no known finding at all is not usable."""
    items = raw.get("insights")
    if not isinstance(items, list):
        return None
    known, used = set(known_ids), set[str]()
    groups: list[tuple[str, ...]] = []
    for item in items:
        ids = [i for i in item if isinstance(i, str)] if isinstance(item, list) else []
        group = tuple(dict.fromkeys(i for i in ids if i in known and i not in used))
        used.update(group)
        if group:
            groups.append(group)
    if not groups:
        return None
    confidence: int | None = None
    if isinstance(raw.get("confidence"), int | float | str):
        try:
            confidence = max(0, min(100, int(float(raw["confidence"]))))
        except (ValueError, OverflowError):  # "high", nan, inf
            confidence = None
    return Verdict(tuple(groups), _text(raw.get("summary"), 200), confidence)


def assemble_insights(verdict: Verdict, findings: Sequence[CompactFinding]) -> list[Insight]:
    """The verdict's insights first, in its order, each merged from the agents' own
    findings; every finding it did not name joins the listed insight about the same
    metrics, or follows in the deterministic merge's order. Every finding ends up in
    exactly one insight."""
    by_id = {f.id: f for f in findings}
    groups = [[by_id[i].insight for i in ids] for ids in verdict.groups]
    key_to_group = {_group_key(ins): n for n, g in enumerate(groups) for ins in g}
    named = {i for ids in verdict.groups for i in ids}
    rest: list[Insight] = []
    for finding in findings:
        if finding.id in named:
            continue
        n = key_to_group.get(_group_key(finding.insight))
        if n is None:
            rest.append(finding.insight)
        else:
            groups[n].append(finding.insight)
    return [merge_group(g) for g in groups] + merge_insights(rest)


_VERDICT_TOP = 2  # insights a simulated verdict names; the rest follow the deterministic order
_VERDICT_GROUP_IDS = 6  # VERDICT_SCHEMA's maxItems for one group (engine/run/agents.py)


def verdict_for(findings: Sequence[CompactFinding]) -> dict[str, Any]:
    """The simulated Consolidator's verdict: the same grouping and ranking as the
    deterministic merge, naming only the top insights, so it stays a few dozen tokens."""
    groups = _ranked_groups(list(findings), lambda f: f.insight)
    if not groups:
        return {"insights": [], "summary": "No findings.", "confidence": 0}
    worst = merge_group([f.insight for f in groups[0]])
    return {
        # At most the schema's ids a group, as a grammar-bound model must: the findings
        # left unnamed rejoin their group by problem key (`assemble_insights`).
        "insights": [[f.id for f in g][:_VERDICT_GROUP_IDS] for g in groups[:_VERDICT_TOP]],
        "summary": worst.title,
        "confidence": _SEVERITY_CONFIDENCE[worst.severity],
    }


def shared_grounding_lines(values: Values) -> list[str]:
    """Every check that fires, with the roles it concerns: the same lines for every
    agent, so every prompt about one snapshot starts with the same bytes."""
    roles_of: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for role in ROLES:
        for f in findings(values, role):
            roles_of.setdefault((f.title, f.metrics), []).append(role)
    found = findings(values, ALL_ROLES)
    if not found:
        return ["- every USE-method check is within its thresholds"]
    return [
        f"- {f.severity}: {', '.join(f.metrics)} = {f.value:g} (threshold {f.threshold:g}) — "
        f"{f.title} [{', '.join(roles_of.get((f.title, f.metrics), ['all']))}]"
        for f in found
    ]


def metric_severity(metric: str, value: float | None) -> Severity | None:
    """How bad one field's value is by the rule that reads it (None: no rule fires, or
    the value is unknown): the wall view's tile colour."""
    if value is None:
        return None
    rule = next((r for r in RULES if r.metric == metric), None)
    hit = rule.severity(value) if rule is not None else None
    return hit[0] if hit is not None else None
