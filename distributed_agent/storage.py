"""Where experiments live: a local folder or a URI, read and written through pyarrow's
filesystems (as Tune does), so every guarantee holds for every storage.

`file://` URIs are local folders. Everything read from storage is data: JSON, YAML (safe
loader) and torch checkpoints loaded with `weights_only=True`; no pickle is ever loaded.
"""

from __future__ import annotations

import errno
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError

STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)


class StorageFull(Exception):
    """Writing to the experiment's storage failed for lack of space."""


@dataclass(frozen=True)
class Storage:
    uri: str  # what Tune is given: an absolute local path or a URI
    root: str  # the same place as a path in `fs`
    fs: object  # pyarrow.fs.FileSystem
    local: bool

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri_of(self, *parts: str) -> str:
        """The URI of a place inside; options (s3://b/p?endpoint_override=...) stay at the end."""
        location, mark, options = self.uri.partition("?")
        return "/".join([location.rstrip("/"), *parts]) + mark + options

    # -- reading ------------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path(*parts)).type != fs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path(*parts)).type == fs.FileType.File

    def list_dirs(self, *parts: str) -> list[str]:
        from pyarrow import fs

        if not self.exists(*parts):
            return []
        infos = self.fs.get_file_info(fs.FileSelector(self.path(*parts)))
        return sorted(info.base_name for info in infos if info.type == fs.FileType.Directory)

    def is_empty_dir(self, *parts: str) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path(*parts)).type == fs.FileType.Directory and not self.fs.get_file_info(
            fs.FileSelector(self.path(*parts))
        )

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode("utf-8", errors="replace")

    # -- writing ------------------------------------------------------------------------------
    def write_text(self, text: str, *parts: str) -> None:
        """Write a small file whole: locally through a temporary file and a rename, so a reader
        (or a crash) never sees half of it; a full disk raises StorageFull."""
        target = self.path(*parts)
        try:
            if self.local:
                partial = f"{target}.{uuid.uuid4().hex[:8]}.partial"
                try:
                    with open(partial, "w") as file:
                        file.write(text)
                        file.flush()
                        os.fsync(file.fileno())
                    os.replace(partial, target)
                finally:
                    if os.path.exists(partial):
                        os.unlink(partial)
            else:
                with self.fs.open_output_stream(target) as stream:
                    stream.write(text.encode())
        except OSError as error:
            if error.errno in STORAGE_FULL:
                raise StorageFull(f"{target}: {os.strerror(error.errno)}") from None
            raise

    def make_dirs(self, *parts: str) -> None:
        self.fs.create_dir(self.path(*parts), recursive=True)

    def delete_dir(self, *parts: str) -> None:
        self.fs.delete_dir(self.path(*parts))


def open_storage(text: str, writable: bool = True) -> Storage:
    """The storage named by `--storage`, checked before anything starts: one line if unusable."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("--storage: must be a folder path or a URI such as s3://bucket/runs (got an empty value)")
    if text.startswith("file://"):
        text = text.removeprefix("file://")
        if not text.startswith("/"):
            raise ConfigError("--storage: a file:// URI needs an absolute path, e.g. file:///data/runs")
    if "://" not in text:
        return _local_storage(Path(text).expanduser().resolve(), writable)
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(text)
    except Exception as error:  # pyarrow's errors name the scheme; keep one line
        reason = str(error).splitlines()[0][:200]
        raise ConfigError(
            f"--storage: cannot open {text!r} ({reason}); use a local path, file://, s3:// or gs://"
        ) from None
    return Storage(uri=text.rstrip("/"), root=root.rstrip("/"), fs=filesystem, local=False)


def _local_storage(path: Path, writable: bool) -> Storage:
    from pyarrow import fs

    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--storage: {str(existing)!r} is a file, not a folder")
    if writable:
        check_writable(existing, "--storage")
    return Storage(uri=str(path), root=str(path), fs=fs.LocalFileSystem(), local=True)


def is_storage_full(error: BaseException | str) -> bool:
    """Whether an exception (or the text of one, from a trial's error) is a full disk."""
    if isinstance(error, OSError) and error.errno in STORAGE_FULL:
        return True
    text = str(error)
    return any(os.strerror(code) in text for code in STORAGE_FULL) or "ENOSPC" in text


def check_writable(folder: Path, flag: str) -> None:
    """Write a probe file: permissions alone miss read-only mounts, and root passes any os.access."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        if error.errno in STORAGE_FULL:
            raise StorageFull(f"{folder}: {error.strerror}") from None
        raise ConfigError(f"{flag}: cannot write in {str(folder)!r} ({error.strerror})") from None
