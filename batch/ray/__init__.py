"""mlb-batch --engine ray: the Ray Data engine, its actor pool, cluster start-up and Parquet splits."""
