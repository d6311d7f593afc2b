"""Turns whatever `process_request` returned into (status, headers, body).

The conventions are the upstream engine's, checked in this order: a Flask-like response
object; a tuple of one to three items; a `str`; a `dict` or `list` (sent as JSON); any
other iterable (its `str` and UTF-8 `bytes` items concatenated); anything else is an error.
"""

import json
import operator

_HTML = {"Content-Type": "text/html"}
_JSON = {"Content-Type": "application/json"}
_TEXT = {"Content-Type": "text/plain"}


def _part(item):
    if isinstance(item, str):
        return item, dict(_HTML)
    if isinstance(item, (dict, list)):
        return json.dumps(item), dict(_JSON)
    return str(item), dict(_TEXT)


def _string_headers(headers):
    return {str(k): str(v) for k, v in dict(headers).items()}


def _flask_like(result):
    marker = getattr(result, "__flask_response__", None)
    if not callable(marker):
        return None
    try:
        if marker() is not True:
            return None
    except Exception:
        return None
    body = result.get_data()
    if not isinstance(body, str):
        raise TypeError("a Flask-like response must return str from get_data()")
    return int(result.status_code), _string_headers(result.headers), body


def _from_tuple(result):
    body, headers = _part(result[0])
    status = 200
    if len(result) >= 2:
        second = result[1]
        try:
            status = operator.index(second)
        except TypeError:
            if isinstance(second, dict):
                headers.update(_string_headers(second))
        else:
            if not 0 <= status <= 65535:
                status = 500
    if len(result) == 3:
        if not isinstance(result[2], dict):
            raise TypeError("expected a dictionary in header item")
        headers.update(_string_headers(result[2]))
    return status, headers, body


def _from_iterable(result):
    pieces = []
    for item in result:
        if isinstance(item, str):
            pieces.append(item)
        elif isinstance(item, bytes):
            try:
                pieces.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                pass
    return 200, dict(_HTML), "".join(pieces)


def to_response(result):
    """Returns (status, {header: value}, body str) for a `process_request` result."""
    if type(result) is str:
        # The common case, and no Flask-like object: a subclass could be one.
        return 200, dict(_HTML), result
    flask = _flask_like(result)
    if flask is not None:
        return flask
    if isinstance(result, tuple) and 1 <= len(result) <= 3:
        return _from_tuple(result)
    if isinstance(result, str):
        return 200, dict(_HTML), result
    if isinstance(result, (dict, list)):
        return 200, dict(_JSON), json.dumps(result)
    if hasattr(result, "__iter__"):
        return _from_iterable(result)
    raise TypeError("Unsupported return type from Python function")
