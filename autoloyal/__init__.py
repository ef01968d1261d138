"""autoloyal: loyalty and messaging platform for car service centres and dealerships.

This package is the composition root: config, CLI, process wiring and HTTP app assembly.
"""

__version__ = "0.1.0"
