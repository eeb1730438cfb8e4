"""Flow files: YAML reading with positions, the JSON Schema, compilation to ``engine.core.flow`` and
semantic checks. May import ``engine.core``, PyYAML, jsonschema and Jinja2; nothing web or storage.

Public API::

    load_flow(path) -> (Flow | None, [Finding])         # one file; None when there is any error
    load_flows(folder) -> ({name: Flow}, [Finding])      # every *.yaml in a folder
    check_paths(paths) -> [Finding]                      # files and folders, as ``ivr check`` does
    compile_source(source, file, name=None) -> (Flow | None, [Finding])   # from stored bytes
"""

from engine.flowfile.api import check_paths, compile_source, flow_version, load_flow, load_flows
from engine.flowfile.findings import Finding

__all__ = ["Finding", "check_paths", "compile_source", "flow_version", "load_flow", "load_flows"]
