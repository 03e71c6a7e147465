"""Mappers add `job_id`/`team` to readings (`annotate(readings) -> readings`), first match wins."""
