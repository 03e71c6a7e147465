"""The Dash cost explorer: `/cost`, `/utilization`, `/training` over the warehouse (docs/design.md §2,
docs/design.md, convention 11)."""
