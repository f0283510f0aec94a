"""Operators and moderation: who may act (``operators``), the rules they set and how those
expire (``rules``), what their actions do to the chat (``moderator``), and the slash
commands that parse them (``commands``).

Nothing is imported here, so ``chatd.store`` can use the rules' types without importing the
chat service.
"""
