"""Cached executions that are older than what the notebook read are executed again.

jupyter-cache matches a notebook by the hash of its code cells, so an execution
stays valid while the notebook is unchanged, even when a file the notebook reads
has changed since: the lesson's skill check (``<lesson>.quiz.json``, shown by
``display_quiz``) or the ``steplab`` library whose results every cell prints.
Before anything is executed (``builder-inited``), this extension removes, through
jupyter-cache's own API, every cache record created before the last change of

* the notebook's own quiz file, for that notebook's record, or
* any file of the ``steplab`` package (code or data), for every record,

so the build executes those notebooks again. A test run (nbval) re-executes
everything and stores fresh records, so ``make book`` after ``make test``
removes nothing.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _mtime(path: Path) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)


def _as_utc(moment: datetime.datetime) -> datetime.datetime:
    # SQLite returns jupyter-cache's UTC timestamps without their zone.
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def library_changed(package: Path | None = None) -> datetime.datetime | None:
    """When a file of ``package`` (default: the installed ``steplab``) last changed, its
    compiled ``__pycache__`` aside; None if there is no such package."""
    if package is None:
        try:
            import steplab
        except ImportError:
            return None
        package = Path(steplab.__file__).parent
    files = [p for p in Path(package).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return max((_mtime(p) for p in files), default=None)


def stale_records(cache, library_time: datetime.datetime | None) -> list[tuple[int, str, str]]:
    """(pk, uri, reason) for every record older than its notebook's quiz file or the library."""
    stale = []
    for record in cache.list_cache_records():
        created = _as_utc(record.created)
        quiz = Path(record.uri).with_suffix(".quiz.json")
        if quiz.is_file() and _mtime(quiz) > created:
            stale.append((record.pk, record.uri, f"{quiz.name} changed"))
        elif library_time is not None and library_time > created:
            stale.append((record.pk, record.uri, "steplab changed"))
    return stale


def remove_stale(app) -> None:
    if app.config.nb_execution_mode != "cache":
        return
    path = Path(app.config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache")
    if not (path / "global.db").exists():
        return
    from jupyter_cache import get_cache

    cache = get_cache(path)
    for pk, uri, reason in stale_records(cache, library_changed()):
        logger.info(f"cached execution of {uri} is stale ({reason}): it will be executed again")
        cache.remove_cache(pk)


def setup(app):
    app.connect("builder-inited", remove_stale)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
