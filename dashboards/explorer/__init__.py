"""The Dash cost explorer: `/cost`, `/utilization`, `/training` over the warehouse (SPEC §2, STYLE §11)."""
