import sys


def descend(depth):
    return descend(depth + 1) + 1


def process_writes(influxdb3_local, table_batches, args=None):
    sys.setrecursionlimit(100_000_000)
    descend(0)
