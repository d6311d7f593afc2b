def process_writes(influxdb3_local, table_batches, args=None):
    with open("/plugins/planted.py", "w") as f:
        f.write("import os\n")
