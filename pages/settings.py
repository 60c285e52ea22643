"""Settings: the agent roster, the result cache, where Quorum keeps its files, and the
LLM endpoints (each one's health and slots)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import config, resources, safe
from ui import context as ui_context

ROSTER_EXAMPLE = """\
# quorum.toml — override any agent's model, instructions or token cap
[agents.PerformanceAnalyst]
model = "mistral:7b"
instructions = "You are a performance engineer ..."  # the end of its prompt

[agents.Consolidator]
model = "llama3.1:70b"
max_tokens = 256
"""

ctx = ui_context.context()
st.title("Settings")

st.markdown("#### Agent roster")
path = ctx.roster_path or config.current().config_path
if ctx.roster_error:
    st.error(safe.md(ctx.roster_error), title="quorum.toml is invalid: using the default roster")
elif path.is_file():
    st.caption(safe.md(f"Loaded from {path}."))
else:
    st.caption(safe.md(f"Default roster: no {path} found."))
default_model = ctx.backend.model if ctx.backend is not None else "the backend's model"
roster = ctx.roster
members = [
    *(("specialist", a) for a in roster.specialists),
    ("consolidator", roster.consolidator),
    ("single-agent mode", roster.generalist),
]
st.dataframe(
    pd.DataFrame(
        [
            {
                "name": spec.name,
                "role": spec.role,
                "used as": used,
                "model": spec.model or f"default ({default_model})",
                "prompt": spec.system_prompt,
                "instructions": spec.instructions,
                "max tokens": spec.max_tokens,
            }
            for used, spec in members
        ]
    ),
    hide_index=True,
    column_config={
        "prompt": st.column_config.TextColumn("prompt", width="medium"),
        "instructions": st.column_config.TextColumn("instructions", width="large"),
    },
)
with st.expander("Roster file format"):
    st.markdown(
        safe.md(f"Put a TOML file at {path} (or point $QUORUM_CONFIG at one).")
        + " Per agent name: `model`, `instructions` (its role-specific text, at the end of"
        " its prompt), `max_tokens` (its answer's cap) and `system_prompt` (shared by every"
        " agent by default, so the server's prefix cache serves them all):"
    )
    st.code(ROSTER_EXAMPLE, language="toml")

st.markdown("#### Result cache")
cache = resources.cache_for(ctx)


def clear_cache() -> None:
    # A callback runs before the rerun, so the numbers below already show the empty cache.
    st.session_state["cache_cleared"] = cache.clear()


stats = cache.stats()
if stats.degraded:
    st.warning(safe.md(stats.degraded), title="The cache is disabled (runs still work, uncached)")
if not ctx.cache_enabled:
    st.info("The result cache is switched off in the sidebar: every run is fresh.")
tiles = st.columns(5)
tiles[0].metric("Entries", f"{stats.entries:,}")
tiles[1].metric("Size", f"{stats.size_bytes / 1024:,.1f} KiB")
tiles[2].metric("Hits", f"{stats.hits:,}", help="Since this dashboard process started.")
tiles[3].metric("Misses", f"{stats.misses:,}", help="Since this dashboard process started.")
tiles[4].metric("TTL", f"{stats.ttl_s:,.0f} s")
st.text(f"{'Redis (shared by every replica)' if stats.kind == 'redis' else 'Directory'}: "
        f"{stats.directory}")  # fmt: skip
st.caption(
    f"A degraded result (fewer than all agents answered) is kept only "
    f"{stats.degraded_ttl_s:,.0f} s, so the next refresh tries again."
)
if ctx.state_error:
    st.error(safe.md(ctx.state_error), title="quorum.toml [cache] is invalid: cache on disk")
st.button("Clear cache", key="cache_clear", icon=":material/delete_sweep:", on_click=clear_cache)
if (removed := st.session_state.pop("cache_cleared", None)) is not None:
    st.success(f"Cleared {removed} cached result(s).")

st.markdown("#### Files")
st.dataframe(
    pd.DataFrame(
        [
            {"what": "data directory ($QUORUM_DATA_DIR)", "path": str(ctx.data_dir)},
            {"what": "result cache", "path": str(ctx.cache_dir)},
            {"what": "history (JSON lines)", "path": str(ctx.history_path)},
            {"what": "shared state ($QUORUM_CACHE_URL)", "path": ctx.state_where},
            {"what": "agent roster", "path": str(path)},
        ]
    ),
    hide_index=True,
)

st.markdown("#### LLM endpoints")
if ctx.backend is None:
    st.info("The backend settings in the sidebar are invalid: no endpoint to show.")
elif (engine := resources.engine_for(ctx)) is not None:
    hosts = ctx.backend.members()
    statuses = resources.endpoint_statuses(ctx.backend)
    slots = engine.endpoint_slots()
    live = engine.endpoint_live()
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "endpoint": url,
                    "kind": member.kind,
                    "model": member.model,
                    "reachable": "yes" if status.reachable else "no",
                    "version": status.version or "",
                    "models": ", ".join(status.models[:6])
                    + (" …" if len(status.models) > 6 else ""),
                    "slots": "no limit" if part.slots is None else str(part.slots),
                    "slots from": part.source,
                    "live": now or "",
                    "error": status.error or "",
                }
                for member, (url, status), part, now in zip(
                    hosts, statuses, slots, live, strict=True
                )
            ]
        ),
        hide_index=True,
        key="endpoints_table",
    )
    total = engine.server_slots()
    if len(hosts) > 1:
        st.caption(
            f"Agents are spread over {len(hosts)} endpoints by free slots "
            f"({'no limit' if total.slots is None else total.slots} in all). An endpoint that "
            "refuses connections, drops them or answers HTTP 5xx is skipped for the rest of "
            "a run and its agents are retried on another, within their own timeout."
        )
    else:
        st.caption(
            "One endpoint. For several LLM hosts, list them as [[endpoints]] in quorum.toml "
            "and choose “Several LLM hosts” in the sidebar (see docs/deployment.md)."
        )
