"""The official Python MCP SDK's OAuth client against mcp-edge's OAuth proxy.

The SDK discovers the gateway as authorization server, registers, and sends `resource` as RFC 8707
says; the gateway strips it for an IdP that refuses it. The browser step is played by following
the redirects here: consent page (form with CSRF token and cookie), the IdP, the gateway's
callback, back to our redirect URI. Usage: python python_oauth_client.py http://127.0.0.1:PORT/mcp
"""

import asyncio
import re
import sys
from urllib.parse import parse_qs, urlparse

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT = "http://127.0.0.1:9/callback"


class Memory:
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, info: OAuthClientInformationFull):
        self.client = info


result = {}


async def browser(authorization_url: str):
    print("authorize:", authorization_url.split("?")[0], "resource" in authorization_url and "(with resource)" or "")
    async with httpx.AsyncClient(follow_redirects=False) as web:
        page = await web.get(authorization_url)
        assert page.status_code == 200, page.text
        print("consent page for:", re.search(r"<strong>(.*?)</strong>", page.text).group(1))
        form = {
            "request": re.search(r'name="request" value="([^"]+)"', page.text).group(1),
            "csrf": re.search(r'name="csrf" value="([^"]+)"', page.text).group(1),
            "decision": "allow",
        }
        base = authorization_url.split("/oauth/")[0]
        # The gateway's cookies are `__Host-…; Secure`: a browser keeps them for https only, so
        # over this plain-http loopback test they are handed back by hand.
        cookie = "; ".join(c.split(";")[0] for c in page.headers.get_list("set-cookie"))
        to_idp = await web.post(f"{base}/oauth/consent", data=form, headers={"cookie": cookie})
        location = to_idp.headers["location"]
        print("to the IdP, resource sent:", "resource" in parse_qs(urlparse(location).query))
        back = await web.get(location)
        assert back.status_code == 302, back.text
        # The callback must come back to the browser that consented: its flow cookie goes along.
        flow = "; ".join(
            c.split(";")[0] for c in to_idp.headers.get_list("set-cookie") if c.startswith("__Host-mcp-edge-flow=")
        )
        to_client = await web.get(back.headers["location"], headers={"cookie": flow})
        q = parse_qs(urlparse(to_client.headers["location"]).query)
        result["code"], result["state"] = q["code"][0], q.get("state", [None])[0]
        result["iss"] = q.get("iss", [None])[0]


async def callback():
    return AuthorizationCodeResult(code=result["code"], state=result["state"], iss=result["iss"])


async def main(url: str):
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="python-sdk-interop",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope="mcp:read",
        ),
        storage=Memory(),
        redirect_handler=browser,
        callback_handler=callback,
    )
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                init = await session.initialize()
                print("initialized:", init.server_info.name, init.protocol_version)
                tools = await session.list_tools()
                print("tools:", sorted(t.name for t in tools.tools))
                answer = await session.call_tool("alpha__echo", {"text": "hello through the OAuth proxy"})
                print("call:", answer.content[0].text)


asyncio.run(main(sys.argv[1]))
