"""The catalog API's generated Python code (`make proto` rewrites every module here but this one).

Import as `from catalog import catalog_pb2, catalog_pb2_grpc`.
"""
