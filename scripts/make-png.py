#!/usr/bin/env python3
"""Writes a W×H RGB gradient PNG (stdlib only) for the thumbnail demo.

usage: make-png.py OUT W H
"""
import struct
import sys
import zlib


def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def main() -> None:
    out, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rows = bytearray()
    for y in range(h):
        rows.append(0)  # filter: none
        for x in range(w):
            rows += bytes((x * 255 // w, y * 255 // h, 128))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(rows)))
           + chunk(b"IEND", b""))
    with open(out, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    main()
