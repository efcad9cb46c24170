"""The model pipeline, in the order a model file goes through it.

``targets``     which names in a file may be models, and ``path.py::Name(args)`` specs
``modelcheck``  CLI side: one worker per model file, answers -> fact graphs -> findings
``forkserver``  a server that imports torch once and forks a worker per file
``worker``      in the worker: import the file, build its models, trace, build graphs
``loader``      the definitions-only import of user files
``trace``       torch.fx tracing with leaf fallbacks; ``concrete`` records a forward by running it
``graphbuild``  traced graph -> networkx graph of plain facts; ``sites`` source locations
``graphwalk``   route maps over the fact graph that the graph rules share

torch is imported only by the modules that run in the worker.
"""
