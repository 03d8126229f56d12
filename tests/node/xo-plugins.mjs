// Xen Orchestra's `xen-api` client calling host plugins as xo-server does (getHyperthreading,
// getSmartctlHealth, getMdadmHealth: a missing plugin is "not available", told by the error's
// `code`):
//
//   node tests/node/xo-plugins.mjs <master-url> <host-ref>
//
// Prints one JSON line; the Python test (tests/integration/test_host_plugins.py) checks it.
import { createClient } from 'xen-api'

const [url, host] = process.argv.slice(2)
const watchdog = setTimeout(() => { console.error('took more than 50 s'); process.exit(1) }, 50e3)

const xapi = createClient({ url, auth: { user: 'root', password: 'xenroot' }, allowUnauthorized: true })
await xapi.connect()
const out = {}
const code = async promise => {
  try {
    return { value: await promise }
  } catch (error) {
    return { code: error.code, params: error.params }
  }
}
out.hyperthreading = await code(xapi.call('host.call_plugin', host, 'hyperthreading.py', 'get_hyperthreading', {}))
out.smartctl = await code(xapi.call('host.call_plugin', host, 'smartctl.py', 'health', {}))
out.raid = await code(xapi.callAsync('host.call_plugin', host, 'raid.py', 'check_raid_pool', {}))
out.diskSpace = await code(xapi.callAsync('host.call_plugin', host, 'disk-space', 'get_avail_host_disk_space', {}))
console.log(JSON.stringify(out))
await xapi.disconnect()
clearTimeout(watchdog)
