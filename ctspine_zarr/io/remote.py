"""Remote stores and files: default timeouts and bounded retries, exact keys over HTTP.

Every remote call has a connect timeout, a read timeout (the longest wait for the next
bytes of an answer) and a bounded number of attempts, so a stalled server gives a
:class:`RemoteTimeoutError` naming the URL instead of a hang. The defaults, overridable in
``storage_options`` (user values win):

=================  ========  ===================================================
option             default   meaning
=================  ========  ===================================================
``connect_timeout``  10 s    to open a connection
``read_timeout``     20 s    to wait for the next bytes of an answer
``max_attempts``     3       attempts per request, the first included
=================  ========  ===================================================

For ``s3://`` they become botocore's ``config_kwargs`` (``connect_timeout``,
``read_timeout``, ``retries={"max_attempts": n, "mode": "standard"}``, where given there
they win), and s3fs's own retry loop, which would multiply the attempts, is limited to
one pass. For ``http(s)://`` they become ``client_kwargs={"timeout":
aiohttp.ClientTimeout(sock_connect=..., sock_read=...)}`` and the store's own retries
(timeouts, dropped connections, 429 and 5xx answers).

Over HTTP, a key's path segments are percent-encoded when requested, so case ids with
``%``, ``#``, ``?``, spaces or non-ASCII characters read back as themselves, and an answer
to a Range request that is not the range asked (a server such as ``python -m http.server``
that sends the whole file) raises :class:`RangeNotSupportedError`, never wrong bytes. The
check reads the status and length of the answer itself: it costs no request.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import fsspec
import zarr.storage
from fsspec.implementations.http import HTTPFileSystem
from zarr.abc.store import ByteRequest

from ..compat import http_internals
from ..errors import StoreError, option

if TYPE_CHECKING:  # annotations only: zarr's buffer types live in a private module
    from zarr.core.buffer import Buffer, BufferPrototype

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_READ_TIMEOUT",
    "RANGE_SERVERS",
    "RangeCheckedHTTPFileSystem",
    "RangeNotSupportedError",
    "RemoteStore",
    "RemoteTimeoutError",
    "protocol_of",
    "url_store",
    "url_to_fs",
    "with_default_options",
]

#: Seconds to open a connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the next bytes of an answer.
DEFAULT_READ_TIMEOUT = 20.0
#: Attempts per request, the first included.
DEFAULT_MAX_ATTEMPTS = 3

_S3 = ("s3", "s3a")
_HTTP = ("http", "https")
_OUR_KEYS = ("connect_timeout", "read_timeout", "max_attempts")
_RETRY_STATUS = {429, 500, 502, 503, 504}
#: What a missing key raises in fsspec (zarr's FsspecStore default, spelt out)
_MISSING: tuple[type[Exception], ...] = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
T = TypeVar("T")


class RemoteTimeoutError(StoreError, TimeoutError):
    """A remote store or file that did not answer within the timeouts, after every attempt."""


#: Servers known to honour HTTP Range requests, named by :class:`RangeNotSupportedError`.
RANGE_SERVERS = (
    "`ctspine-zarr serve STORE`, nginx, Apache, `npx http-server`, or S3/GCS/Azure static hosting"
)


class RangeNotSupportedError(StoreError):
    """An HTTP server that answered a Range request with other bytes than the range asked.

    A ctspine store is read in byte ranges (a shard's index, then single slices); a server
    that ignores the ``Range`` header (``python -m http.server``) sends whole shards instead.
    Serve the store with one of :data:`RANGE_SERVERS`.
    """


def protocol_of(url: str) -> str:
    """The lower-case protocol of an fsspec URL (``file`` for a plain path)."""
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _limits(options: dict[str, Any]) -> tuple[float, float, int]:
    """Pop the portable ``connect_timeout``, ``read_timeout``, ``max_attempts`` keys."""
    connect = float(options.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    read = float(options.pop("read_timeout", DEFAULT_READ_TIMEOUT))
    attempts = int(options.pop("max_attempts", DEFAULT_MAX_ATTEMPTS))
    if connect <= 0 or read <= 0 or attempts < 1:
        raise ValueError(
            f"storage_options: connect_timeout ({connect}) and read_timeout ({read}) must be "
            f"positive and max_attempts ({attempts}) at least 1"
        )
    return connect, read, attempts


def with_default_options(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """Return fsspec options for ``url`` with the default timeouts and retries filled in.

    Parameters
    ----------
    url
        The fsspec URL the options are for (only its protocol matters).
    storage_options
        The user's options; every value given there wins, including botocore's
        ``config_kwargs`` and aiohttp's ``client_kwargs["timeout"]``. The portable keys
        ``connect_timeout``, ``read_timeout`` (seconds) and ``max_attempts`` are
        translated for the protocol.

    Returns
    -------
    dict
        Options for ``fsspec.url_to_fs`` (a new dict; the argument is not changed). For
        protocols other than s3 and http(s), the options unchanged.
    """
    options = dict(storage_options or {})
    protocol = protocol_of(url)
    if protocol in _S3:
        connect, read, attempts = _limits(options)
        config = {
            "connect_timeout": connect,
            "read_timeout": read,
            "retries": {"max_attempts": attempts, "mode": "standard"},
        }
        config.update(options.get("config_kwargs") or {})
        options["config_kwargs"] = config
    elif protocol in _HTTP:
        import aiohttp

        connect, read, _ = _limits(options)
        client = dict(options.get("client_kwargs") or {})
        timeout = client.get("timeout")
        if isinstance(timeout, dict):  # e.g. from JSON: {"sock_read": 5}
            timeout = aiohttp.ClientTimeout(**timeout)
        elif isinstance(timeout, int | float):
            timeout = aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout)
        client["timeout"] = timeout or aiohttp.ClientTimeout(
            total=None, sock_connect=connect, sock_read=read
        )
        options["client_kwargs"] = client
    return options


def _describe_limits(url: str, options: dict[str, Any]) -> str:
    """The limits in force for ``url`` given its defaulted options, for error messages."""
    protocol = protocol_of(url)
    if protocol in _S3:
        config = options["config_kwargs"]
        attempts = (config.get("retries") or {}).get("max_attempts", "botocore's default")
        return (
            f"connect_timeout {config.get('connect_timeout')} s, read_timeout "
            f"{config.get('read_timeout')} s, max_attempts {attempts}"
        )
    if protocol in _HTTP:
        timeout = options["client_kwargs"]["timeout"]
        connect, read, attempts = _limits(dict(options))
        return (
            f"connect_timeout {timeout.sock_connect} s, read_timeout {timeout.sock_read} s, "
            f"max_attempts {attempts}"
        )
    return "the filesystem's own"


def _bounded(fs: fsspec.AbstractFileSystem) -> fsspec.AbstractFileSystem:
    """Limit s3fs's own retry loop (5 passes, nested twice) to one: botocore retries."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if hasattr(fs, "retries") and set(protocols) & set(_S3):
        fs.retries = 1
    return fs


def url_to_fs(url: str, options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs`` with the default timeouts and retries (for raw files).

    Parameters
    ----------
    url
        fsspec URL or local path.
    options
        The user's storage options (see :func:`with_default_options`).

    Returns
    -------
    tuple
        ``(filesystem, path)``.
    """
    fs, path = fsspec.core.url_to_fs(url, **with_default_options(url, options))
    return _bounded(fs), path


def url_store(
    url: str, *, storage_options: dict[str, Any] | None = None, read_only: bool = True
) -> RemoteStore:
    """Return a zarr store for an fsspec URL, with timeouts, bounded retries, exact keys.

    Parameters
    ----------
    url
        ``s3://``, ``http(s)://``, ``memory://``, ... URL of the store's root.
    storage_options
        fsspec options; see :func:`with_default_options` for the timeout keys.
    read_only
        Whether the store refuses writes.

    Returns
    -------
    RemoteStore
    """
    options = {"asynchronous": True, **with_default_options(url, storage_options)}
    http = protocol_of(url) in _HTTP
    attempts = _limits(dict(storage_options or {}))[2] if http else 1  # s3: botocore's
    limits = _describe_limits(url, {**options, **_portable(storage_options)})
    if http:
        # keys are percent-encoded by the store; aiohttp must send them as they are
        options["encoded"] = True
        url = str(_yarl_url(url))
        fs, path = RangeCheckedHTTPFileSystem(**options), url
    else:
        fs, path = fsspec.core.url_to_fs(url, **options)
    if not fs.async_impl:  # memory:// and other synchronous filesystems
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

        fs = AsyncFileSystemWrapper(fs, asynchronous=True)
    return RemoteStore(
        fs=_bounded(fs),
        path=path,
        read_only=read_only,
        quote_keys=http,
        max_attempts=attempts,
        limits=limits,
    )


def _portable(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (storage_options or {}).items() if k in _OUR_KEYS}


def _yarl_url(url: str) -> Any:
    import yarl

    return yarl.URL(url)  # quotes what must be quoted, keeps valid %XX escapes


_BYTES = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeCheckedHTTPFileSystem(HTTPFileSystem):
    """fsspec's HTTP filesystem, refusing an answer that is not the byte range asked.

    ``_cat_file`` (what zarr's store calls for every read) is fsspec's own, except that the
    answer to a Range request is checked before its bytes are used: a 206 answer must not
    be longer than the range, and a 200 answer (the whole file) is accepted only where the
    whole file is the range asked (a range from byte 0, or a suffix, at least as long as
    the file). Anything else raises :class:`RangeNotSupportedError`, before the body is
    read when its ``Content-Length`` already tells.
    """

    async def _cat_file(
        self, url: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        if (start is None and end is None) or start == end:
            return bytes(await super()._cat_file(url, start=start, end=end, **kwargs))
        if not http_internals(self):
            return await self._cat_file_by_length(url, start, end, **kwargs)
        kw = {**self.kwargs, **kwargs}
        headers = dict(kw.pop("headers", None) or {})
        headers["Range"] = await self._process_limits(url, start, end)
        session = await self.set_session()
        async with session.get(self.encode_url(url), headers=headers, **kw) as answer:
            self._raise_not_found_for_status(answer, url)
            fits = _answer_check(headers["Range"], answer.status)
            if answer.content_length is not None and not fits(answer.content_length):
                raise _range_error(url, headers["Range"], answer.status, answer.content_length)
            body = bytes(await answer.read())
        if not fits(len(body)):
            raise _range_error(url, headers["Range"], answer.status, len(body))
        return body

    async def _cat_file_by_length(
        self, url: str, start: int | None, end: int | None, **kwargs: Any
    ) -> bytes:
        """The fallback without fsspec's HTTP internals: fsspec's own read, checked by length.

        Without the answer's status, a whole file is told from a range by its length only:
        longer than the range asked is refused (a whole file equal to the range is right).
        """
        body = bytes(await super()._cat_file(url, start=start, end=end, **kwargs))
        if start is not None and start < 0 and end is None:
            asked, longest = f"bytes={start}", -start
        elif start is not None and end is not None and start >= 0:
            asked, longest = f"bytes={start}-{end - 1}", end - start
        else:  # to the end of the file: any length is possible
            return body
        if len(body) > longest:
            raise _range_error(url, asked, 200, len(body))
        return body


def _answer_check(asked: str, status: int) -> Callable[[int], bool]:
    """Whether an answer of ``status`` and a given length is the range ``asked`` (bytes=a-b)."""
    match = _BYTES.match(asked)
    if match is None:  # pragma: no cover - fsspec writes bytes=a-b, bytes=a- or bytes=-n
        return lambda size: True
    first, last = match.groups()
    if first == "":  # the last n bytes
        return lambda size: size <= int(last)
    longest = int(last) - int(first) + 1 if last else None
    if status == 206:
        return lambda size: longest is None or size <= longest
    # the whole file: the right bytes only if the range starts at 0 and covers it
    return lambda size: int(first) == 0 and (longest is None or size <= longest)


def _range_error(url: str, asked: str, status: int, size: int) -> RangeNotSupportedError:
    return RangeNotSupportedError(
        f"{url}: the HTTP server ignores Range requests (asked for {asked}, got HTTP {status} "
        f"with {size} bytes); a ctspine store is read in byte ranges, so serve it with a "
        f"server that honours them: {RANGE_SERVERS}; not `python -m http.server`"
    )


def _retryable(err: BaseException) -> bool:
    """Whether an HTTP failure may pass on a second attempt."""
    import aiohttp

    if isinstance(err, aiohttp.ClientResponseError):
        return err.status in _RETRY_STATUS
    return isinstance(
        err, asyncio.TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
    )


def _is_timeout(err: BaseException) -> bool:
    """Whether ``err`` is a timeout or an unreachable endpoint, whatever the library."""
    names = {cls.__name__ for cls in type(err).__mro__}
    timeouts = {
        "TimeoutError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "EndpointConnectionError",
        "ServerTimeoutError",
        "ConnectionTimeoutError",
        "ClientConnectorError",
        "SocketTimeoutError",
        "FSTimeoutError",
    }
    return bool(names & timeouts) or isinstance(err, asyncio.TimeoutError)


class RemoteStore(zarr.storage.FsspecStore):
    """An FsspecStore that percent-encodes keys over HTTP and names stalled servers.

    Parameters
    ----------
    fs, path, read_only
        As for :class:`zarr.storage.FsspecStore`.
    quote_keys
        Percent-encode every path segment of a key (HTTP; the filesystem must be created
        with ``encoded=True`` so that aiohttp sends them as they are).
    max_attempts
        Attempts per request made by the store itself (HTTP; s3 retries in botocore).
    limits
        The timeouts and attempts in force, for the message of a timeout.
    """

    def __init__(
        self,
        fs: Any,
        read_only: bool = False,
        path: str = "/",
        allowed_exceptions: tuple[type[Exception], ...] = _MISSING,
        *,
        quote_keys: bool = False,
        max_attempts: int = 1,
        limits: str = "",
    ) -> None:
        super().__init__(
            fs=fs, read_only=read_only, path=path, allowed_exceptions=allowed_exceptions
        )
        self.quote_keys = quote_keys
        self.max_attempts = max_attempts
        self.limits = limits

    def with_read_only(self, read_only: bool = False) -> RemoteStore:
        """Return the same store, read-only or not."""
        return type(self)(
            fs=self.fs,
            path=self.path,
            read_only=read_only,
            allowed_exceptions=self.allowed_exceptions,
            quote_keys=self.quote_keys,
            max_attempts=self.max_attempts,
            limits=self.limits,
        )

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and self.quote_keys == getattr(other, "quote_keys", None)

    def _key(self, key: str) -> str:
        return urllib.parse.quote(key, safe="/") if self.quote_keys else key

    async def _call(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one request with the store's attempts; a timeout becomes RemoteTimeoutError."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await call()
            except Exception as err:
                if attempt < self.max_attempts and self.quote_keys and _retryable(err):
                    await asyncio.sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
                    continue
                if _is_timeout(err):
                    raise self._timeout(key, err) from err
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _timeout(self, key: str, err: BaseException) -> RemoteTimeoutError:
        where = f"{self.fs.unstrip_protocol(self.path).rstrip('/')}/{key}"
        detail = str(err) or type(err).__name__
        return RemoteTimeoutError(
            f"{where}: no answer from the server ({detail}); it is stalled or unreachable "
            f"(limits: {self.limits}; set them in {option('storage_options', None)})"
        )

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """Read one key (percent-encoded over HTTP)."""
        parent = super().get
        return await self._call(key, lambda: parent(self._key(key), prototype, byte_range))

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """Read several keys or ranges (percent-encoded over HTTP)."""
        ranges = [(self._key(k), r) for k, r in key_ranges]
        parent = super().get_partial_values
        first = ranges[0][0] if ranges else ""
        return await self._call(first, lambda: parent(prototype, ranges))

    async def exists(self, key: str) -> bool:
        """Whether a key exists (percent-encoded over HTTP)."""
        parent = super().exists
        return await self._call(key, lambda: parent(self._key(key)))

    async def getsize(self, key: str) -> int:
        """Size of a key in bytes (percent-encoded over HTTP)."""
        parent = super().getsize
        return await self._call(key, lambda: parent(self._key(key)))

    async def set(self, key: str, value: Buffer, byte_range: tuple[int, int] | None = None) -> None:
        """Write one key (percent-encoded over HTTP)."""
        parent = super().set
        await self._call(key, lambda: parent(self._key(key), value, byte_range))

    async def delete(self, key: str) -> None:
        """Delete one key (percent-encoded over HTTP)."""
        await super().delete(self._key(key))

    async def delete_dir(self, prefix: str) -> None:
        """Delete every key under a prefix (percent-encoded over HTTP)."""
        await super().delete_dir(self._key(prefix))

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """List the keys directly under a prefix (decoded over HTTP)."""
        async for name in super().list_dir(self._key(prefix)):
            yield urllib.parse.unquote(name) if self.quote_keys else name
