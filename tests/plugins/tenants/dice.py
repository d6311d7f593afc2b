# Draws from `random`, which every instance's image holds in one state until it reseeds.
import random


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    return f"{random.getrandbits(64):016x}"
