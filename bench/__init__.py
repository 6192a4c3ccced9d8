"""`make bench`: Tollgate side by side with the simulated upstream, a bare relay and LiteLLM (see bench/run)."""
