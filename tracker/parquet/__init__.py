"""The Parquet export: every user's movements and sessions as Parquet files, Hive-partitioned
by day, written by Ray Data tasks (`tracker export-parquet`, and hourly by the scheduler when
`TRACKER_EXPORT_DEST` is set). docs/export.md describes the files and their schema.
"""
