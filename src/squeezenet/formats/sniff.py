"""What a model file is, by its first bytes (never by its extension). Torch-free, so
the serving path can tell an .onnx from a .pt or a .sqz without PyTorch."""

from __future__ import annotations


def sniff(path) -> str:
    """What a file is by its first bytes: 'checkpoint' (torch zip or pickle), 'sqz',
    'onnx', 'image', 'text', 'empty' or 'unknown'."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and 2 <= head[1] <= 5):
        return "checkpoint"
    if head.startswith(b"SQZ\x00"):
        return "sqz"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")) or \
            (head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        return "image"
    if head[:1] == b"\x08" and head[1] < 0x80 and head[2:3] in (b"\x12", b"\x1a", b"\x22", b"\x2a", b"\x3a", b"\x42"):
        return "onnx"  # ModelProto: ir_version (field 1, varint) then a string/message field
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


KIND_WORDS = {"checkpoint": "a PyTorch checkpoint (.pt)", "sqz": "a .sqz container", "onnx": "an ONNX model",
              "image": "an image", "text": "a text file", "empty": "an empty file", "unknown": "of unknown format"}
