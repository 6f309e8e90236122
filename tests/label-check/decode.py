"""Decodes every barcode in a grayscale PGM image with zxing-cpp; prints one JSON line each.

Floorhand's label tests use it after `node render.mjs LABEL.zpl OUT.pgm`: a decoder we did
not write reads the barcodes back. Needs only the standard library and zxing-cpp.
Usage: python3 decode.py LABEL.pgm
"""

import json
import sys

import zxingcpp


def read_pgm(path):
    data = open(path, "rb").read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos : pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P5" or maxval != 255:
        raise SystemExit(f"{path}: not an 8-bit binary PGM")
    pixels = data[pos + 1 : pos + 1 + width * height]
    return memoryview(pixels).cast("B", (height, width))


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: python3 decode.py LABEL.pgm")
    for code in zxingcpp.read_barcodes(read_pgm(sys.argv[1])):
        print(
            json.dumps(
                {
                    "format": str(code.format).split(".")[-1],
                    "text": code.text,
                    "symbology": code.symbology_identifier,
                }
            )
        )


if __name__ == "__main__":
    main()
