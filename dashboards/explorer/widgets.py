"""Small layout pieces the pages share: stat cards, empty states, tables, filter labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import dash_table, dcc, html
from dash.dash_table.Format import Format, Group, Scheme, Symbol

from gpulens.attribution.present import currency_symbol
from gpulens.dashboards.explorer import urlstate


def number(decimals: int) -> Format:
    """A fresh fixed-point format with thousands separators (Format's setters mutate: never share one)."""
    return Format(precision=decimals, scheme=Scheme.fixed).group(True)


ONE_DECIMAL = number(1)
PERCENT = Format(precision=1, scheme=Scheme.percentage)
INTEGER = Format(precision=0, scheme=Scheme.fixed).group(True)


def money_format(currency: str) -> Format:
    """A table column of money: `$124,880.25` (present.format_money's look, rendered by the browser so
    the column still sorts as numbers)."""
    return Format(
        precision=2,
        scheme=Scheme.fixed,
        group=Group.yes,
        symbol=Symbol.yes,
        symbol_prefix=currency_symbol(currency),
    )


def loading(*children: Any, element_id: str = "") -> dcc.Loading:
    """Dash's loading state around what a callback re-renders: a spinner while the first figures
    compute, and the stale figures dimmed (not hidden) while a new filter recomputes."""
    named: dict[str, Any] = {"id": element_id} if element_id else {}
    return dcc.Loading(
        list(children),
        type="circle",
        delay_show=150,  # a cached answer (most clicks) never flashes a spinner
        overlay_style={"visibility": "visible", "opacity": 0.45, "filter": "grayscale(0.6)"},
        parent_className="loading",
        **named,
    )


def stat(label: str, value: str, *, tone: str = "", hint: str = "") -> html.Div:
    return html.Div(
        className=f"stat {tone}".strip(),
        title=hint,
        children=[html.Div(label, className="stat-label"), html.Div(value, className="stat-value")],
    )


def empty_state(element_id: str, title: str, commands: Sequence[str], note: str = "") -> html.Div:
    """What to run when a page has no data: the exact `gpulens ingest` commands."""
    return html.Div(
        id=element_id,
        className="empty-state",
        children=[
            html.H3(title),
            html.P("Load it with:"),
            html.Pre("\n".join(commands), className="commands"),
            html.P(note, className="muted") if note else None,
        ],
    )


def url_note(element_id: str, ignored: Sequence[str]) -> html.Div | None:
    """A note naming the URL values the page could not use (`?team=nosuchteam`), or nothing."""
    text = urlstate.ignored_note(ignored)
    return html.Div(text, id=element_id, className="note") if text else None


def field(label: str, control: Any, *, width: str = "") -> html.Div:
    return html.Div(className=f"field {width}".strip(), children=[html.Label(label), control])


def multi_select(
    element_id: str, options: Sequence[str], value: Sequence[str], placeholder: str
) -> dcc.Dropdown:
    """A dropdown of several choices; the placeholder says what choosing none means."""
    return dcc.Dropdown(
        id=element_id, options=list(options), value=list(value), multi=True, placeholder=placeholder
    )


def teams_field(element_id: str, teams: Sequence[str], chosen: Sequence[str]) -> html.Div:
    """Every page's team filter: none chosen reads as all teams."""
    return field("Teams", multi_select(element_id, teams, chosen, "all teams"), width="wide")


def graph(element_id: str) -> dcc.Graph:
    """A figure without Plotly's logo and mode bar (the explorer's figures need neither)."""
    return dcc.Graph(id=element_id, config={"displaylogo": False, "displayModeBar": False})


def two_columns(left: Any, right: Any) -> html.Div:
    """Two panels side by side, the left one wider (style.css `.two-col`: 3 to 2)."""
    return html.Div(className="two-col", children=[left, right])


def panel(title: Any, *children: Any, extra: Any = None) -> html.Section:
    head = html.Div(className="panel-head", children=[html.H2(title), extra])
    return html.Section(className="panel", children=[head, *children])


def table(element_id: str, *, wrap: Sequence[str] = (), **kwargs: Any) -> Any:
    """A sortable, paged DataTable in the explorer's style. Columns in `wrap` (ARNs, advice) wrap onto
    more lines instead of being cut with an ellipsis: an ARN is only useful whole."""
    wrapped = [
        {
            "if": {"column_id": c},
            "whiteSpace": "normal",
            "height": "auto",
            "maxWidth": "380px",
            "overflowWrap": "anywhere",
        }
        for c in wrap
    ]
    return dash_table.DataTable(  # type: ignore[attr-defined]
        id=element_id,
        sort_action="native",
        page_size=kwargs.pop("page_size", 15),
        style_as_list_view=True,
        cell_selectable=kwargs.pop("cell_selectable", True),
        style_header={
            "fontWeight": "600",
            "backgroundColor": "#f8fafc",
            "borderBottom": "1px solid #e2e8f0",
            "color": "#334155",
            "fontSize": "12px",
            "textTransform": "uppercase",
            "letterSpacing": ".03em",
        },
        style_cell={
            "fontFamily": "Inter, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif",
            "fontSize": "13px",
            "padding": "8px 12px",
            "textAlign": "left",
            "border": "none",
            "borderBottom": "1px solid #f1f5f9",
            "maxWidth": "260px",
            "overflow": "hidden",
            "textOverflow": "ellipsis",
        },
        style_cell_conditional=[{"if": {"column_type": "numeric"}, "textAlign": "right"}, *wrapped],
        **kwargs,
    )


def radio(element_id: str, options: Sequence[tuple[str, str]], value: str) -> dcc.RadioItems:
    return dcc.RadioItems(
        id=element_id,
        options=[{"label": lbl, "value": v} for v, lbl in options],
        value=value,
        className="segmented",
        inline=True,
    )
