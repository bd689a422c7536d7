"""kafka-python checks every record batch's CRC32C with the native `crc32c` package.

Without it kafka-python falls back to a pure-Python CRC, a third of the consumer's time in the
profile of issue 13; `crc32c` is a core dependency so that never happens silently.
"""

from __future__ import annotations

import crc32c
from kafka.record import default_records, util

CHECK_VALUE = 0xE3069283  # CRC-32C of b"123456789" (RFC 3720, appendix B.4)


def test_kafka_python_verifies_record_batches_with_the_native_crc32c() -> None:
    # calc_crc32c binds its implementation as a default argument when kafka-python is imported
    (implementation,) = util.calc_crc32c.__defaults__ or (None,)

    assert implementation is crc32c.crc32c
    assert default_records.calc_crc32c is util.calc_crc32c  # what batch reading calls


def test_the_native_crc32c_gives_the_standard_check_value() -> None:
    assert util.calc_crc32c(memoryview(b"123456789")) == CHECK_VALUE
