"""Simulated upstream LLM provider (OpenAI wire format today) with fault injection.

Run it with ``python -m simulator --port 9100``; see ``simulator/app.py`` for the endpoints and
``simulator/faults.py`` for the fault grammar.
"""
