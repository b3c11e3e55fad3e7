#!/usr/bin/env python3
"""Writes a sample PNG (a colour gradient) to the file named, for the image-filter example:
    python3 examples/image-filter/sample.py sample.png [width height]"""
import sys

import pngfile

width, height = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (160, 120)
rows = [bytes(b for x in range(width) for b in (x * 255 // width, y * 255 // height, 160)) for y in range(height)]
with open(sys.argv[1], "wb") as out:
    out.write(pngfile.write(width, height, rows))
