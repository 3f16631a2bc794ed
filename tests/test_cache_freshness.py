"""A cached execution older than the notebook's quiz file or the library is removed before a build."""

import datetime
import os
import time

import nbformat
import pytest

from book_ext import cache_freshness

jupyter_cache = pytest.importorskip("jupyter_cache")


def _cached(tmp_path, stem):
    from jupyter_cache.base import CacheBundleIn

    path = tmp_path / f"{stem}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"print('{stem}')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    cache = jupyter_cache.get_cache(str(tmp_path / "cache"))
    cache.cache_notebook_bundle(CacheBundleIn(nb, str(path)), check_validity=False, overwrite=True)
    return cache, path


def _set_mtime(path, seconds_from_now):
    moment = time.time() + seconds_from_now
    os.utime(path, (moment, moment))


def _future(seconds):
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


def test_a_quiz_changed_after_the_execution_makes_only_its_notebook_stale(tmp_path):
    cache, first = _cached(tmp_path, "first")
    _, second = _cached(tmp_path, "second")
    for path, offset in ((first, 60), (second, -60)):  # first's quiz edited after caching, second's before
        quiz = path.with_suffix(".quiz.json")
        quiz.write_text("[]")
        _set_mtime(quiz, offset)
    stale = cache_freshness.stale_records(cache, library_time=None)
    assert [(uri, reason) for _, uri, reason in stale] == [(str(first), "first.quiz.json changed")]


def test_a_library_change_after_the_execution_makes_every_record_stale(tmp_path):
    cache, first = _cached(tmp_path, "first")
    _, second = _cached(tmp_path, "second")
    assert cache_freshness.stale_records(cache, library_time=_future(-60)) == []
    stale = cache_freshness.stale_records(cache, library_time=_future(60))
    assert sorted(uri for _, uri, _ in stale) == sorted([str(first), str(second)])


def test_the_library_time_is_its_newest_file_data_included_bytecode_aside(tmp_path):
    package = tmp_path / "pkg"
    files = {"__init__.py": -300, "optim/adam.py": -200, "data_files/digits.npz": -100, "__pycache__/x.pyc": 0,
             "optim/__pycache__/adam.cpython-311.pyc": 50}
    for name, offset in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x")
        _set_mtime(package / name, offset)
    # the data file is the newest source; the bytecode written after it is not a change of the library
    assert cache_freshness.library_changed(package).timestamp() == pytest.approx(
        os.path.getmtime(package / "data_files/digits.npz"), abs=1e-3)
    assert cache_freshness.library_changed(tmp_path / "empty") is None
    import steplab

    assert cache_freshness.library_changed() == cache_freshness.library_changed(os.path.dirname(steplab.__file__))
