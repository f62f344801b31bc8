"""Batches as real clients write them: produced through the broker, read back from the segment files."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from kbroker.records.batch import iter_headers, verify_crc
from kbroker.records.record import iter_records
from kbroker.records.validation import validate_records
from kbroker.testing import BrokerThread

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
RECORDS = [
    (b"k1", b"v1" * 50, [("h1", b"x"), ("h2", b"")]),
    (None, b"no key", []),
    (b"k3", None, [("only", b"header")]),
]


def _segment_batches(data_dir: Path, topic: str) -> list[tuple[object, bytes]]:
    out = []
    for seg in sorted((data_dir / f"{topic}-0").glob("*.log")):
        buf = seg.read_bytes()
        for pos, h in iter_headers(buf):
            out.append((h, buf[pos : pos + h.size]))
    return out


def _check(data_dir: Path, topic: str, codec: str) -> None:
    batches = _segment_batches(data_dir, topic)
    assert batches
    got = []
    for h, raw in batches:
        assert verify_crc(raw), "CRC-32C of a client batch must verify"
        assert h.compression == CODEC_IDS[codec]  # type: ignore[attr-defined]
        corrupt = bytearray(raw)
        corrupt[-1] ^= 0x01
        assert not verify_crc(bytes(corrupt))
        validate_records(raw, h)  # type: ignore[arg-type]
        validate_records(raw, h, full=True)  # type: ignore[arg-type]
        got += [(r.key, r.value, [(k, v) for k, v in r.headers]) for r in iter_records(raw)]
    assert got == [(k, v, hs) for k, v, hs in RECORDS]


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_batches(tmp_path: Path, codec: str) -> None:
    with BrokerThread(tmp_path / "d") as b:
        p = Producer({"bootstrap.servers": b.bootstrap, "compression.type": codec, "linger.ms": 50})
        for k, v, hs in RECORDS:
            p.produce("t", value=v, key=k, headers=hs, partition=0)
        assert p.flush(10) == 0
        _check(tmp_path / "d", "t", codec)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_batches(tmp_path: Path, codec: str) -> None:
    with BrokerThread(tmp_path / "d") as b:
        p = KafkaProducer(bootstrap_servers=b.bootstrap, compression_type=None if codec == "none" else codec,
                          linger_ms=50)
        for k, v, hs in RECORDS:
            p.send("t", value=v, key=k, headers=hs, partition=0)
        p.flush(10)
        p.close()
        _check(tmp_path / "d", "t", codec)
