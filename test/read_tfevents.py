#!/usr/bin/env python3
"""An independent reader of TensorBoard event files, for the tests (no TensorFlow).

Checks every TFRecord's length and data CRCs (CRC-32C, masked), decodes each Event
protobuf by its wire format, and prints one line per event:
    version <wall_time> <file_version>
    scalar <wall_time> <step> <tag> <value>
Exits 1 with a message on any malformed byte.

    read_tfevents.py FILE
"""
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def fields(buf):
    """(field number, wire type, value) for each field of a message."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
        if pos > len(buf):
            raise ValueError("field runs past the end")
        yield number, wire, value


def events(path):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"truncated record header at byte {pos}")
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked(header) != length_crc:
            raise ValueError(f"bad length CRC at byte {pos}")
        payload = data[pos + 12:pos + 12 + length]
        if len(payload) != length or pos + 16 + length > len(data):
            raise ValueError(f"truncated record at byte {pos}")
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if masked(payload) != data_crc:
            raise ValueError(f"bad data CRC at byte {pos}")
        pos += 16 + length
        yield payload


def main():
    for payload in events(sys.argv[1]):
        wall_time, step, version, summary = 0.0, 0, None, None
        for number, wire, value in fields(payload):
            if number == 1 and wire == 1:
                (wall_time,) = struct.unpack("<d", value)
            elif number == 2 and wire == 0:
                step = value - (1 << 64) if value >= 1 << 63 else value
            elif number == 3 and wire == 2:
                version = value.decode()
            elif number == 5 and wire == 2:
                summary = value
        if version is not None:
            print(f"version {wall_time!r} {version}")
        if summary is not None:
            for number, wire, value in fields(summary):
                if number != 1 or wire != 2:
                    continue
                tag, simple = None, None
                for n, w, v in fields(value):
                    if n == 1 and w == 2:
                        tag = v.decode()
                    elif n == 2 and w == 5:
                        (simple,) = struct.unpack("<f", v)
                print(f"scalar {wall_time!r} {step} {tag} {simple!r}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        print(f"read_tfevents.py: {sys.argv[1]}: {e}", file=sys.stderr)
        sys.exit(1)
