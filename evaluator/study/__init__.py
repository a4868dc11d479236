"""Studies: research questions answered from designed experiments run on the sweep engine.

- :mod:`evaluator.study.model`: the study file and its compilation into sweeps;
- :mod:`evaluator.study.engine`: storage, workers (the sweep engine's), status;
- :mod:`evaluator.study.probes`: clip-policy FD and per-timestep band error of a run;
- :mod:`evaluator.study.collect`: the tables read from storage and run folders;
- :mod:`evaluator.study.stats`, :mod:`evaluator.study.analyses`: the numbers and answers;
- :mod:`evaluator.study.report`, :mod:`evaluator.study.figures`: study.md / study.html.
"""
