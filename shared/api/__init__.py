"""HTTP handlers: Defender-compatible routes, our extensions, and the OpenAPI document."""
