"""Reported tables, run records and the cross-check between them (see `schema` for the formats)."""

from shared.results.records import iter_records, make_record, read_record, write_record
from shared.results.reported_tables import load_tables

__all__ = ["iter_records", "load_tables", "make_record", "read_record", "write_record"]
