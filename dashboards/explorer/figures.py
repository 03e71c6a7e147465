"""Pure figure builders: `(df, *, options) -> go.Figure`, no I/O, no state (STYLE §11)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

GROUP_COLORS = {"direct": "#2563eb", "shared": "#38bdf8", "idle": "#f59e0b", "unallocated": "#94a3b8"}
TEAM_COLORS = ("#4f46e5", "#0d9488", "#db2777", "#ea580c", "#65a30d", "#7c3aed", "#0891b2", "#ca8a04")
ANOMALY_STYLE = {
    "nan": ("#dc2626", "x"),
    "spike": ("#f59e0b", "triangle-up"),
    "divergence": ("#b91c1c", "diamond"),
}
FONT = "Inter, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"


def _base(fig: go.Figure, *, height: int = 360) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 56, "r": 16, "t": 24, "b": 40},
        font={"family": FONT, "size": 12, "color": "#1f2937"},
        legend={"orientation": "h", "y": -0.18},
        hoverlabel={"font_family": FONT},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    fig.update_xaxes(showgrid=False, linecolor="#e5e7eb")
    fig.update_yaxes(gridcolor="#f1f5f9", zeroline=False)
    return fig


def empty(message: str, *, height: int = 240) -> go.Figure:
    """A blank figure carrying a message where data is missing."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#6b7280"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base(fig, height=height)


def team_color(team: str, teams: tuple[str, ...]) -> str:
    index = teams.index(team) if team in teams else abs(hash(team))
    return TEAM_COLORS[index % len(TEAM_COLORS)]


def spend_stack(df: pd.DataFrame, *, stack: str, currency: str, teams: tuple[str, ...]) -> go.Figure:
    """Daily spend as stacked bars: by category group (direct/shared/idle/unallocated) or by team.

    `df` has day, team, grp, cost (currency units). In team mode, idle and unallocated stay as their
    own grey/amber series so the bars still add up to the day's total.
    """
    if df.empty:
        return empty("No allocated cost in this range")
    fig = go.Figure()
    if stack == "team":
        labelled = df.assign(series=df.team.where(df.team.notna(), df.grp))
        order = [t for t in teams if t in set(labelled.series)] + [
            g for g in ("idle", "unallocated") if g in set(labelled.series)
        ]
        colors = {**{t: team_color(t, teams) for t in teams}, **GROUP_COLORS}
    else:
        labelled = df.assign(series=df.grp)
        order = [g for g in GROUP_COLORS if g in set(labelled.series)]
        colors = GROUP_COLORS
    per_day = labelled.groupby(["series", "day"], as_index=False).cost.sum()
    for name in order:
        part = per_day[per_day.series == name]
        fig.add_bar(
            x=part.day,
            y=part.cost,
            name=name,
            marker_color=colors.get(name, "#64748b"),
            customdata=[name] * len(part),
            hovertemplate=f"{name}<br>%{{x|%b %d}}: %{{y:,.2f}} {currency}<extra></extra>",
        )
    fig.update_layout(
        barmode="stack",
        bargap=0.15,
        yaxis_title=f"{currency} per day",
        legend={"traceorder": "normal", "orientation": "h", "y": -0.18},
    )
    return _base(fig)


def sm_heatmap(df: pd.DataFrame, *, threshold: float) -> go.Figure:
    """SM activity per GPU (rows) over time (columns); GPUs that only report coarse utilization say so."""
    if df.empty:
        return empty("No GPU usage in this window")
    labels = df.assign(
        label=df.gpu_label
        + " · "
        + df.model.map(_short_model)
        + df.measure.map(lambda m: " (util)" if m == "utilization" else "")
    )
    grid = labels.pivot_table(index="label", columns="bucket", values="value", aggfunc="mean")
    order = labels.groupby("label").value.mean().sort_values(ascending=False).index
    grid = grid.reindex(order)
    fig = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=grid.columns,
            y=grid.index,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar={"title": {"text": "SM active"}, "tickformat": ".0%", "thickness": 12},
            hovertemplate="%{y}<br>%{x}<br>%{z:.0%}<extra></extra>",
        )
    )
    height = max(260, min(820, 15 * len(grid) + 90))
    fig.update_yaxes(tickfont={"size": 10}, automargin=True)
    fig.update_layout(
        title={
            "text": f"least busy GPUs; below {threshold:.0%} is flagged",
            "font": {"size": 12},
            "x": 0,
            "xanchor": "left",
        },
        margin={"t": 36},
    )
    return _base(fig, height=height)


