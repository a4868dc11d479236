"""Gradio app (spec editor, side-by-side sampling, results explorer).

Not built yet: it has its own issue. The CLI commands it will call already exist
(``validate``, ``show``, ``profile``, ``train``, ``sample``, ``evaluate``, ``report``).
"""
