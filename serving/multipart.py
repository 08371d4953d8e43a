"""The image part of a multipart/form-data body, parsed in memory (python-multipart's push parser).

Starlette's own form parsing spools file parts to temporary files; here the body is already bounded
by serving.max_body_bytes, so parts stay in memory and no request data ever touches the disk.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header

from progattr_core.inference import Refused

MAX_PARTS = 8


def _parts(body: bytes, boundary: bytes) -> list[tuple[dict[bytes, bytes], bytes]]:
    """[(Content-Disposition options, data)] of each part, in order."""
    parts: list[tuple[dict[bytes, bytes], bytes]] = []
    state = {"field": b"", "value": b"", "disposition": {}, "data": bytearray()}

    def on_part_begin() -> None:
        state.update(field=b"", value=b"", disposition={}, data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["field"].lower() == b"content-disposition":
            state["disposition"] = parse_options_header(state["value"])[1]
        state.update(field=b"", value=b"")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        if len(parts) >= MAX_PARTS:
            raise Refused(400, "bad_multipart", f"multipart body has more than {MAX_PARTS} parts")
        parts.append((state["disposition"], bytes(state["data"])))

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_part_data": on_part_data, "on_part_end": on_part_end}
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several types for malformed input
        raise Refused(400, "bad_multipart", f"malformed multipart body: {type(exc).__name__}: {exc}") from None
    return parts


def read_image_part(body: bytes, content_type: str) -> bytes:
    """The bytes of the part named `image`, else of the first part that carries a filename."""
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise Refused(400, "bad_multipart", "multipart/form-data content type without a boundary")
    parts = _parts(body, boundary)
    named = [data for disp, data in parts if disp.get(b"name") == b"image"]
    files = [data for disp, data in parts if b"filename" in disp]
    if not (named or files):
        raise Refused(400, "bad_multipart", "multipart body has no `image` part and no file part")
    return (named or files)[0]
