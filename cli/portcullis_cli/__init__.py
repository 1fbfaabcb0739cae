"""The `portcullis` command line: request, wait for and use just-in-time VM access.

Imports here stay cheap: `portcullis --help` must answer in well under half a second, so the HTTP
client, azure-identity and rich are imported only by the commands that use them.
"""

__version__ = "0.1.0"
