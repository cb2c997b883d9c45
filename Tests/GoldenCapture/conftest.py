import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# kafka-python 3.0.12 loads its message schemas, at import, through importlib.resources
# APIs that Python deprecates; import it once here with those warnings silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import fake_broker  # noqa: F401,E402
