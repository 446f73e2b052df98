"""The config: composing it in Python, its checks, presets, resolvers, building objects."""
