"""The catalog benchmark: synthetic catalogs, the seed's server beside ours, h2load (`python -m bench`)."""
