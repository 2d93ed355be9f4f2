"""How errors read on the command line (clierrors) and how an interrupted ingest stops
its cases (write.stopping): the mapping itself, in this process."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from ctspine_zarr.clierrors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Remote,
    exit_codes,
    explain,
)
from ctspine_zarr.errors import IngestInterrupted, StoreError, option, use_command_line_names
from ctspine_zarr.write.stopping import CaseStopped, mark_written, running, stop


def test_the_package_errors_keep_their_message() -> None:
    said = explain(StoreError("s.zarr: no Zarr v3 store there"), command="info")
    assert said.lines("info") == ["ctspine-zarr info: error: s.zarr: no Zarr v3 store there"]
    assert said.code == EXIT_ERROR


def test_an_unexpected_error_is_one_line_with_the_way_to_the_traceback() -> None:
    said = explain(RuntimeError("boom\nsecond line"), command="stats")
    assert said.lines("stats") == [
        "ctspine-zarr stats: error: RuntimeError: boom second line",
        "unexpected: run it again with --debug to see the traceback, and report it",
    ]


def test_os_errors_name_the_path_and_the_reason() -> None:
    err = PermissionError(errno.EACCES, "Permission denied", "/data/out.nii.gz")
    assert explain(err, command="export").message == "/data/out.nii.gz: permission denied"
    err = OSError(errno.ENOSPC, "No space left on device", "/data/s.zarr/x")
    assert explain(err, command="ingest").message == "/data/s.zarr/x: no space left on the device"
    missing = ModuleNotFoundError("No module named 'distributed'", name="distributed")
    said = explain(missing, command="stats")
    assert "'distributed', which is not installed" in said.message
    assert said.hint.startswith("install it (pip install distributed)")


def test_ctrl_c_says_what_is_kept_and_how_to_resume_only_where_a_rerun_resumes() -> None:
    argv = ["ingest", "raw dir", "s.zarr", "--workers", "2"]
    said = explain(IngestInterrupted("s.zarr", 3, 10), command="ingest", argv=argv)
    assert said.code == EXIT_INTERRUPTED
    assert said.lines("ingest") == [
        "ctspine-zarr ingest: interrupted: 3 of 10 case(s) were written to s.zarr and are kept",
        "to resume, run the same command again (it skips the cases written): "
        "ctspine-zarr ingest 'raw dir' s.zarr --workers 2",
    ]
    said = explain(IngestInterrupted("d/s.zarr", 1, 6), command="demo", argv=["demo", "d"])
    assert len(said.lines("demo")) == 1 and said.code == EXIT_INTERRUPTED
    assert explain(KeyboardInterrupt(), command="stats").lines("stats") == [
        "ctspine-zarr stats: interrupted"
    ]


def test_remotes_name_their_endpoint() -> None:
    assert Remote("s3://b/s.zarr", {"endpoint_url": "http://h:9000"}).endpoint() == (
        "the S3 endpoint http://h:9000"
    )
    assert Remote("https://host:8000/s.zarr").endpoint() == "https://host:8000"


def test_exit_codes_list_what_the_command_uses() -> None:
    assert exit_codes().startswith("exit status: 0 done; 2 an error stopped it")
    assert "; 1 problems; 2 " in exit_codes("problems")
    assert exit_codes().endswith("130 interrupted (Ctrl-C).")


def test_options_are_named_as_the_user_types_them() -> None:
    assert option("force_clear") == "force_clear=True"
    assert option("storage_options", None) == "storage_options"
    before = use_command_line_names(True)
    try:
        assert option("force_clear") == "--force-clear"
        assert option("storage_options", None) == "--storage-options"
    finally:
        use_command_line_names(before)
    assert option("force_clear") == "force_clear=True"


def test_stop_waits_for_the_running_cases_of_its_ingest() -> None:
    seen: list[str] = []
    started = threading.Event()

    def case(run: str) -> None:
        try:
            with running(run) as checkpoint:
                started.set()
                while True:
                    checkpoint()
                    time.sleep(0.01)
        except CaseStopped:
            seen.append(run)

    worker = threading.Thread(target=case, args=("run-a",))
    other = threading.Thread(target=case, args=("run-b",))
    worker.start()
    started.wait(5)
    started.clear()
    other.start()
    started.wait(5)
    assert stop("run-a", timeout=10) == (True, 0)
    assert seen == ["run-a"]  # the other ingest's case runs on
    assert stop("run-b", timeout=10) == (True, 0)
    worker.join(5)
    other.join(5)
    assert seen == ["run-a", "run-b"]
    with pytest.raises(CaseStopped), running("run-a"):
        pass  # a case of a stopped ingest does not start


def test_stop_counts_the_cases_its_ingest_wrote() -> None:
    for _ in range(3):
        with running("run-d"):
            mark_written("run-d")
    assert stop("run-d") == (True, 3)


def test_stop_gives_up_on_a_case_that_never_checks() -> None:
    release = threading.Event()

    def case() -> None:
        with running("run-c"):
            release.wait(10)

    worker = threading.Thread(target=case)
    worker.start()
    time.sleep(0.05)
    assert stop("run-c", timeout=0.2) == (False, 0)
    release.set()
    worker.join(5)
