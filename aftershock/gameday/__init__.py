"""The game day end to end: run an experiment, watch it live, inspect its traces."""
