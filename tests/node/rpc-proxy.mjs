// Make API calls through Xen Orchestra's unmodified `xen-api` client on behalf of a Python test,
// many per process, so that a property test can run hundreds of examples through Node without
// starting Node for each:
//
//   node tests/node/rpc-proxy.mjs <master-url>
//
// Two clients log in (root/xenroot), one on each transport XO has: `json` (JSON-RPC on
// /jsonrpc) and `xml` (XML-RPC on /xmlrpc). Neither watches events. Once both are connected the
// script prints {"ready": true}. Then each stdin line is one batch,
//
//   {"id": <any>, "calls": [{"via": "json"|"xml", "method": "VM.get_record", "args": [...]}, ...]}
//
// (args without the session: the client adds its own), run in order; the answer is one line,
//
//   {"id": <same>, "results": [{"ok": true, "result": <value>}
//                              | {"ok": false, "code": <XAPI code>, "params": [...]
//                                 | "error": <text of a non-XAPI error>}, ...]}
//
// A value is printed with JSON.stringify exactly as the client returned it, so the test sees
// what a Node program using this client sees. End of stdin logs both clients out and exits 0.
import { createInterface } from 'node:readline'
import { createClient } from 'xen-api'

const [url] = process.argv.slice(2)
if (url === undefined) {
  console.error('usage: node rpc-proxy.mjs <master-url>')
  process.exit(64)
}
const AUTH = { user: 'root', password: 'xenroot' }

const emit = obj => process.stdout.write(JSON.stringify(obj) + '\n')

async function connect(transport) {
  const xapi = createClient({
    url, auth: AUTH, allowUnauthorized: true, transport, watchEvents: false,
  })
  await xapi.connect()
  return xapi
}

async function run(clients, { via, method, args = [] }) {
  const xapi = clients[via]
  if (xapi === undefined) return { ok: false, error: `unknown transport ${via}` }
  try {
    return { ok: true, result: await xapi.call(method, ...args) }
  } catch (error) {
    if (error?.code !== undefined && Array.isArray(error.params)) {
      return { ok: false, code: error.code, params: error.params }
    }
    return { ok: false, error: String(error?.stack ?? error) }
  }
}

let clients
try {
  clients = { json: await connect('json-rpc'), xml: await connect('xml-rpc') }
} catch (error) {
  emit({ ready: false, error: String(error?.stack ?? error) })
  process.exit(1)
}
emit({ ready: true })

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue
  let batch
  try {
    batch = JSON.parse(line)
  } catch (error) {
    emit({ id: null, error: 'bad batch: ' + error })
    continue
  }
  const results = []
  for (const call of batch.calls ?? []) results.push(await run(clients, call))
  emit({ id: batch.id, results })
}
await Promise.allSettled(Object.values(clients).map(xapi => xapi.disconnect()))
process.exit(0)
