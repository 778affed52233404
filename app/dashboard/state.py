"""Page state <-> URL query parameters, so that a setup can be shared as a link.

Each page declares its inputs as `Param`s. `Params.init()` seeds the widgets' session state from
the URL on the first run (values the widget could not take are dropped, with a message);
`sync_url()` writes the current page's non-default values back, so the address bar always holds
the page as it is shown. Session keys are `<page>.<name>`; URL keys are the bare names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import streamlit as st

LIST_SEP = ","


@dataclass(frozen=True)
class Param:
    """One widget's value in the URL: its default, the values it accepts, how it reads from text."""

    name: str
    default: Any
    kind: type = str                       # str, int, float, bool, or list (of str)
    choices: Sequence[Any] | None = None   # allowed values (for lists: allowed items)
    low: float | None = None
    high: float | None = None

    def parse(self, raw: str) -> Any:
        """The value `raw` stands for; raises ValueError naming what is accepted."""
        if self.kind is list:
            items = [x for x in raw.split(LIST_SEP) if x] if raw else []
            bad = [x for x in items if self.choices is not None and x not in self.choices]
            if bad:
                raise ValueError(f"unknown {', '.join(bad)}")
            return items
        if self.kind is bool:
            if raw.lower() not in ("1", "0", "true", "false"):
                raise ValueError("use 1 or 0")
            return raw.lower() in ("1", "true")
        value = self.kind(raw)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"choose from {', '.join(map(str, self.choices))}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"must be between {self.low:g} and {self.high:g}")
        return value

    def render(self, value: Any) -> str:
        if self.kind is list:
            return LIST_SEP.join(value)
        if self.kind is bool:
            return "1" if value else "0"
        return f"{value:g}" if self.kind is float else str(value)


class Params:
    """The inputs of one page (or one part of it), keyed `<scope>.<name>` in st.session_state."""

    def __init__(self, scope: str, params: Sequence[Param]) -> None:
        self.scope = scope
        self.params = {p.name: p for p in params}

    def key(self, name: str) -> str:
        return f"{self.scope}.{name}"

    def init(self, url_prefix: str = "") -> list[str]:
        """Seeds missing session values from the URL, else the default; returns messages for bad URL values."""
        problems = []
        for p in self.params.values():
            key = self.key(p.name)
            if key in st.session_state:
                continue
            value = p.default
            raw = st.query_params.get(url_prefix + p.name)
            if raw is not None:
                try:
                    value = p.parse(raw)
                except ValueError as e:
                    problems.append(f"link parameter {url_prefix}{p.name}={raw!r} ignored: {e}")
            st.session_state[key] = value
        _registry()[f"{self.scope}|{url_prefix}|{','.join(self.params)}"] = (self, url_prefix)
        kept = st.session_state.setdefault("_param_keys", set())
        kept.update(self.key(n) for n in self.params)
        return problems

    def get(self, name: str) -> Any:
        return st.session_state[self.key(name)]

    def url_values(self, url_prefix: str = "") -> dict[str, str]:
        """Current values that differ from their defaults, as URL text."""
        out = {}
        for p in self.params.values():
            value = st.session_state.get(self.key(p.name), p.default)
            if value != p.default:
                out[url_prefix + p.name] = p.render(value)
        return out


def _registry() -> dict[str, tuple[Params, str]]:
    """The Params the current run declared (the shown page's), in declaration order."""
    return st.session_state.setdefault("_url_params_run", {})


def begin_run() -> None:
    """Starts a run: forgets the last page's URL params; keeps every page's inputs for when it is shown again.

    Streamlit drops the state of widgets a run does not show; re-assigning the values keeps them
    [docs.streamlit.io, "Widget behavior": "Retain statefulness when changing pages"]."""
    st.session_state["_url_params_run"] = {}
    for key in st.session_state.get("_param_keys", ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def sync_url(page: str, default_page: str) -> None:
    """Replaces the URL's query parameters with the shown page and its non-default inputs."""
    values: dict[str, str] = {} if page == default_page else {"page": page}
    for params, prefix in _registry().values():
        values.update(params.url_values(prefix))
    if dict(st.query_params.to_dict()) != values:
        st.query_params.from_dict(values)


def choose_page(pages: dict[str, str], default: str, on_change: Callable[[], None] | None = None) -> str:
    """The page slug chosen in the sidebar (seeded from `?page=`)."""
    slugs = list(pages)
    if "page" not in st.session_state:
        raw = st.query_params.get("page", default)
        st.session_state["page"] = raw if raw in slugs else default
        if raw not in slugs:
            st.session_state["_unknown_page"] = raw
    return st.sidebar.radio("Page", slugs, key="page", format_func=pages.__getitem__, on_change=on_change)


def unknown_page_message(pages: dict[str, str], default: str) -> str | None:
    """For the first run of a link with an unknown ?page=: what it asked for and what is shown instead."""
    raw = st.session_state.pop("_unknown_page", None)
    if raw is None:
        return None
    return (f"The link's page {raw!r} does not exist (pages: {', '.join(pages)}); showing "
            f"{pages[default]} instead.")
