"""Bounded resources (#13, item 6): header bombs, non-regular files, stalled servers.

Each refusal must come in well under a second with about no memory, as one line naming
the file and the problem; the ingest and the stalled reads run as real processes and
servers, each with a timeout, so that a regression fails instead of hanging.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import ctspine_zarr
from ctspine_zarr.errors import InvalidCaseError
from ctspine_zarr.io.limits import MAX_VOLUME_BYTES_ENV, default_max_voxel_bytes
from ctspine_zarr.io.nifti import read_volume
from ctspine_zarr.io.remote import RemoteTimeoutError, with_default_options
from ctspine_zarr.testing.synthetic import make_raw_tree

REPO = Path(__file__).resolve().parents[1]


def _header(dims: tuple[int, ...], dtype: str = "int16") -> bytes:
    """A NIfTI-1 header claiming ``dims``, whatever they are (nibabel's checks bypassed)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.dtype(dtype))
    header["dim"] = [len(dims), *dims, *([1] * (7 - len(dims)))]
    header["pixdim"][1:4] = 1.0
    header["vox_offset"] = 352
    header["magic"] = b"n+1"
    header["qform_code"] = header["sform_code"] = 1
    header["srow_x"], header["srow_y"], header["srow_z"] = np.eye(4)[:3]
    return header.binaryblock + b"\0" * 4


#: Incompressible voxel bytes: with them a bomb is the 3.6 KB file of the issue.
PAYLOAD = np.random.default_rng(0).bytes(3500)


def _bomb(path: Path, dims: tuple[int, ...], payload: bytes = PAYLOAD) -> Path:
    """A small ``.nii.gz`` whose header claims ``dims``, whatever they are."""
    path.write_bytes(gzip.compress(_header(dims) + payload))
    return path


def _zero_members(total: int, member: int = 1 << 26) -> bytes:
    """Gzip members of zeros that decompress to ``total`` bytes (about 1/1000 of it)."""
    one = gzip.compress(b"\0" * member, compresslevel=9)
    return one * (total // member)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ((30000, 30000, 10), r"claims 30000x30000x10 int16 = 16\.8 GiB of voxels, more than"),
        ((32767, 32767, 32767), r"claims 32767x32767x32767 int16 = 64\.0 TiB"),
        ((-16, 8, 8), r"dim\[1\] = -16: every axis needs at least one voxel"),
        ((8, 0, 8), r"dim\[2\] = 0"),
        ((16, 16, 16), r"holds only 3852 bytes \(4692 missing\)"),
    ],
)
def test_impossible_headers_are_refused_at_once(
    tmp_path: Path, dims: tuple[int, ...], message: str
) -> None:
    path = _bomb(tmp_path / "bomb.nii.gz", dims)
    start = time.perf_counter()
    with pytest.raises(InvalidCaseError, match=message) as caught:
        read_volume(str(path), case_id="bomb", max_voxel_bytes=8 << 30)
    assert time.perf_counter() - start < 0.5
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"case 'bomb': {path}: ")


def test_dim0_out_of_range_is_refused(tmp_path: Path) -> None:
    raw = bytearray(_header((8, 8, 8)) + b"\0" * 1024)
    raw[40:42] = (0).to_bytes(2, "little")  # dim[0]
    path = tmp_path / "d0.nii"
    path.write_bytes(bytes(raw))
    with pytest.raises(InvalidCaseError, match=r"dim\[0\] = 0"):
        read_volume(str(path), case_id="d0")


def test_the_deflate_ratio_refuses_a_claim_without_decompressing(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "r.nii.gz", (30000, 30000, 10))
    with pytest.raises(InvalidCaseError, match=r"3\.\d KiB of gzip can hold at most 3\.\d MiB"):
        read_volume(str(path), case_id="r", max_voxel_bytes=1 << 50)


def test_a_stream_longer_than_the_cap_is_counted_and_refused(tmp_path: Path) -> None:
    # a legal small volume followed by gzip members of zeros: 256 MiB from 260 kB
    path = tmp_path / "long.nii.gz"
    path.write_bytes(gzip.compress(_header((8, 8, 8)) + b"\0" * 1024) + _zero_members(1 << 28))
    with pytest.raises(InvalidCaseError, match=r"decompresses to more than the 64\.0 MiB"):
        read_volume(str(path), case_id="long", max_voxel_bytes=64 << 20)
    vol = read_volume(str(path), case_id="long", max_voxel_bytes=1 << 30)  # under the cap
    assert vol.data.shape == (8, 8, 8) and not vol.data.any()


def test_multi_member_and_large_files_still_read_exactly(tmp_path: Path) -> None:
    data = np.arange(40 * 30 * 20, dtype=np.int16).reshape(40, 30, 20)
    whole = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    path = tmp_path / "mm.nii.gz"
    cut = len(whole) // 3
    path.write_bytes(gzip.compress(whole[:cut]) + gzip.compress(whole[cut:]) + b"\0" * 8)
    vol = read_volume(str(path), case_id="mm")
    np.testing.assert_array_equal(vol.data, data.transpose(2, 1, 0))
    with pytest.raises(InvalidCaseError, match="trailing garbage"):
        path.write_bytes(gzip.compress(whole) + b"garbage")
        read_volume(str(path), case_id="mm")


