import socket


def process_writes(influxdb3_local, table_batches, args=None):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        try:
            s = socket.socket(socket.AF_INET, kind)
            s.connect(("127.0.0.1", 8181))
            s.send(b"GET / HTTP/1.0\r\n\r\n")
            influxdb3_local.error(f"socket {kind} CONNECTED")
        except Exception as e:
            influxdb3_local.info(f"socket {kind}: refused ({type(e).__name__})")
