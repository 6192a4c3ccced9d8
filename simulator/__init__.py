"""Simulated upstream LLM provider with fault injection, speaking three wire formats: OpenAI (openai_api.py),
Anthropic Messages (anthropic_api.py) and Gemini generateContent (gemini_api.py).

Run it with ``python -m simulator --port 9100``; see ``simulator/app.py`` for the endpoints and
``simulator/faults.py`` for the fault grammar.
"""
