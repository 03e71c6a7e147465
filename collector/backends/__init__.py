"""GPU backends behind one small protocol (docs/design.md, convention 1): nvml, dcgm, sim, and `auto`
selection."""
