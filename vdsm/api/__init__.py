"""Wire adapters: one module per namespace, the only layer that knows wire quirks."""
