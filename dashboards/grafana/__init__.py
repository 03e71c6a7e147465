"""Grafana dashboards as code (`gpulens dashboards build` / `push`): typed builders -> dashboard JSON."""
