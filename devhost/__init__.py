"""A local Azure Functions host for Python v2-model apps, for machines where `func` cannot run.

It indexes an `azure.functions.FunctionApp` from its own metadata and serves its HTTP, queue and
timer triggers the way the Functions host does (see README.md for what differs).
"""
