"""Pure figure builders: `(df, *, options) -> go.Figure`, no I/O, no state (docs/design.md, convention 11)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from gpulens.attribution.present import currency_symbol

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
    """A team's colour: by its place among the known teams, else by a stable hash of its name (crc32,
    not `hash()`, which Python salts per process: a team must keep its colour across restarts)."""
    index = teams.index(team) if team in teams else zlib.crc32(team.encode())
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
            hovertemplate=f"{name}<br>%{{x|%b %d}}: {currency_symbol(currency)}%{{y:,.2f}}<extra></extra>",
        )
    fig.update_layout(
        barmode="stack",
        bargap=0.15,
        yaxis_title=f"{currency} per day",
        yaxis_tickprefix=currency_symbol(currency),
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
            colorscale=threshold_scale(threshold),
            colorbar={
                "title": {"text": "SM active"},
                "thickness": 12,
                "tickvals": sorted({0.0, threshold, 0.5, 1.0}),
                "ticktext": [
                    f"{v:.0%} ◀ flagged below" if v == threshold else f"{v:.0%}"
                    for v in sorted({0.0, threshold, 0.5, 1.0})
                ],
            },
            hoverongaps=False,
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


def threshold_scale(threshold: float) -> list[list[object]]:
    """Reds below the SM threshold (flagged), a blue-green ramp above it: the break is the threshold."""
    t = min(max(threshold, 0.001), 0.999)
    return [
        [0.0, "#7f1d1d"],
        [t, "#fca5a5"],
        [t, "#cffafe"],
        [min(1.0, t + (1 - t) / 2), "#22d3ee"],
        [1.0, "#1e3a8a"],
    ]


def _short_model(model: str | None) -> str:
    text = (model or "").upper()
    return next((f for f in ("H100", "H200", "A100", "A10G", "L4") if f in text), model or "?")


@dataclass(frozen=True)
class CurveOptions:
    """How /training draws loss: x is `step` or wall-clock `time`; log y; smoothing as TensorBoard's
    slider (an exponential moving average with weight 0..0.99, debiased at the start)."""

    x: str = "step"
    log: bool = False
    smooth: float = 0.0


RUN_COLORS = ("#2563eb", "#db2777", "#0d9488", "#ea580c", "#7c3aed", "#65a30d")


def smoothed(values: pd.Series, weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average; non-finite values stay out of the average."""
    out, last, n = [], 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(math.nan)
            continue
        last, n = last * weight + (1 - weight) * v, n + 1
        out.append(last / (1 - weight**n))
    return out


def _x(frame: pd.DataFrame, options: CurveOptions) -> pd.Series:
    return frame.ts if options.x == "time" and "ts" in frame else frame.step


def _finite(curve: pd.DataFrame) -> pd.DataFrame:
    return curve[curve.loss.map(lambda v: v is not None and math.isfinite(v))]


def _loss_traces(fig: go.Figure, curve: pd.DataFrame, name: str, color: str, options: CurveOptions) -> None:
    finite = _finite(curve)
    hover = "%{x}<br>loss %{y:.4f}<extra>" + name + "</extra>"
    if options.smooth > 0:
        fig.add_scatter(
            x=_x(finite, options),
            y=finite.loss,
            mode="lines",
            name=f"{name} (raw)",
            line={"color": color, "width": 1},
            opacity=0.25,
            hoverinfo="skip",
            showlegend=False,
        )
    fig.add_scatter(
        x=_x(finite, options),
        y=smoothed(finite.loss, options.smooth) if options.smooth > 0 else finite.loss,
        mode="lines",
        name=name,
        line={"color": color, "width": 1.6},
        hovertemplate=hover,
    )


