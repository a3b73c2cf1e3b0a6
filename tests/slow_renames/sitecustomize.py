"""Test-only: every os.replace / os.rename sleeps OMNI_TEST_RENAME_DELAY seconds first.

Put on PYTHONPATH by tests/killing.py, so kill tests land between renames more often.
With OMNI_TEST_RENAME_MARK set, the first rename also creates that file before it sleeps:
a kill loop can then aim at the writer's renames instead of its imports.
Never on the path of the product itself.
"""

import os
import time

_delay = float(os.environ.get("OMNI_TEST_RENAME_DELAY", "0") or 0)
_mark = os.environ.get("OMNI_TEST_RENAME_MARK", "")

if _delay > 0:
    _replace, _rename = os.replace, os.rename

    def _wait() -> None:
        global _mark
        if _mark:
            with open(_mark, "a"):
                pass
            _mark = ""
        time.sleep(_delay)

    def _slow_replace(src, dst, *args, **kwargs):
        _wait()
        return _replace(src, dst, *args, **kwargs)

    def _slow_rename(src, dst, *args, **kwargs):
        _wait()
        return _rename(src, dst, *args, **kwargs)

    os.replace, os.rename = _slow_replace, _slow_rename
