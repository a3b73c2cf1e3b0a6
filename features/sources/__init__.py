"""Data sources, each returning the contract tables (base.SourceData): the synthetic generator,
84.51° Complete Journey, and a user's own Parquet / CSV files."""
