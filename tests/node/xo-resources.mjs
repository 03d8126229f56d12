// Xen Orchestra's `xen-api` client exporting and importing through its HTTP resource helpers
// (getResource / putResource), as xo-server does for VM export/import and raw disks:
//
//   node tests/node/xo-resources.mjs <master-url> <vm-ref> <sr-ref> <vdi-ref>
//
// Prints one JSON line: the sizes and SHA-1s of what it downloaded and the results of the
// tasks of its uploads. The Python test (tests/integration/test_xo_resources.py) checks them.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { createClient } from 'xen-api'

const [url, vm, sr, vdi] = process.argv.slice(2)
const watchdog = setTimeout(() => { console.error('took more than 50 s'); process.exit(1) }, 50e3)

async function download (xapi, path, query) {
  const response = await xapi.getResource(path, { query, task: true })
  const chunks = []
  for await (const chunk of response.body) chunks.push(chunk)
  const data = Buffer.concat(chunks)
  const task = await response.task
  return { data, task, status: response.statusCode }
}

const sha1 = data => createHash('sha1').update(data).digest('hex')

const xapi = createClient({ url, auth: { user: 'root', password: 'xenroot' }, allowUnauthorized: true })
await xapi.connect()
const out = {}
try {
  // a VM as an XVA, then imported back from a stream of known length (as xo-server sets
  // `length` on the streams it forwards; without one XO sends a 1 PiB Content-Length and cuts
  // the connection, which tests/integration/test_xva.py covers with a clean close)
  const xva = await download(xapi, '/export', { ref: vm, use_compression: 'false' })
  out.export = { status: xva.status, size: xva.data.length, sha1: sha1(xva.data), task: xva.task }
  const stream = Readable.from([xva.data.subarray(0, 100000), xva.data.subarray(100000)])
  stream.length = xva.data.length
  const imported = await xapi.putResource(stream, '/import', { query: { sr_id: sr } })
  out.import = imported
  // the same from a buffer (known length)
  out.import2 = await xapi.putResource(xva.data, '/import', { query: { sr_id: sr } })
  // a raw disk: a VHD download, then uploaded as raw
  const raw = await download(xapi, '/export_raw_vdi', { vdi, format: 'raw' })
  out.raw = { size: raw.data.length, sha1: sha1(raw.data) }
  const image = await download(xapi, '/export_raw_vdi', { vdi, format: 'vhd' })
  out.vhd = { size: image.data.length, head: image.data.subarray(0, 8).toString() }
  const target = await xapi.call('VDI.create', {
    SR: sr, virtual_size: String(raw.data.length), type: 'user', name_label: 'from-xo',
    name_description: '', sharable: false, read_only: false, other_config: {},
    xenstore_data: {}, sm_config: {}, tags: []
  })
  await xapi.putResource(image.data, '/import_raw_vdi', { query: { vdi: target, format: 'vhd' }, task: true })
  const back = await download(xapi, '/export_raw_vdi', { vdi: target })
  out.vhdBack = { sha1: sha1(back.data.subarray(0, raw.data.length)) }
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.stack ?? error), code: error?.code, params: error?.params }))
  process.exit(1)
}
console.log(JSON.stringify(out))
await xapi.disconnect()
clearTimeout(watchdog)
