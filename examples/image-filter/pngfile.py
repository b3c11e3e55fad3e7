"""PNG reading and writing in pure Python (zlib is in the standard library; Pillow may not be on the
machine): 8-bit greyscale, RGB and RGBA, not interlaced. Enough for the example; not a general codec."""
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 6: 4}  # colour type → samples per pixel
MAX_SIDE = 4096  # an upload may not make the runner allocate more than 4096 × 4096 pixels


class PNGError(ValueError):
    pass


def read(data):
    """(width, height, rows of RGB bytes) of a PNG, or PNGError naming what it cannot read."""
    if not data.startswith(SIGNATURE):
        raise PNGError("not a PNG file")
    position, header, compressed = len(SIGNATURE), None, []
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if len(body) != length:
            raise PNGError("the file is cut short")
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise PNGError("no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace != 0:
        raise PNGError("only 8-bit greyscale, RGB or RGBA PNGs, not interlaced")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise PNGError(f"the image must be 1 to {MAX_SIDE} pixels on each side")
    channels = CHANNELS[colour]
    stride = width * channels
    expected = height * (stride + 1)
    inflater = zlib.decompressobj()
    raw = inflater.decompress(b"".join(compressed), expected + 1)  # bounded: a zip bomb stops here
    if len(raw) != expected:
        raise PNGError("the image data does not match its size")
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        unfilter(kind, line, previous, channels)
        rows.append(to_rgb(line, channels))
        previous = line
    return width, height, rows


def unfilter(kind, line, previous, bpp):
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        corner = previous[i - bpp] if i >= bpp else 0
        if kind == 0:
            continue
        elif kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
            line[i] = (line[i] + predictor) & 0xFF
        else:
            raise PNGError(f"unknown row filter {kind}")


def to_rgb(line, channels):
    if channels == 3:
        return bytes(line)
    if channels == 1:
        return bytes(b for value in line for b in (value, value, value))
    return bytes(b for i in range(0, len(line), 4) for b in line[i:i + 3])


def write(width, height, rows):
    """A PNG (RGB, 8-bit) of `rows`, each `width` × 3 bytes."""
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
