"""Calibration-aided edge inference offloading with early-exit DNNs: the pure library."""
