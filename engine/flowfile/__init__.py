"""Flow files: YAML reading with positions, the JSON Schema, compilation to ``engine.core.flow`` and
semantic checks. May import ``engine.core``, PyYAML, jsonschema and Jinja2; nothing web or storage."""
