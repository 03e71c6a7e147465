"""Component ids, in one place so pages, callbacks and browser tests agree on them."""

from __future__ import annotations

URL = "url"
PAGE = "page"
FRESHNESS = "freshness"

# /cost
COST_PERIOD = "cost-period"
COST_RANGE = "cost-range"
COST_TEAMS = "cost-teams"
COST_BASIS = "cost-basis"
COST_STACK = "cost-stack"
COST_VIEW = "cost-view"
COST_CARDS = "cost-cards"
COST_CHART = "cost-chart"
COST_TABLE = "cost-table"
COST_TABLE_TITLE = "cost-table-title"
COST_CSV_BUTTON = "cost-csv-button"
COST_CSV = "cost-csv"
COST_EMPTY = "cost-empty"

# /utilization
UTIL_WINDOW = "util-window"
UTIL_THRESHOLD = "util-threshold"
UTIL_MODEL = "util-model"
UTIL_TEAMS = "util-teams"
UTIL_SUMMARY = "util-summary"
UTIL_NOTE = "util-note"
UTIL_TABLE = "util-table"
UTIL_HEATMAP = "util-heatmap"
UTIL_LIVE = "util-live"
UTIL_EMPTY = "util-empty"

# /training
TRAIN_TEAMS = "train-teams"
TRAIN_RUN = "train-run"
TRAIN_TABLE = "train-table"
TRAIN_LOSS = "train-loss"
TRAIN_PERF = "train-perf"
TRAIN_EMPTY = "train-empty"
