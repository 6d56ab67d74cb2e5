"""The command-line client for catalog.ProductCatalog: `python -m client --help`."""
