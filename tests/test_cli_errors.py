"""Every ctspine-zarr error is one line (two with a hint) and an exit code (issue #17, 1 and 6).

Each test runs the real command in a child process, as a user would, and checks the
message, the exit code, and that nothing was lost or half-made.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from clirun import CHILD_TIMEOUT, cli, cli_each, error_lines, ingest_command

import ctspine_zarr
from ctspine_zarr.errors import StoreError
from ctspine_zarr.io.layout import find_cases
from ctspine_zarr.testing.synthetic import make_raw_tree

#: No credentials at all: none in the environment, no config files, no instance metadata.
NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "AWS_PROFILE": "",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bucket_keys(url: str, options: dict[str, str]) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    return fs.find(url)


# --------------------------------------------------------------------------------------------
# Bad argument values: refused before anything runs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_stats_refuses_bad_workers_at_once(store: Path, value: str) -> None:
    started = time.monotonic()
    done = cli("stats", store, "--workers", value, timeout=60)
    lines = error_lines(done, "stats")
    shown = repr(value) if value == "two" else value
    assert lines[0] == (
        "ctspine-zarr stats: error: argument --workers: must be a whole number of at least 1, "
        f"but is {shown}"
    )
    assert lines[1] == "(see: ctspine-zarr stats --help)"
    assert time.monotonic() - started < 60


def test_ingest_refuses_bad_workers_and_scheduler_before_writing(
    raw_tree: tuple[Path, list], tmp_path: Path
) -> None:
    target = tmp_path / "new.zarr"
    refusals = (
        ("--workers", "-1", "must be a whole number of at least 1, but is -1"),
        ("--scheduler", "bogus", "must be one of threads, processes, sync, distributed"),
        ("--raw-storage-options", "{bad", "must be a JSON object"),
    )
    runs = cli_each(*(("ingest", raw_tree[0], target, o, v) for o, v, _ in refusals))
    for (option, _, said), done in zip(refusals, runs, strict=True):
        lines = error_lines(done, "ingest")
        assert f"error: argument {option}: {said}" in lines[0]
        assert not target.exists() and not Path(f"{target}.ingest-report.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "said"),
    [("{bad", "must be a JSON object (Expecting property name"), ("[1]", "must be a JSON object")],
)
def test_bad_storage_options_json_is_one_line(store: Path, text: str, said: str) -> None:
    lines = error_lines(cli("info", store, "--storage-options", text), "info")
    assert lines[0].startswith(f"ctspine-zarr info: error: argument --storage-options: {said}")
    assert repr(text) in lines[0]


def test_bad_values_of_every_kind_are_usage_errors(store: Path, tmp_path: Path) -> None:
    refusals = (
        (
            ("synth", tmp_path / "t", "--cases", "0"),
            "--cases: must be a whole number of at least 1",
        ),
        (("demo", tmp_path / "d", "--size", "-3"), "--size: must be a whole number of at least 1"),
        (("serve", store, "--port", "70000"), "--port: must be a TCP port from 0 to 65535"),
        (("stats", store, "--fingerprint-samples", "x"), "--fingerprint-samples: must be 'nnunet'"),
        (("stats", store, "--split", "trian"), "unknown split 'trian'; the splits are train,"),
        (("cases", store, "junk", "--bogus"), "cases: error: unrecognized arguments: junk --bogus"),
    )
    runs = cli_each(*(args for args, _ in refusals))
    for (args, said), done in zip(refusals, runs, strict=True):
        lines = error_lines(done, str(args[0]))
        assert said in lines[0], lines
    assert not (tmp_path / "t").exists() and not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------------
# Credentials and endpoints
# --------------------------------------------------------------------------------------------


def test_s3_without_credentials_says_what_to_set(
    s3: tuple[str, dict[str, str], object], raw_tree: tuple[Path, list]
) -> None:
    bucket, options, _ = s3
    endpoint = options["endpoint_url"]
    url = f"{bucket}/ctspine1k.zarr"
    no_key = json.dumps({"endpoint_url": endpoint})
    commands = (
        ("ingest", raw_tree[0], url, "--quiet", "--storage-options", no_key),
        ("info", url, "--storage-options", no_key),
    )
    for args, done in zip(commands, cli_each(*commands, env=NO_CREDENTIALS), strict=True):
        lines = error_lines(done, str(args[0]))
        assert lines[0].endswith(
            f"error: {url}: no S3 credentials found for the S3 endpoint {endpoint}"
        )
        assert lines[1].startswith('give "key" and "secret" in --storage-options, or set ')
    assert _bucket_keys(bucket, options) == []


def _denied(done: subprocess.CompletedProcess[str], command: str, url: str, endpoint: str) -> str:
    lines = error_lines(done, command)
    assert f"error: {url}: access denied by the S3 endpoint {endpoint} (" in lines[0]
    assert lines[1].startswith("check the key and secret (--storage-options")
    return lines[0]


def test_s3_with_a_wrong_key_is_access_denied_and_writes_nothing(
    s3: tuple[str, dict[str, str], object], raw_tree: tuple[Path, list]
) -> None:
    from moto import settings

    bucket, options, _ = s3
    endpoint = options["endpoint_url"]
    url = f"{bucket}/ctspine1k.zarr"
    wrong = json.dumps({**options, "key": "nobody", "secret": "wrong"})
    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # the server now checks every request's key
    try:
        done = cli("info", url, "--storage-options", wrong, env=NO_CREDENTIALS)
        assert "(InvalidAccessKeyId: The AWS Access Key Id" in _denied(done, "info", url, endpoint)
        done = cli("ingest", raw_tree[0], url, "--quiet", "--storage-options", wrong)
        _denied(done, "ingest", url, endpoint)
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = before
    assert _bucket_keys(bucket, options) == []


def test_s3_anonymous_is_access_denied_and_a_rerun_with_the_key_completes(
    s3: tuple[str, dict[str, str], object], raw_tree: tuple[Path, list]
) -> None:
    bucket, options, _ = s3
    endpoint = options["endpoint_url"]
    url = f"{bucket}/ctspine1k.zarr"
    anonymous = json.dumps({"endpoint_url": endpoint, "anon": True})
    done = cli("ingest", raw_tree[0], url, "--quiet", "--storage-options", anonymous)
    _denied(done, "ingest", url, endpoint)
    # moto lets anonymous requests write, then refuses a read: what was written resumes
    done = cli("ingest", raw_tree[0], url, "--quiet", "--storage-options", json.dumps(options))
    assert done.returncode == 0, done.stderr
    ids = sorted(case.case_id for case in find_cases(str(raw_tree[0])).cases)
    assert sorted(ctspine_zarr.open(url, storage_options=options).ctspine.case_ids()) == ids


def test_an_unreachable_s3_endpoint_is_one_line_after_bounded_retries(
    raw_tree: tuple[Path, list], tmp_path: Path
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    options = json.dumps({"endpoint_url": endpoint, "key": "a", "secret": "b"})
    started = time.monotonic()
    done = cli(
        "info", "s3://bucket/ctspine1k.zarr", "--storage-options", options, env=NO_CREDENTIALS
    )
    lines = error_lines(done, "info")
    assert lines[0].startswith("ctspine-zarr info: error: s3://bucket/ctspine1k.zarr/zarr.json: ")
    assert f'"{endpoint}/bucket/ctspine1k.zarr/zarr.json"' in lines[0]
    assert "max_attempts 3; set them in --storage-options)" in lines[0]
    # the raw tree on an unreachable endpoint: named with its own option, nothing written
    local = tmp_path / "s.zarr"
    done = cli("ingest", "s3://bucket/raw", local, "--raw-storage-options", options)
    lines = error_lines(done, "ingest")
    assert lines[0].startswith(
        f"ctspine-zarr ingest: error: s3://bucket/raw: cannot reach the S3 endpoint {endpoint} ("
    )
    assert lines[0].endswith("max_attempts in --raw-storage-options)")
    assert not local.exists()
    assert time.monotonic() - started < 120  # bounded: 3 attempts of a refused connection


def test_an_unreachable_http_store_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/ctspine1k.zarr"
    lines = error_lines(cli("cases", url, timeout=120), "cases")
    assert lines[0].startswith(f"ctspine-zarr cases: error: {url}/zarr.json: no answer from")
    assert "Cannot connect to host 127.0.0.1" in lines[0]


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def test_export_to_a_missing_folder_names_the_users_path(store: Path, tmp_path: Path) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    out = tmp_path / "nodir" / "out.nii.gz"
    lines = error_lines(cli("export", store, case, out), "export")
    assert lines == [
        f"ctspine-zarr export: error: {out}: no folder {out.parent} to write it into "
        "(create it first)"
    ]
    assert ".part" not in lines[0] and not out.parent.exists()


def test_a_store_path_that_is_a_file_names_the_flag(
    raw_tree: tuple[Path, list], tmp_path: Path
) -> None:
    thesis = tmp_path / "thesis.tex"
    thesis.write_text("chapter 1")
    plain, overwrite, info = cli_each(
        ("ingest", raw_tree[0], thesis, "--quiet"),
        ("ingest", raw_tree[0], thesis, "--quiet", "--overwrite"),
        ("info", thesis),
    )
    lines = error_lines(plain, "ingest")
    assert lines == [
        f"ctspine-zarr ingest: error: {thesis}: holds a file; ingest never deletes what it did "
        "not write: choose a new or empty location, or pass --force-clear to delete it"
    ]
    lines = error_lines(overwrite, "ingest")
    assert "; --overwrite replaces only a ctspine store or an empty location:" in lines[0]
    assert "=True" not in lines[0]
    lines = error_lines(info, "info")
    assert lines == [
        f"ctspine-zarr info: error: {thesis}: a file, not a store (a store is a folder)"
    ]
    assert thesis.read_text() == "chapter 1"
    # the library names its keyword instead
    with pytest.raises(StoreError, match=r"pass force_clear=True to delete it$"):
        ctspine_zarr.ingest(raw_tree[0], thesis, workers=1)


# --------------------------------------------------------------------------------------------
# --debug
# --------------------------------------------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.zarr"
    plain = error_lines(cli("info", missing), "info")
    assert plain == [f"ctspine-zarr info: error: {missing}: no Zarr v3 store there"]
    for done in (
        *cli_each(("--debug", "info", missing), ("info", missing, "--debug")),
        cli("info", missing, env={"CTSPINE_DEBUG": "1"}),
    ):
        assert done.returncode == 2
        assert done.stderr.startswith("Traceback (most recent call last):")
        assert "ctspine_zarr.errors.StoreError" in done.stderr
        assert done.stderr.rstrip().splitlines()[-1] == plain[0]


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw tree whose ingest takes a few seconds on one worker."""
    root = tmp_path_factory.mktemp("slow_raw")
    make_raw_tree(root, n_cases=8, shape=(128, 128), n_slices=(80, 120), seed=11)
    return root