def _mark_anomalies(
    fig: go.Figure, finite: pd.DataFrame, anomalies: pd.DataFrame, options: CurveOptions
) -> None:
    """Each anomaly at its detection step, and the last good step (the loss minimum before it, where a
    researcher rolls back to) as a green marker with a shaded span between the two."""
    top = float(finite.loss.max()) if not finite.empty else 1.0
    time_axis = options.x == "time"
    for row in anomalies.itertuples():
        color, symbol = ANOMALY_STYLE.get(str(row.kind), ("#dc2626", "x"))
        at = finite[finite.step <= row.step].loss
        y = float(at.iloc[-1]) if not at.empty else top
        x = getattr(row, "ts", None) if time_axis else row.step
        if x is None or (isinstance(x, float) and math.isnan(x)):
            x = row.step
        good = getattr(row, "last_good_step", None)
        if good is not None and not pd.isna(good):
            gx = getattr(row, "last_good_ts", None) if time_axis else good
            fig.add_vrect(x0=gx, x1=x, fillcolor=color, opacity=0.07, line_width=0)
            fig.add_scatter(
                x=[gx],
                y=[row.last_good_loss],
                mode="markers+text",
                name=f"last good before {row.kind}",
                text=["last good"],
                textposition="bottom center",
                marker={"color": "#16a34a", "symbol": "circle", "size": 11},
                hovertemplate=f"last good step {int(good):,} (loss minimum before the {row.kind})"
                + "<br>loss %{y:.4f}<extra></extra>",
            )
        fig.add_vline(x=x, line={"color": color, "dash": "dot", "width": 1})
        fig.add_scatter(
            x=[x],
            y=[y],
            mode="markers+text",
            name=str(row.kind),
            text=[f"{row.kind} detected"],
            textposition="top center",
            marker={"color": color, "symbol": symbol, "size": 12},
            hovertemplate=f"{row.kind} detected at step {int(row.step):,}<extra></extra>",
        )


def loss_curve(
    curve: pd.DataFrame,
    anomalies: pd.DataFrame,
    *,
    job_id: str,
    options: CurveOptions = CurveOptions(),
    others: Mapping[str, pd.DataFrame] | None = None,
) -> go.Figure:
    """The run's loss; each anomaly (nan, spike, divergence) marked where it was detected and at the
    last good step before it; `others` are runs overlaid for comparison (their loss only)."""
    if curve.empty:
        return empty(f"No loss recorded for {job_id}")
    fig = go.Figure()
    _loss_traces(fig, curve, job_id, RUN_COLORS[0], options)
    for i, (name, other) in enumerate((others or {}).items(), start=1):
        if not other.empty:
            _loss_traces(fig, other, name, RUN_COLORS[i % len(RUN_COLORS)], options)
    _mark_anomalies(fig, _finite(curve), anomalies, options)
    fig.update_layout(
        title={"text": f"{job_id}: loss", "x": 0, "font": {"size": 13}},
        margin={"t": 36},
        xaxis_title="wall clock (UTC)" if options.x == "time" else "step",
        yaxis_title="loss (log)" if options.log else "loss",
        showlegend=bool(others),
    )
    if options.log:
        fig.update_yaxes(type="log")
    fig = _base(fig)
    fig.update_layout(legend={"orientation": "h", "y": -0.3})  # below the x axis title
    return fig


def optimizer(curve: pd.DataFrame, *, job_id: str, options: CurveOptions = CurveOptions()) -> go.Figure:
    """Gradient norm and learning rate of the run, stacked on one x axis, as the trainer sent them."""
    have = [c for c in ("grad_norm", "lr") if c in curve and curve[c].notna().any()]
    if curve.empty or not have:
        return empty(f"{job_id}'s trainer sent no grad norm or learning rate", height=300)
    fig = go.Figure()
    x = _x(curve, options)
    if "grad_norm" in have:
        fig.add_scatter(
            x=x,
            y=curve.grad_norm,
            mode="lines",
            name="grad norm",
            line={"color": "#ea580c", "width": 1.4},
            hovertemplate="%{x}<br>grad norm %{y:.3f}<extra></extra>",
        )
    if "lr" in have:
        fig.add_scatter(
            x=x,
            y=curve.lr,
            mode="lines",
            name="learning rate",
            xaxis="x2",
            yaxis="y2",
            line={"color": "#0891b2", "width": 1.4},
            hovertemplate="%{x}<br>lr %{y:.3g}<extra></extra>",
        )
    fig.update_layout(
        showlegend=False,
        margin={"t": 24},
        xaxis={"domain": [0, 1], "anchor": "y", "showticklabels": False, "matches": "x2"},
        yaxis={"domain": [0.56, 1], "title": {"text": "grad norm"}},
        xaxis2={
            "domain": [0, 1],
            "anchor": "y2",
            "title": {"text": "wall clock" if options.x == "time" else "step"},
        },
        yaxis2={"domain": [0, 0.44], "title": {"text": "learning rate"}, "exponentformat": "e"},
    )
    return _base(fig, height=300)


