"""`gpulens demo`: a simulated month for a 16-node fleet, loaded through the real commands, served live."""
