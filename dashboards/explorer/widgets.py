"""Small layout pieces the pages share: stat cards, empty states, tables, filter labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import dash_table, dcc, html
from dash.dash_table.Format import Format, Scheme


def number(decimals: int) -> Format:
    """A fresh fixed-point format with thousands separators (Format's setters mutate: never share one)."""
    return Format(precision=decimals, scheme=Scheme.fixed).group(True)


MONEY = number(2)
ONE_DECIMAL = number(1)
PERCENT = Format(precision=1, scheme=Scheme.percentage)
INTEGER = Format(precision=0, scheme=Scheme.fixed).group(True)
GRAPH_CONFIG = {"displaylogo": False, "displayModeBar": False}


def money(value: float, currency: str = "USD") -> str:
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"-{symbol}{abs(value):,.0f}" if value < 0 else f"{symbol}{value:,.0f}"


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


def field(label: str, control: Any, *, width: str = "") -> html.Div:
    return html.Div(className=f"field {width}".strip(), children=[html.Label(label), control])


def panel(title: Any, *children: Any, extra: Any = None) -> html.Section:
    head = html.Div(className="panel-head", children=[html.H2(title), extra])
    return html.Section(className="panel", children=[head, *children])


def table(element_id: str, **kwargs: Any) -> Any:
    """A sortable, paged DataTable in the explorer's style."""
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
        style_cell_conditional=[{"if": {"column_type": "numeric"}, "textAlign": "right"}],
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
