"""Tools for the people who write flows: try a flow in the terminal, draw it, compare versions.

* ``flows``: find the flow a command names (a path, or a name in the flows folder) and load it checked.
* ``simulator`` + ``console``: ``ivr try``, a pretend call through the real engine and the fake Hoiio.
* ``graph``: ``ivr graph``, diagrams in Mermaid, Graphviz dot, SVG and PNG.

May import the rest of ``engine``; nothing in the serving engine imports this package.
"""
