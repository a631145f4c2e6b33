// The official TypeScript MCP client (npm @modelcontextprotocol/client 2.x) through mcp-edge's
// merged endpoint. For each mode given (`2026-07-28` pins the stateless revision, `legacy`,
// `auto`) it connects, lists tools, prompts, resources and templates, calls every route's
// `echo`, reads a resource and gets a prompt, and prints one line per mode; any failure throws
// (exit status 1). The client validates 2026 results strictly (`resultType`, `ttlMs`, `cacheScope`).
//
// Usage: node ts_client.mjs URL ROUTE[,ROUTE...] MODE [MODE...]
// A ROUTE written `:name` is expected unprefixed (a per-server door, `/servers/name/mcp`).
// (a copy of it must sit beside a node_modules holding @modelcontextprotocol/client.)
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, routeList, ...modes] = process.argv.slice(2);
const routes = routeList.split(',');

// The route's name, and the prefixes of its tool/prompt names and of its URIs.
function names(spec) {
  return spec.startsWith(':') ? [spec.slice(1), '', ''] : [spec, `${spec}__`, `${spec}+`];
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function run(mode) {
  const negotiation = mode === 'legacy' || mode === 'auto' ? mode : { pin: mode };
  const client = new Client(
    { name: 'mcp-edge-interop', version: '1.0.0' },
    { versionNegotiation: { mode: negotiation } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    const tools = (await client.listTools()).tools.map((t) => t.name);
    for (const [route, tool] of routes.map(names)) {
      check(tools.includes(`${tool}echo`), `${tool}echo not in ${tools}`);
      const result = await client.callTool({ name: `${tool}echo`, arguments: { text: `hi from ${mode}` } });
      const text = result.content[0].text;
      check(text === `${route}: hi from ${mode}`, `echo answered ${text}`);
      check(!result.isError, 'echo failed');
    }
    const [route, name, uriPrefix] = names(routes[0]);
    const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
    check(prompts.includes(`${name}greet`), `prompts: ${prompts}`);
    const prompt = await client.getPrompt({ name: `${name}greet`, arguments: { who: 'ada' } });
    check(prompt.messages.length > 0, 'empty prompt');
    const uri = `${uriPrefix}demo://${route}/readme`;
    const resources = (await client.listResources()).resources.map((r) => r.uri);
    check(resources.includes(uri), `resources: ${resources}`);
    const read = await client.readResource({ uri });
    check(read.contents[0].text === `${route} resource readme`, `read: ${JSON.stringify(read)}`);
    const templates = (await client.listResourceTemplates()).resourceTemplates;
    check(templates.length > 0, 'no resource templates');
    console.log(`typescript ${mode}: ${tools.length} tools, ${routes.length} calls, prompt, resource: ok`);
  } finally {
    await client.close();
  }
}

for (const mode of modes) {
  await run(mode);
}