def test_the_cap_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    data = np.zeros((64, 64, 64), np.int16)  # 512 KiB of voxels
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "256KiB")
    assert default_max_voxel_bytes() == 256 << 10
    with pytest.raises(InvalidCaseError, match=f"256.0 KiB memory cap.*{MAX_VOLUME_BYTES_ENV}"):
        read_volume(str(path), case_id="v")
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "1M")
    assert read_volume(str(path), case_id="v").data.shape == (64, 64, 64)
    monkeypatch.setenv(MAX_VOLUME_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_VOLUME_BYTES_ENV):
        default_max_voxel_bytes()
    monkeypatch.delenv(MAX_VOLUME_BYTES_ENV)
    assert 0 < default_max_voxel_bytes() <= 16 << 30


def test_an_uncompressed_file_larger_than_the_cap_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 64), np.int16), np.eye(4)), path)
    with pytest.raises(InvalidCaseError, match=r"the file is 512\.\d KiB, more than"):
        read_volume(str(path), case_id="big", max_voxel_bytes=100_000)


_READ_BOMBS = """
import re, resource, sys, time
from pathlib import Path
from ctspine_zarr.errors import InvalidCaseError
from ctspine_zarr.io.nifti import read_volume

def peak_kib():
    # VmHWM: this process's own peak; ru_maxrss would also count the parent's RSS at fork
    status = Path("/proc/self/status")
    if status.exists():
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read_text()).group(1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak

for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        read_volume(path, case_id="bomb")
    except InvalidCaseError as err:
        print(f"{time.perf_counter() - start:.4f} {err}")
    else:
        print(f"{time.perf_counter() - start:.4f} READ")
print(peak_kib())
"""


def test_bombs_are_refused_with_bounded_memory(tmp_path: Path) -> None:
    paths = [
        _bomb(tmp_path / "wide.nii.gz", (30000, 30000, 10)),
        _bomb(tmp_path / "cube.nii.gz", (32767, 32767, 32767)),
        _bomb(tmp_path / "neg.nii.gz", (-16, 8, 8)),
    ]
    # a legal small volume, then 2 GiB of zeros in 2 MB of gzip: counted, not held
    long = tmp_path / "long.nii.gz"
    long.write_bytes(gzip.compress(_header((8, 8, 8)) + b"\0" * 1024) + _zero_members(1 << 31))
    paths.append(long)
    env = {**os.environ, "PYTHONPATH": str(REPO), MAX_VOLUME_BYTES_ENV: "1G"}
    done = subprocess.run(
        [sys.executable, "-c", _READ_BOMBS, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    *lines, maxrss = done.stdout.strip().splitlines()
    assert len(lines) == len(paths), done.stdout
    for line, path in zip(lines, paths, strict=True):
        seconds, message = line.split(" ", 1)
        assert str(path) in message and "READ" not in message
        assert float(seconds) < (10 if path == long else 0.5), line
    assert "decompresses to more than the 1.0 GiB memory cap" in lines[-1]
    assert int(maxrss) * 1024 < 500e6, f"peak RSS {int(maxrss) / 1024:.0f} MiB"


def _raw_tree_with_traps(root: Path) -> tuple[dict[str, str], set[str]]:
    """A raw tree: 2 good cases (one a symlink), a FIFO image, a directory label, a bomb
    and a -16 dim. Returns ``({trap id: word of its problem}, good ids)``."""
    cases = make_raw_tree(root, n_cases=6, shape=(16, 16), n_slices=(4, 6), seed=3)
    fifo, folder, bomb, negative = cases[2], cases[3], cases[4], cases[5]
    fifo.image_path.unlink()
    os.mkfifo(fifo.image_path)
    folder.label_path.unlink()
    folder.label_path.mkdir()
    _bomb(bomb.image_path, (30000, 30000, 10))
    _bomb(negative.label_path, (-16, 16, 16))
    target = cases[1].image_path.with_name("elsewhere.data")  # a symlink to a file: fine
    cases[1].image_path.rename(target)
    cases[1].image_path.symlink_to(target)
    traps = {
        fifo.case_id: "FIFO",
        folder.case_id: "a directory",
        bomb.case_id: "30000x30000x10",
        negative.case_id: "dim[1] = -16",
    }
    return traps, {cases[0].case_id, cases[1].case_id}


def test_ingest_refuses_fifos_folders_and_bombs_and_finishes(tmp_path: Path) -> None:
    raw, store = tmp_path / "raw", tmp_path / "s.zarr"
    traps, good = _raw_tree_with_traps(raw)
    command = [sys.executable, "-m", "ctspine_zarr.cli", "ingest", str(raw), str(store)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "--workers", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert time.perf_counter() - start < 60
    report = json.loads(Path(f"{store}.ingest-report.json").read_text())
    outcomes = {o["case_id"]: o for o in report["outcomes"]}
    for case_id, word in traps.items():
        assert outcomes[case_id]["status"] == "refused", outcomes[case_id]
        assert word in outcomes[case_id]["problem"], outcomes[case_id]["problem"]
    ingested = {c for c, o in outcomes.items() if o["status"] == "ingested"}
    assert ingested == good, outcomes


def test_find_cases_names_non_regular_files_without_opening_them(tmp_path: Path) -> None:
    traps, good = _raw_tree_with_traps(tmp_path)
    tree = ctspine_zarr.io.layout.find_cases(str(tmp_path))
    problems = {case.case_id: problem for case, problem in tree.problems}
    fifo, folder = list(traps)[:2]
    assert "image" in problems[fifo] and "not a regular file but a FIFO" in problems[fifo]
    assert "label" in problems[folder] and "not a regular file but a directory" in problems[folder]
    assert {case.case_id for case in tree.cases} == good | set(list(traps)[2:])


def test_read_volume_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.nii.gz"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(InvalidCaseError, match="not a regular file but a FIFO"):
        read_volume(str(fifo), case_id="x")
    (tmp_path / "d.nii.gz").mkdir()
    with pytest.raises(InvalidCaseError, match="but a directory"):
        read_volume(str(tmp_path / "d.nii.gz"), case_id="d")
    assert time.perf_counter() - start < 1


# --- remote timeouts ---------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in held:
            conn.close()


SHORT = {"connect_timeout": 1, "read_timeout": 1, "max_attempts": 2}


def test_a_silent_http_server_gives_a_named_timeout(silent_server: str) -> None:
    url = f"http://{silent_server}/s.zarr"
    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match=r"s\.zarr/zarr\.json: no answer") as caught:
        ctspine_zarr.open(url, storage_options=SHORT)
    assert time.perf_counter() - start < 15
    assert "read_timeout 1.0 s" in str(caught.value) and "max_attempts 2" in str(caught.value)


def test_a_silent_s3_endpoint_gives_a_named_timeout(silent_server: str) -> None:
    options = {**SHORT, "endpoint_url": f"http://{silent_server}", "key": "k", "secret": "s"}
    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match=r"s3://b/s\.zarr/zarr\.json: no answer"):
        ctspine_zarr.open("s3://b/s.zarr", storage_options=options)
    assert time.perf_counter() - start < 30


def test_a_refused_connection_is_named_too() -> None:
    url = f"http://127.0.0.1:{_free_port()}/s.zarr"  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match="Cannot connect to host"):
        ctspine_zarr.open(url, storage_options={"max_attempts": 2})
    assert time.perf_counter() - start < 10


