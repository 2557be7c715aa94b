"""The tuning database's bookkeeping: where the default one lies, how a trial budget is spread over the kernels, and
one writer at a time."""
from __future__ import annotations

import stat
import threading
import time

import pytest

from archc import targets
from archc.lower.tune import LOCK, default_db, locked, population, spread

pytestmark = pytest.mark.tvm


def test_the_default_database_lies_in_a_private_folder_of_the_users_cache(tmp_path, monkeypatch):
    """archc's cache folder is made 0700 (the XDG base directory spec's mode); one that already exists
    keeps its mode."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_db(targets.get("x86")) == tmp_path / "cache" / "archc" / "tuning" / "x86"
    assert stat.S_IMODE((tmp_path / "cache" / "archc").stat().st_mode) == 0o700
    (tmp_path / "cache" / "archc").chmod(0o755)
    default_db(targets.get("x86"))
    assert stat.S_IMODE((tmp_path / "cache" / "archc").stat().st_mode) == 0o755


@pytest.mark.parametrize(("trials", "tasks"), [(16, 9), (8, 3), (2, 5), (1000, 7), (64, 64), (5, 1)])
def test_a_budget_is_spread_over_the_kernels_with_nothing_dropped(trials, tasks):
    per_round, per_task = spread(trials, tasks)
    assert per_task * tasks >= trials  # the tasks' caps together allow the whole budget
    assert per_task * tasks < trials + tasks  # and not more than one trial each beyond it
    assert 1 <= per_round <= min(64, per_task)  # every task gets its share each round


def test_the_search_population_grows_with_the_trials_of_a_round_up_to_metaschedules():
    """A short pass (two trials a kernel) evolves 32 candidates, not 512; a time budget's rounds of 8 evolve 64;
    rounds of 64 (the most a round measures) MetaSchedule's own 512."""
    from archc.lower.tune import MINUTES_ROUND
    assert [population(n) for n in (1, 2, 4, 8, 63, 64)] == [32, 32, 32, 64, 504, 512]
    assert population(MINUTES_ROUND) == 64 and population(spread(1000, 7)[0]) == 512


def test_a_second_writer_waits_for_the_first_and_says_who_holds_the_database(tmp_path, capfd):
    db = tmp_path / "db"
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first() -> None:
        with locked(db):
            order.append("first in")
            holding.set()
            release.wait(30)
            order.append("first out")

    def second() -> None:
        with locked(db):
            order.append("second in")

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(30)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.5)
    assert order == ["first in"]  # still waiting
    release.set()
    a.join(30)
    b.join(30)
    assert order == ["first in", "first out", "second in"]
    err = capfd.readouterr().err
    assert f"archc: waiting for the tuning database '{db}', in use by process " in err and err.count("waiting") == 1
    assert (db / LOCK).is_file()