def _short_model(model: str | None) -> str:
    text = (model or "").upper()
    return next((f for f in ("H100", "H200", "A100", "A10G", "L4") if f in text), model or "?")


def loss_curve(curve: pd.DataFrame, anomalies: pd.DataFrame, *, job_id: str) -> go.Figure:
    """The run's loss per step; each anomaly (nan, spike, divergence) marked where it was confirmed."""
    if curve.empty:
        return empty(f"No loss recorded for {job_id}")
    finite = curve[curve.loss.map(lambda v: v is not None and math.isfinite(v))]
    fig = go.Figure(
        go.Scatter(
            x=finite.step,
            y=finite.loss,
            mode="lines",
            name="loss",
            line={"color": "#2563eb", "width": 1.6},
            hovertemplate="step %{x:,}<br>loss %{y:.4f}<extra></extra>",
        )
    )
    top = float(finite.loss.max()) if not finite.empty else 1.0
    for row in anomalies.itertuples():
        color, symbol = ANOMALY_STYLE.get(str(row.kind), ("#dc2626", "x"))
        at = finite[finite.step <= row.step].loss
        y = float(at.iloc[-1]) if not at.empty else top
        fig.add_vline(x=row.step, line={"color": color, "dash": "dot", "width": 1})
        fig.add_scatter(
            x=[row.step],
            y=[y],
            mode="markers+text",
            name=str(row.kind),
            text=[str(row.kind)],
            textposition="top center",
            marker={"color": color, "symbol": symbol, "size": 12},
            hovertemplate=f"{row.kind} at step %{{x:,}}<extra></extra>",
        )
    fig.update_layout(
        title={"text": f"{job_id}: loss", "x": 0, "font": {"size": 13}},
        margin={"t": 36},
        xaxis_title="step",
        yaxis_title="loss",
        showlegend=False,
    )
    return _base(fig)


def step_perf(curve: pd.DataFrame, *, job_id: str) -> go.Figure:
    """Step time (seconds) and MFU (0..1) of the run, stacked, sharing the step axis.

    Two y-axes on domains of one figure (make_subplots does the same, several times slower).
    """
    if curve.empty:
        return empty(f"No step timings for {job_id}")
    fig = go.Figure()
    fig.add_scatter(
        x=curve.step,
        y=curve.step_seconds,
        mode="lines",
        line={"color": "#0d9488", "width": 1.4},
        name="step time",
        hovertemplate="step %{x:,}<br>%{y:.3f} s<extra></extra>",
    )
    fig.add_scatter(
        x=curve.step,
        y=curve.mfu,
        mode="lines",
        line={"color": "#7c3aed", "width": 1.4},
        name="MFU",
        xaxis="x2",
        yaxis="y2",
        hovertemplate="step %{x:,}<br>%{y:.1%}<extra></extra>",
    )
    fig.update_layout(
        showlegend=False,
        margin={"t": 36},
        xaxis={"domain": [0, 1], "anchor": "y", "showticklabels": False, "matches": "x2"},
        yaxis={"domain": [0.56, 1], "title": {"text": "step time (s)"}},
        xaxis2={"domain": [0, 1], "anchor": "y2", "title": {"text": "step"}},
        yaxis2={"domain": [0, 0.44], "range": [0, 1], "tickformat": ".0%", "title": {"text": "MFU"}},
    )
    return _base(fig)
