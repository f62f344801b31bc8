"""Kafka API schema definitions as data (see README.md in this folder)."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent
