"""Pure core: flow model, events, actions, session state and the interpreter.

May import the Python standard library only: no Flask, SQLAlchemy, requests, yaml or jinja2,
and no clock or random ids (time and ids are passed in).
"""
