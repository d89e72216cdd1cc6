"""mixgan: the package behind the ScoreMix / ReMix / MixDL reproduction workflow.

Every workflow rule calls one command of ``python -m mixgan`` (see ``mixgan.cli``); each
command is a thin wrapper over a function of this package that tests call directly.
"""

__version__ = "0.1.0"
