"""Provider adapters: pure wire mapping plus HTTP clients. May import ``engine.core`` and requests."""
