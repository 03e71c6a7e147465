"""GPU backends behind one small protocol (STYLE §1): nvml, dcgm, sim, and `auto` selection."""
