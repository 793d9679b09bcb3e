"""The byte layout of a stored anomaly model: a prefix, a JSON header, a checksummed body.

This module owns how `RegimeModel.to_bytes` lays out its bytes and how a blob is checked before
anything in it is trusted: magic `TMAM`, format version (uint16), header length (uint32), the
header (UTF-8 JSON: format and library versions, `ModelInfo`, SHA-256 of the body), then the
body. What the body holds is `diagnosis.model`'s (a pickle of plain containers and numpy
arrays). This module must never unpickle, import scikit-learn (the version a blob must match is
passed in), or do I/O: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, Final

import numpy as np

from diagnosis.model_errors import ModelFormatError
from diagnosis.model_info import ModelInfo
from diagnosis.windows import MODEL_SIGNALS

FORMAT_VERSION: Final = 4
"""Layout of `RegimeModel.to_bytes`; bump it when the layout or the body's state changes."""
READABLE_VERSIONS: Final = frozenset({3, FORMAT_VERSION})
"""Formats that still load: 3 is 4 without the relation detectors (it scores as it did)."""
_MAGIC: Final = b"TMAM"  # telematics anomaly model
_PREFIX: Final = struct.Struct(">4sHI")  # magic, format version, header length


def pack(info: ModelInfo, body: bytes, sklearn_version: str) -> bytes:
    """A stored model: prefix, header naming the versions, `info` and the checksum, `body`.

    Args:
        info: Metadata of the model, written to the header as JSON.
        body: The serialised state (a pickle, `RegimeModel.to_bytes`).
        sklearn_version: Version of scikit-learn that fitted the model.
    """
    header = {
        "format": FORMAT_VERSION,
        "sklearn": sklearn_version,
        "numpy": np.__version__,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "info": info.to_json(),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    return _PREFIX.pack(_MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes + body


def parse_header(blob: bytes, sklearn_version: str) -> tuple[dict[str, Any], bytes]:
    """Check a serialised model's header, without unpickling anything (`model.read_header`).

    Args:
        blob: Bytes from `pack`.
        sklearn_version: Version of scikit-learn the model must have been fitted with.

    Returns:
        The parsed header and the body.

    Raises:
        ModelFormatError: Not a model, damaged, or another format, scikit-learn version or
            signal set.
    """
    if len(blob) < _PREFIX.size:
        raise ModelFormatError("truncated")
    magic, version, header_len = _PREFIX.unpack_from(blob)
    if magic != _MAGIC:
        raise ModelFormatError("magic", repr(magic), repr(_MAGIC))
    if version not in READABLE_VERSIONS:
        raise ModelFormatError("format_version", str(version), str(FORMAT_VERSION))
    end = _PREFIX.size + header_len
    if len(blob) < end:
        raise ModelFormatError("truncated")
    try:
        header = json.loads(blob[_PREFIX.size : end])
        blob_sklearn_version = str(header["sklearn"])
        info = ModelInfo.from_json(header["info"])
        str(header["body_sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFormatError("header") from exc
    if blob_sklearn_version != sklearn_version:
        raise ModelFormatError("sklearn_version", blob_sklearn_version, sklearn_version)
    if info.signals != MODEL_SIGNALS:
        raise ModelFormatError("signals", ",".join(info.signals), ",".join(MODEL_SIGNALS))
    return header, blob[end:]


def unpack(blob: bytes, sklearn_version: str) -> tuple[ModelInfo, bytes]:
    """The metadata and the checksum-verified body of a serialised model.

    Args:
        blob: Bytes from `pack`.
        sklearn_version: Version of scikit-learn the model must have been fitted with.

    Raises:
        ModelFormatError: As `parse_header`, or the body does not match its checksum.
    """
    header, body = parse_header(blob, sklearn_version)
    digest = hashlib.sha256(body).hexdigest()
    if digest != header["body_sha256"]:
        raise ModelFormatError("checksum", digest, str(header["body_sha256"]))
    return ModelInfo.from_json(header["info"]), body
