"""Files in and out: storage, formats, readers, columns, records, writers, the output lock."""
