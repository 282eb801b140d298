"""Row status kinds. Every output row has exactly one; `ok` is the only success.

Kept as plain strings (an Arrow string column) so a user can filter with any tool.
"""
from __future__ import annotations

OK = "ok"
INVALID_ROW = "invalid_row"          # null/empty uri, null prompt when the checklist needs one
INVALID_URI = "invalid_uri"          # scheme not in DecodeConfig.allowed_schemes
UNSUPPORTED_MEDIA = "unsupported_media"  # unknown extension / media_type, not an image or video
MISSING_FILE = "missing_file"        # the uri does not exist
READ_ERROR = "read_error"            # the bytes could not be read (permissions, network, ...)
EMPTY_FILE = "empty_file"            # zero bytes
TOO_LARGE = "too_large"              # file bytes or pixel count over the configured limits
DECODE_ERROR = "decode_error"        # bytes are not a decodable image/video (corrupt, truncated, text)
TIMEOUT = "timeout"                  # read + decode took longer than DecodeConfig.timeout_s
SCORE_ERROR = "score_error"          # the model failed on this item

ALL = (OK, INVALID_ROW, INVALID_URI, UNSUPPORTED_MEDIA, MISSING_FILE, READ_ERROR, EMPTY_FILE,
       TOO_LARGE, DECODE_ERROR, TIMEOUT, SCORE_ERROR)