def step_perf(curve: pd.DataFrame, *, job_id: str, options: CurveOptions = CurveOptions()) -> go.Figure:
    """Step time (seconds) and MFU (0..1) of the run, stacked, sharing the step axis.

    Two y-axes on domains of one figure (make_subplots does the same, several times slower).
    """
    if curve.empty:
        return empty(f"No step timings for {job_id}")
    fig = go.Figure()
    fig.add_scatter(
        x=_x(curve, options),
        y=curve.step_seconds,
        mode="lines",
        line={"color": "#0d9488", "width": 1.4},
        name="step time",
        hovertemplate="step %{x:,}<br>%{y:.3f} s<extra></extra>",
    )
    fig.add_scatter(
        x=_x(curve, options),
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
        xaxis2={
            "domain": [0, 1],
            "anchor": "y2",
            "title": {"text": "wall clock" if options.x == "time" else "step"},
        },
        yaxis2={"domain": [0, 0.44], "range": [0, 1], "tickformat": ".0%", "title": {"text": "MFU"}},
    )
    return _base(fig)


# ---- goodput (docs/design.md §8) -----------------------------------------------------------------
GOODPUT_COLORS = {
    "productive": "#16a34a",
    "wasted_progress": "#dc2626",
    "checkpoint_save": "#2563eb",
    "checkpoint_load": "#60a5fa",
    "data_wait": "#f59e0b",
    "eval": "#7c3aed",
    "init": "#a3e635",
    "restart": "#991b1b",
    "other": "#94a3b8",
}


def goodput_bar(run: Mapping[str, object], *, currency: str) -> go.Figure:
    """One run's wall time as one stacked bar of buckets (hours), each with what it cost; the title
    puts step MFU beside effective MFU."""
    fig = go.Figure()
    for bucket, color in GOODPUT_COLORS.items():
        seconds, cost = _number(run.get(f"{bucket}_s")), _number(run.get(f"{bucket}_cost"))
        fig.add_bar(
            x=[seconds / 3600],
            y=[str(run["job_id"])],
            orientation="h",
            name=bucket,
            marker_color=color,
            hovertemplate=f"{bucket}: %{{x:.2f}} h, {cost:,.2f} {currency}<extra></extra>",
        )
    badput = sum(_number(run.get(f"{b}_cost")) for b in GOODPUT_COLORS if b != "productive")
    title = (
        f"goodput {_pct(run.get('goodput'))} · badput {badput:,.2f} {currency} · "
        f"step MFU {_pct(run.get('step_mfu'))} · effective MFU {_pct(run.get('effective_mfu'))}"
    )
    fig.update_layout(barmode="stack", title={"text": title, "font": {"size": 13}})
    fig.update_xaxes(title_text="wall hours")
    return _base(fig, height=300).update_layout(legend={"y": -0.45})  # below the axis title


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else 0.0


def _pct(value: object) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.1%}"  # type: ignore[arg-type]


def badput_by_team(runs: pd.DataFrame, *, currency: str) -> go.Figure:
    """What lost training time cost, per team (bars) and cause (stack)."""
    if runs.empty:
        return empty("No runs with goodput records (run, phase and step records with times)")
    fig = go.Figure()
    by_team = runs.assign(team=runs.team.fillna("(no team)")).groupby("team")
    for bucket, color in GOODPUT_COLORS.items():
        if bucket == "productive":
            continue
        totals = by_team[f"{bucket}_cost"].sum()
        fig.add_bar(
            x=list(totals.index),
            y=list(totals.values),
            name=bucket,
            marker_color=color,
            hovertemplate=f"%{{x}} {bucket}: %{{y:,.2f}} {currency}<extra></extra>",
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text=f"badput ({currency})")
    return _base(fig, height=300)
