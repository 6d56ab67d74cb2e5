"""The rules and names that several parts of the project share, each defined once.

The server, the client, the release tool, the Pulumi program and the policy pack import them from here. Pure
Python with no third-party imports: the policy pack runs in a virtualenv of its own (another protobuf), and
imports this package too.
"""
