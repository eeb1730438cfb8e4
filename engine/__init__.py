"""Webhook-driven IVR flow engine for Hoiio.

Layers, inner to outer (imports point inward only):

* ``engine.core``      pure: flow model, events in, actions out, session state, the interpreter.
* ``engine.flowfile``  YAML reading with positions, the JSON Schema, compile + semantic checks, templates.
* ``engine.providers`` wire mapping and HTTP clients per provider (Hoiio first).
* ``engine.storage``   SQLAlchemy tables, repository, migrations.
* ``engine.service``   the shell: one notification -> one transaction -> blocks to send.
* ``engine.web``       Flask app factory and blueprints.
* ``engine.fakes``     strict fake providers for tests, demos and ``ivr try``.
* ``engine.cli``       the ``ivr`` command.
"""

__version__ = "0.1.0"
