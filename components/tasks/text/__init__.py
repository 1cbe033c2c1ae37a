"""The ``text`` task: sources, tokenizers, packing, caches and the resumable stream (task.py
registers the kind)."""
