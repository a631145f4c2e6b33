"""The official Python MCP SDK (PyPI `mcp` 2.x) through mcp-edge's merged endpoint.

For each mode given (`2026-07-28`, `legacy`, `auto`) it connects to the URL, lists tools,
prompts, resources and templates, calls every route's `echo`, reads a resource and gets a prompt,
and prints one line per check; any failure raises (exit status 1). The SDK validates every 2026
result strictly (`resultType`, `ttlMs`, `cacheScope`), so a wrong answer cannot pass.

Usage: python python_client.py URL ROUTE[,ROUTE...] MODE [MODE...] [--approve]
With --approve, the first route's `note` is expected to need the user's approval (answered yes);
with --confirm=ROUTE, that route's `confirm` asks the user during the call (answered "yes").
A ROUTE written `:name` is expected unprefixed (a per-server door, `/servers/name/mcp`).
"""

import asyncio
import sys

from mcp import Client, types

APPROVED = []


async def approve(context, params: types.ElicitRequestParams) -> types.ElicitResult:
    """The user, saying yes: to the gateway's approval question, or to a server's `confirm`."""
    APPROVED.append(params.message)
    if params.message.endswith("proceed?"):
        return types.ElicitResult(action="accept", content={"answer": "yes"})
    return types.ElicitResult(action="accept", content={"approve": True})


def names(spec: str) -> tuple[str, str, str]:
    """The route's name, and the prefixes of its tool/prompt names and of its URIs."""
    if spec.startswith(":"):
        return spec[1:], "", ""
    return spec, f"{spec}__", f"{spec}+"


async def run(url: str, routes: list[str], mode: str) -> None:
    async with Client(url, mode=mode, raise_exceptions=True, elicitation_callback=approve) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        for route, tool, _ in map(names, routes):
            assert f"{tool}echo" in tools, f"{tool}echo not in {tools}"
            result = await client.call_tool(f"{tool}echo", {"text": f"hi from {mode}"})
            text = result.content[0].text
            assert text == f"{route}: hi from {mode}", text
            assert not result.is_error
        route, name, uri_prefix = names(routes[0])
        prompts = [p.name for p in (await client.list_prompts()).prompts]
        assert f"{name}greet" in prompts, prompts
        prompt = await client.get_prompt(f"{name}greet", {"who": "ada"})
        assert prompt.messages, prompt
        resources = [str(r.uri) for r in (await client.list_resources()).resources]
        uri = f"{uri_prefix}demo://{route}/readme"
        assert uri in resources, resources
        read = await client.read_resource(uri)
        assert read.contents[0].text == f"{route} resource readme", read
        templates = (await client.list_resource_templates()).resource_templates
        assert templates, "no resource templates"
        approved = ""
        if "--approve" in sys.argv:
            # `note` needs the user's approval: asked on the call's stream (sessions) or in an
            # input_required round (2026-07-28), answered by `approve` above.
            asked = len(APPROVED)
            result = await client.call_tool(f"{names(routes[0])[1]}note", {"text": "n"})
            assert result.content[0].text == f"{route} noted n", result
            assert len(APPROVED) == asked + 1 and "note" in APPROVED[-1], APPROVED
            approved = ", approval"
        for route in [a.split("=", 1)[1] for a in sys.argv if a.startswith("--confirm=")]:
            # The upstream asks the user (elicitation) during the call: on the call's stream
            # (sessions) or as an input_required round with the call held (2026-07-28).
            result = await client.call_tool(f"{route}__confirm", {})
            assert result.content[0].text == f"{route} heard: yes", result
            approved += f", {route} asked"
        print(f"python {mode}: {len(tools)} tools, {len(routes)} calls, prompt, resource{approved}: ok")


async def main() -> None:
    url, routes = sys.argv[1], sys.argv[2].split(",")
    modes = [m for m in sys.argv[3:] if not m.startswith("--")]
    for mode in modes:
        await run(url, routes, mode)


asyncio.run(main())