def test_defaults_are_set_and_user_values_win() -> None:
    s3 = with_default_options("s3://b/x", {"config_kwargs": {"read_timeout": 99}})
    assert s3["config_kwargs"] == {
        "connect_timeout": 10.0,
        "read_timeout": 99,
        "retries": {"max_attempts": 3, "mode": "standard"},
    }
    s3 = with_default_options("s3://b/x", {"read_timeout": 5, "max_attempts": 1})
    assert s3["config_kwargs"]["read_timeout"] == 5.0
    assert s3["config_kwargs"]["retries"]["max_attempts"] == 1
    http = with_default_options("https://h/x", {"client_kwargs": {"timeout": {"sock_read": 7}}})
    assert http["client_kwargs"]["timeout"].sock_read == 7
    http = with_default_options("http://h/x", None)
    assert http["client_kwargs"]["timeout"].sock_read == 20.0
    assert with_default_options("memory://x", {"a": 1}) == {"a": 1}
    with pytest.raises(ValueError, match="max_attempts"):
        with_default_options("s3://b/x", {"max_attempts": 0})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_process() -> Iterator[tuple[subprocess.Popen, str]]:
    """moto's S3 server as its own process on 127.0.0.1 (so that it can be SIGSTOPped)."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGCONT)
        server.terminate()
        server.wait(timeout=10)


def test_a_stopped_s3_server_fails_slice_within_the_timeouts(
    moto_process: tuple[subprocess.Popen, str], tmp_path: Path
) -> None:
    import s3fs

    server, endpoint = moto_process
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir("stall")
    raw = tmp_path / "raw"
    cases = make_raw_tree(raw, n_cases=2, shape=(16, 16), n_slices=(6, 8), seed=5)
    url = "s3://stall/s.zarr"
    assert ctspine_zarr.ingest(raw, url, workers=1, storage_options=options, progress=False).ok
    short = {**options, **SHORT}
    ds = ctspine_zarr.open(url, storage_options=short)
    assert ds.ctspine.slice(cases[0].case_id, 1).image.shape == (16, 16)
    server.send_signal(signal.SIGSTOP)
    try:
        start = time.perf_counter()
        with pytest.raises(RemoteTimeoutError, match="no answer from the server"):
            ds.ctspine.slice(cases[1].case_id, 2)
        elapsed = time.perf_counter() - start
    finally:
        server.send_signal(signal.SIGCONT)
    assert elapsed < 30, elapsed
    # the server back, the same handle reads again
    assert ds.ctspine.slice(cases[1].case_id, 2).image.shape == (16, 16)
