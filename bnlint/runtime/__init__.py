"""``bnlint run``: run a training script under a watch of its data loaders (BNL206).

``orders`` holds the plain observations and the pure questions asked of them (no
torch); ``watch`` records them (patches torch while entered); ``launch`` runs a
script as ``python SCRIPT ARGS`` would; ``findings`` turns the runtime rules' hits
into findings.
"""
