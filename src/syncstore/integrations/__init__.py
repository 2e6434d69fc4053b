"""Integrations of syncstore with agent frameworks, each behind an extra:
:mod:`syncstore.integrations.langgraph` (``pip install 'syncstore[langgraph]'``)."""
