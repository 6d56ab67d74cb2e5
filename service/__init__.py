"""The catalog gRPC server that Cloud Run runs: `python -m service`."""
