"""Test-only: every os.replace / os.rename sleeps OMNI_TEST_RENAME_DELAY seconds first.

Put on PYTHONPATH by tests/killing.py, so kill tests land between renames more often.
Never on the path of the product itself.
"""

import os
import time

_delay = float(os.environ.get("OMNI_TEST_RENAME_DELAY", "0") or 0)

if _delay > 0:
    _replace, _rename = os.replace, os.rename

    def _slow_replace(src, dst, *args, **kwargs):
        time.sleep(_delay)
        return _replace(src, dst, *args, **kwargs)

    def _slow_rename(src, dst, *args, **kwargs):
        time.sleep(_delay)
        return _rename(src, dst, *args, **kwargs)

    os.replace, os.rename = _slow_replace, _slow_rename