def _complete_cases(store: Path) -> set[str]:
    found = set()
    for group in (store / "cases").glob("*/zarr.json"):
        if json.loads(group.read_text()).get("attributes", {}).get("complete") is True:
            found.add(group.parent.name)
    return found


def _interrupt_when_a_case_is_stored(child: subprocess.Popen[str], store: Path) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        lock = store / ".ctspine" / "lock"
        if lock.exists() and lock.stat().st_size > 0 and _complete_cases(store):
            child.send_signal(signal.SIGINT)
            return
        if child.poll() is not None:
            raise AssertionError(f"the ingest ended (exit {child.returncode}) before Ctrl-C")
        time.sleep(0.005)
    raise AssertionError("no case stored in time")


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
@pytest.mark.parametrize("workers", [1, 2])  # 1: the cases run in the main thread
def test_ctrl_c_during_ingest_keeps_what_is_written_and_says_how_to_resume(
    slow_raw: Path, tmp_path: Path, workers: int
) -> None:
    store = tmp_path / "ctspine1k.zarr"
    command = ingest_command(slow_raw, store, workers=workers)
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts its children with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _interrupt_when_a_case_is_stored(child, store)
        out, err = child.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    kept = _complete_cases(store)
    assert len(lines) == 2, lines
    first = lines[0].removeprefix("ctspine-zarr ingest: interrupted: ")
    written, _, rest = first.partition(" of 8 case(s) were written to ")
    assert rest == f"{store} and are kept", lines
    assert 1 <= int(written) == len(kept) < 8  # every case counted is stored, and no other
    rerun = "ctspine-zarr " + " ".join(command[command.index("ingest") :])
    assert lines[1] == (
        f"to resume, run the same command again (it skips the cases written): {rerun}"
    )
    # nothing of the stopped case is left where readers look, and the lock is free
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert f"{8 - len(kept)} ingested, {len(kept)} unchanged, 0 refused" in done.stdout
    ids = sorted(case.case_id for case in find_cases(str(slow_raw)).cases)
    assert sorted(ctspine_zarr.open(store).ctspine.case_ids()) == ids
    checked = cli("verify", store, "--quiet")
    assert checked.returncode == 0, checked.stdout
    assert not (store / ".ctspine").exists()
