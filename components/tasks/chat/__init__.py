"""The ``chat`` task: conversations, the ChatML template, per-assistant-turn examples with a
fixed context, end-of-answer remedies and answer metrics (task.py registers the kind)."""
