"""A Ray started by this tool for one sweep: reachable from this machine only.

Ray 2.60 binds its servers (GCS, raylet, object manager, workers) to every interface and, with
`RAY_AUTH_MODE=disabled`, accepts any client: anyone on the network could run code in a sweep.
Here a local Ray
- advertises and binds 127.0.0.1 only: Ray's own single-machine mode (the one it uses on macOS
  and Windows), switched on by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which processes started by
  Ray inherit, and by the constant the driver already read at import;
- requires a random token made for this sweep, given to Ray's processes in their environment only
  (never written to disk);
- keeps its session folder (logs, sockets) in a private temporary folder (mode 0700), removed when
  the sweep ends unless it failed, so that its logs can be read.
Joining an existing cluster (`--address`) changes none of this: that cluster's set-up decides.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile

LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node IP 127.0.0.1, servers bound to loopback
    "RAY_AUTH_MODE": "token",
    # A trial stopped mid-report (e.g. storage full) is recorded in its folder; Ray would also
    # print its traceback on the driver's console.
    "RAY_IGNORE_UNHANDLED_ERRORS": "1",
    # Each trial of a reused worker runs in a new thread, and glibc gives new threads new malloc
    # arenas: without a cap a worker grew by ~7 MiB per trial (benchmarks/sweep_overhead.py).
    "MALLOC_ARENA_MAX": "2",
}


@contextlib.contextmanager
def patched_environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ray_session(address: str | None, logging_level: int = logging.INFO):
    """`with ray_session(address):` a connection to a cluster, or a private local Ray."""
    import ray

    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging_level)
        try:
            yield None
        finally:
            ray.shutdown()
        return
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    def reload_settings():  # Ray caches its settings and the token in the driver: read them again
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    temp_dir = tempfile.mkdtemp(prefix="da-ray-")  # mode 0700; short: Ray's socket paths must fit 107 bytes
    single_machine = ray_constants.ENABLE_RAY_CLUSTER
    try:
        with patched_environment({**LOCAL_ENV, "RAY_AUTH_TOKEN": secrets.token_hex(32)}):
            ray_constants.ENABLE_RAY_CLUSTER = False
            reload_settings()
            try:
                ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir, logging_level=logging_level)
                yield temp_dir
            finally:
                ray.shutdown()
                ray_constants.ENABLE_RAY_CLUSTER = single_machine
    except Exception as error:
        from .config import ConfigError
        from .storage import StorageFull

        if not isinstance(error, (ConfigError, StorageFull)):
            print(f"Ray's logs of this sweep are kept in {temp_dir}/session_latest/logs", file=sys.stderr)
            temp_dir = None
        raise
    finally:
        reload_settings()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
