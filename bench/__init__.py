"""The catalog benchmark: synthetic catalogs, the seed's server beside ours, h2load (`python -m bench`)."""

# The exit status of `python -m bench` and `python -m bench.telemetry` when a target is missed: `make bench`
# runs both and fails with it.
EXIT_TARGET_MISSED = 3
