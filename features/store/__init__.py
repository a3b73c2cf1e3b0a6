"""The events store: ingest (validate, resolve identities, write), the manifest-switched
Parquet store and its reads, event ids, the identity graph, summaries and explore views."""
