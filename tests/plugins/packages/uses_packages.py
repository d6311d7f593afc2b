"""Imports the package `?package=` names and calls something in it: answers
`{"ok": result}`, or `{"error": ...}` with the exception and where it was raised."""

import traceback


def _requests():
    import requests
    return requests.Request("GET", "http://example.com", params={"a": 1}).prepare().url


def _urllib3():
    import urllib3
    return urllib3.util.parse_url("https://x.example:8443/p").port


def _pint():
    import pint
    units = pint.UnitRegistry()
    return str((3 * units.meter).to(units.centimeter))


def _faker():
    from faker import Faker
    Faker.seed(1)
    return type(Faker().name()).__name__


def _dateutil():
    from dateutil import parser, relativedelta
    moment = parser.parse("2026-12-06T10:00:00Z") + relativedelta.relativedelta(months=1)
    return moment.isoformat()


def _pytz():
    import datetime
    import pytz
    paris = pytz.timezone("Europe/Paris")
    return str(paris.localize(datetime.datetime(2026, 7, 1, 12)).utcoffset())


def _tzdata():
    import datetime
    import zoneinfo
    new_york = zoneinfo.ZoneInfo("America/New_York")
    return str(datetime.datetime(2026, 1, 1, tzinfo=new_york).utcoffset())


def _humanize():
    import humanize
    return humanize.naturalsize(1_000_000)


def _packaging():
    from packaging.version import Version
    return Version("1.10") > Version("1.2.3")


def _attrs():
    import attrs

    @attrs.define
    class Point:
        x: int

    return repr(Point(1))


def _tomli():
    import tomli
    return tomli.loads("a = 1")


def _plugin_utils():
    import influxdata_plugin_utils
    return str(influxdata_plugin_utils.parse_timedelta("5min"))


def _httpx():
    import httpx
    return httpx.Request("GET", "http://example.com", params={"a": 1}).url


def _jmespath():
    import jmespath
    return jmespath.search("a.b[1]", {"a": {"b": [1, 2]}})


CHECKS = {
    "httpx": _httpx,
    "jmespath": _jmespath,
    "requests": _requests,
    "urllib3": _urllib3,
    "pint": _pint,
    "faker": _faker,
    "python-dateutil": _dateutil,
    "pytz": _pytz,
    "tzdata": _tzdata,
    "humanize": _humanize,
    "packaging": _packaging,
    "attrs": _attrs,
    "tomli": _tomli,
    "influxdata-plugin-utils": _plugin_utils,
}


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    check = CHECKS[query_parameters["package"]]
    try:
        return {"ok": str(check())}
    except BaseException:
        return {"error": traceback.format_exc()}
