# Queries the database named by the argument `db` and reports what came back, or the error.
def process_writes(influxdb3_local, table_batches, args=None):
    try:
        rows = influxdb3_local.query("SELECT count(*) AS n FROM secrets", database=args["db"])
        influxdb3_local.info(f"read {rows}")
    except Exception as e:
        influxdb3_local.error(f"refused: {e}")
