// Read a simulated host's /rrd_updates the way Xen Orchestra's xo-server does
// (packages/xo-server/src/xapi-stats.mjs of vatesfr/xen-orchestra, `XapiStats`):
//
//   node tests/node/xo-stats.mjs <master-url> <granularity: seconds|minutes|hours|days>
//
// Unmodified libraries, pinned in package.json: the `xen-api` client (connect, object
// cache, `getResource`) and `json5`, the parser xo-server falls back to because xapi's JSON
// has unquoted keys. What xo-server's own code does with them is restated here, step for
// step (`_getAndUpdateStats`, `_updateJsonCache`, `computeValues`, `parseRrdValue`, the
// legend regexp and the STATS table entries used below), since xo-server itself is not an
// npm dependency one can install alone. Prints one JSON line per host and VM.
//
// One deviation: xo-server passes `host` to `getResource`, which then connects to
// `host.address` on the URL scheme's default port; simulated hosts listen on ports of their
// own, so the script reads the master's RRDs (the pool has one host in the test) through
// the connection URL -- the same endpoint.
import JSON5 from 'json5'
import { createClient } from 'xen-api'

const [url, granularity] = process.argv.slice(2)
const RRD_STEP_FROM_STRING = { seconds: 5, minutes: 60, hours: 3600, days: 86400 }
const RRD_POINTS_PER_STEP = { 5: 120, 60: 120, 3600: 168, 86400: 366 }

// @xen-orchestra/xapi parseDateTime: XAPI's 'YYYYMMDDTHH:MM:SSZ' -> seconds
const parseDateTime = s => {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2}):(\d{2}):(\d{2})Z?$/.exec(s)
  return Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1e3
}

function parseNumber(value) {
  if (typeof value === 'string') {
    const asNumber = +value
    if (isNaN(asNumber) && value !== 'NaN') throw new Error('cannot parse number: ' + value)
    value = asNumber
  }
  return isNaN(value) ? null : value
}

function parseRrdValue(value) {
  if (typeof value === 'string') {
    const asNumber = +value
    if (isNaN(asNumber) && value !== 'NaN') throw new Error('cannot parse number: ' + value)
    return asNumber
  }
  return value
}

// the subset of xo-server's STATS table this test checks
const STATS = {
  host: {
    memoryFree: { test: 'memory_free_kib', transformValue: v => v * 1024 },
    memory: { test: 'memory_total_kib', transformValue: v => v * 1024 },
    cpus: { test: /^cpu(\d+)$/, getPath: m => ['cpus', m[1]], transformValue: v => v * 1e2 },
    pifsRx: { test: /^pif_eth(\d+)_rx$/, getPath: m => ['pifs', 'rx', m[1]] },
    load: { test: 'loadavg' },
  },
  vm: {
    memory: { test: t => t.endsWith('memory') },
    memoryTarget: { test: 'memory_target' },
    cpus: { test: /^cpu(\d+)$/, getPath: m => ['cpus', m[1]], transformValue: v => v * 1e2 },
    vifsRx: { test: /^vif_(\d+)_rx$/, getPath: m => ['vifs', 'rx', m[1]] },
    xvdsR: { test: /^vbd_xvd(.)_read$/, getPath: m => ['xvds', 'r', m[1]] },
  },
}

const testMetric = (test, type) =>
  typeof test === 'string' ? test === type : typeof test === 'function' ? test(type) : test.exec(type)

async function stats(xapi, host, uuid, step) {
  const currentTimeStamp = parseDateTime(await xapi.call('host.get_servertime', host.$ref))
  const timestamp = currentTimeStamp - step * RRD_POINTS_PER_STEP[step] + step
  const response = await xapi.getResource('/rrd_updates', {
    query: { cf: 'AVERAGE', host: 'true', interval: step, json: 'true', start: timestamp },
  })
  const data = await response.body.text()
  let json
  let strict = true
  try {
    json = JSON.parse(data)
  } catch (_) {
    strict = false
    json = JSON5.parse(data)
  }
  for (const row of json.data) {
    const floats = new Float32Array(row.values.length)
    for (let j = 0; j < row.values.length; j++) floats[j] = parseRrdValue(row.values[j])
    row.values = floats
  }
  const actualStep = parseNumber(json.meta.step)
  if (actualStep !== step) throw new Error(`Unable to get the true granularity: ${actualStep}`)
  const out = { uuid, strict, step: actualStep, end: parseNumber(json.meta.end), rows: json.data.length, stats: {} }
  const rows = [...json.data].reverse()
  json.meta.legend.forEach((legend, index) => {
    const [, type, uuidInStat, metricType] = /^AVERAGE:([^:]+):(.+):(.+)$/.exec(legend)
    const metrics = STATS[type]
    if (metrics === undefined || uuidInStat !== uuid) return
    for (const [key, metric] of Object.entries(metrics)) {
      const m = testMetric(metric.test, metricType)
      if (!m) continue
      const path = metric.getPath !== undefined ? metric.getPath(m) : [key]
      let node = out.stats
      path.slice(0, -1).forEach(p => (node = node[p] = node[p] ?? {}))
      const t = metric.transformValue ?? (v => v)
      node[path[path.length - 1]] = rows.map(({ values }) =>
        Number.isNaN(values[index]) ? null : t(values[index])
      )
      break
    }
  })
  return out
}

const xapi = createClient({ url, auth: { user: 'root', password: 'xenroot' }, allowUnauthorized: true })
await xapi.connect()
await xapi.objectsFetched
const step = RRD_STEP_FROM_STRING[granularity]
const all = Object.values(xapi.objects.all)
for (const host of all.filter(o => o.$type === 'host')) {
  console.log(JSON.stringify({ type: 'host', ...(await stats(xapi, host, host.uuid, step)) }))
}
for (const vm of all.filter(o => o.$type === 'VM' && !o.is_control_domain && o.power_state === 'Running')) {
  console.log(JSON.stringify({ type: 'vm', ...(await stats(xapi, vm.$resident_on, vm.uuid, step)) }))
}
await xapi.disconnect()
