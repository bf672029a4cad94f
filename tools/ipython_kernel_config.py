"""The book's IPython kernels: settings every kernel of ``.venv`` reads at start-up.

``make env`` copies this file into ``.venv/etc/ipython/`` (IPython's configuration folder of the environment), so
that it applies however a kernel is started: by the book's pipeline, by ``papermill`` run by hand, by ``make lab``.

One setting: ipykernel warns on every start that it "is running over TCP without encryption" — also when its
sockets listen on 127.0.0.1 only, as jupyter_client's do by default, where nothing but this machine can reach them
and the reader can do nothing about the line. The warning is dropped for a loopback address only; a kernel that
listens on another interface still prints it (there it matters). The pipeline itself uses Unix domain sockets and
never sees it.
"""

import logging

#: Addresses that only this machine can reach.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def keep_record(record: logging.LogRecord, ip: str | None = None) -> bool:
    """Whether the kernel application's log ``record`` is shown: everything except the unencrypted-TCP warning
    of a kernel on a loopback address (``ip``: the kernel's; read from the running kernel application if None)."""
    if "running over TCP without encryption" not in record.getMessage():
        return True
    if ip is None:
        from ipykernel.kernelapp import IPKernelApp

        ip = IPKernelApp.instance().ip if IPKernelApp.initialized() else ""
    return ip not in LOOPBACK


if "get_config" in globals():  # read by IPython as a configuration file (not when imported by the tests)
    logging.getLogger("IPKernelApp").addFilter(keep_record)
