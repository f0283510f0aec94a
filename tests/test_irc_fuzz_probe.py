import gc

from tests.test_irc_fuzz import logged_failures


def test_probe_leftover_garbage() -> None:
    with logged_failures() as failures:
        gc.collect()
    for e in failures:
        print("LEFTOVER:", e.get("log_format"), e.get("log_failure"))
    assert not failures
