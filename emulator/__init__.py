"""An emulator of Azure Resource Manager for local runs and tests (imports nothing of the app).

Run it with `python -m emulator --port PORT --data-dir DIR`; see README.md and PROVIDERS.md.
"""
