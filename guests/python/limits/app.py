"""Limits hold for Python: each command in the event data misbehaves in
one way, and the host must contain it.

    spin              loop forever (the deadline stops it)
    grow              grow a list without end (the memory limit stops it)
    raise             raise an exception (a guest error with its traceback)
    open PATH         open a file; answers the exception's text (no directory is granted)
    connect HOST:PORT open a TCP connection; answers the exception's text (sockets are denied)
"""

import socket

import nimbus


def handle(event: nimbus.Event):
    command, _, arg = event.text().strip().partition(" ")
    if command == "spin":
        while True:
            pass
    if command == "grow":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if command == "raise":
        raise RuntimeError("limits: raised on purpose")
    if command == "open":
        try:
            with open(arg, "rb") as f:
                return f"read {len(f.read())} bytes from {arg}"
        except Exception as e:
            return f"{type(e).__name__}: {e}"
    if command == "connect":
        host, _, port = arg.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return f"connected to {arg}"
        except Exception as e:
            return f"{type(e).__name__}: {e}"
    raise nimbus.InvalidInput(f"unknown command {command!r}: spin, grow, raise, open PATH or connect HOST:PORT")
