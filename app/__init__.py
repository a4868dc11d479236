"""The surfaces people touch: the ``archsearch`` command line (:mod:`app.cli`) and the
Gradio app. They call the core (``archspec``, ``evaluator``) and hold no logic of their
own; the core never imports this package.
"""
