import pytest
from django.db import OperationalError

from bounce_tracker.core.db import DEADLOCK_ATTEMPTS, is_deadlock, retry_deadlocks, retry_delay


def mysql_deadlock():
    return OperationalError(1213, "Deadlock found when trying to get lock")


class PostgresDeadlockError(Exception):
    sqlstate = "40P01"


def postgres_deadlock():
    error = OperationalError("deadlock detected")
    error.__cause__ = PostgresDeadlockError()
    return error


def failing(times, error_factory):
    calls = []

    def operation():
        calls.append(1)
        if len(calls) <= times:
            raise error_factory()
        return "done"

    return operation, calls


@pytest.mark.parametrize("error_factory", [mysql_deadlock, postgres_deadlock])
def test_a_deadlocked_statement_is_run_again(error_factory):
    assert is_deadlock(error_factory())
    operation, calls = failing(2, error_factory)
    assert retry_deadlocks(operation) == "done"
    assert len(calls) == 3


def test_other_operational_errors_are_not_retried():
    operation, calls = failing(1, lambda: OperationalError(2006, "MySQL server has gone away"))
    with pytest.raises(OperationalError, match="gone away"):
        retry_deadlocks(operation)
    assert len(calls) == 1


def test_retries_stop_after_the_last_attempt():
    operation, calls = failing(100, mysql_deadlock)
    with pytest.raises(OperationalError, match="Deadlock"):
        retry_deadlocks(operation)
    assert len(calls) == DEADLOCK_ATTEMPTS


def test_retry_delays_double_from_10_ms_to_a_cap_with_jitter_and_end_within_2_s():
    for attempt in range(1, DEADLOCK_ATTEMPTS):
        nominal = min(0.01 * 2 ** (attempt - 1), 0.2)
        delays = {retry_delay(attempt) for _ in range(50)}
        assert all(nominal * 0.5 <= delay <= nominal * 1.5 for delay in delays)
        assert len(delays) > 1  # jittered
    longest = sum(min(0.01 * 2 ** (n - 1), 0.2) * 1.5 for n in range(1, DEADLOCK_ATTEMPTS))
    assert longest < 2


@pytest.mark.django_db
def test_inside_the_callers_transaction_a_deadlock_is_raised_not_retried():
    # pytest-django's django_db wraps the test in atomic(), like a caller's transaction.
    operation, calls = failing(1, mysql_deadlock)
    with pytest.raises(OperationalError):
        retry_deadlocks(operation)
    assert len(calls) == 1
