"""`fetch.py` with httpx, following redirects: fetches `?url=` (with `AsyncClient` if
`?async=1`) and answers what came back, or the exception the plugin got."""

import asyncio

import httpx


async def fetch_async(url):
    async with httpx.AsyncClient(follow_redirects=True, timeout=30) as client:
        return await client.get(url)


def process_request(influxdb3_local, query_parameters, request_headers, request_body, args=None):
    url = query_parameters["url"]
    try:
        if query_parameters.get("async") == "1":
            response = asyncio.run(fetch_async(url))
        else:
            with httpx.Client(follow_redirects=True, timeout=30) as client:
                response = client.get(url)
        return {"status": response.status_code, "body": response.text}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
