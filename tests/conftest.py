"""Shared fixtures: one quick-mode cache (tiny trained models, reference values) for the session.

The quick benchmark and the notebooks in quick mode train the same tiny models and compute the
same references; sharing one cache trains them once. It lives in pytest's temporary folder, so
the repository's own cache is never touched.
"""

import pytest


@pytest.fixture(scope="session")
def quick_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("quick-cache")
