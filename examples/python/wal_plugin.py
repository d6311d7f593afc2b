# Counts the rows of each table in a WAL flush and writes the counts back.
#
#   sluice test wal_plugin --local examples/python/wal_plugin.py \
#       --lp 'cpu,host=a usage=0.5' --input-arguments double_count_table=cpu
def process_writes(influxdb3_local, table_batches, args=None):
    for table_batch in table_batches:
        table_name = table_batch["table_name"]
        if table_name == "write_reports":
            continue
        row_count = len(table_batch["rows"])
        if args and args.get("double_count_table") == table_name:
            row_count *= 2
        line = LineBuilder("write_reports").tag("table_name", table_name).int64_field("row_count", row_count)
        influxdb3_local.write(line)
        influxdb3_local.info(f"{table_name}: {row_count} rows, first row {table_batch['rows'][0]}")
