"""Makes installed modules look absent, for tests of the "extra not installed" paths.

On PYTHONPATH (before anything else), Python imports this at start-up, in the CLI and in every
worker it starts. Each module named in $INFERSWEEP_TEST_HIDE (comma-separated) is set to None in
sys.modules: `import` then raises ImportError and importlib.util.find_spec returns None, exactly
as if the package were not installed.
"""

import os
import sys

for _name in filter(None, os.environ.get("INFERSWEEP_TEST_HIDE", "").split(",")):
    sys.modules[_name.strip()] = None
