"""skiplib: the small package behind the course *Skip connections: why deep networks train*.

Every chapter imports it. Modules, in dependency order::

    profile -> data -> blocks -> models -> train -> probes / construct -> plots
    exercises (checks) and experiments (the CLI, ``python -m skiplib``) use all of them.
"""

__version__ = "0.1.0"
