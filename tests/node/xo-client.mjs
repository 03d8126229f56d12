// Drive Xen Orchestra's unmodified `xen-api` client (packages/xen-api of vatesfr/xen-orchestra,
// pinned in package.json) against a simulated pool, as xo-server uses it:
//
//   node tests/node/xo-client.mjs <master-url> <member-url>
//
// Each phase prints one JSON line on stdout ({"phase": ...}); the Python test
// (tests/integration/test_xo_client.py) reads them and checks the results. It answers every
// phase line but the last on stdin (with what another client did where the next phase needs
// that, else a bare acknowledgement), and the next phase starts only once that answer came:
// the test marks where each phase ends in the server's call log before it answers, so that no
// call of the next phase can be logged ahead of the mark, however slowly the test reads.
// Exit code 0 = every phase ran.
//
// Phases:
//   cached      connect with the default transport (JSON-RPC first), build the object cache
//               (system.listMethods, event.inject, <Type>.get_all_records, event.from loop)
//   live        see a change made by another client (the Python test) through events only
//   own         change a VM's name_label and see it through events (barrier)
//   async       Async calls through callAsync: void result, ref result, XAPI error, cancel
//   xmlrpc      a second client forced onto the XML-RPC transport: cache, barrier, callAsync
//   redirect    a third client pointed at a pool member follows HOST_IS_SLAVE to the master
//               (skipped when <member-url> is "-")
//   done        everything disconnected
import { createInterface } from 'node:readline'
import { createClient } from 'xen-api'
import { CancelToken } from 'promise-toolbox'

const [masterUrl, memberUrl] = process.argv.slice(2)
if (masterUrl === undefined || memberUrl === undefined) {
  console.error('usage: node xo-client.mjs <master-url> <member-url>')
  process.exit(64)
}
const AUTH = { user: 'root', password: 'xenroot' }

const emit = obj => process.stdout.write(JSON.stringify(obj) + '\n')
const fail = (phase, error) => {
  emit({ phase: 'error', failed: phase, error: String(error?.stack ?? error), code: error?.code, params: error?.params })
  process.exit(1)
}
const watchdog = setTimeout(() => fail('watchdog', new Error('took more than 50 s')), 50e3)

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const readMessage = async () => JSON.parse((await lines.next()).value)

// a phase's result line, then the test's answer (sent once it has marked the phase's end)
const phaseDone = async obj => {
  emit(obj)
  return readMessage()
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
// wait for a condition on the local cache only (no API call): what events brought in
async function until(what, predicate, timeout = 10e3) {
  const deadline = Date.now() + timeout
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await sleep(20)
  }
}

const ofType = (xapi, type) => Object.values(xapi.objects.all).filter(o => o.$type === type)
const byLabel = (xapi, type, label) => ofType(xapi, type).find(o => o.name_label === label)

async function connect(url, opts = {}) {
  const xapi = createClient({ url, auth: AUTH, allowUnauthorized: true, ...opts })
  await xapi.connect()
  await xapi.objectsFetched
  return xapi
}

function summary(xapi) {
  const count = {}
  for (const o of Object.values(xapi.objects.all)) count[o.$type] = (count[o.$type] ?? 0) + 1
  return {
    pool: xapi.pool.$ref,
    master: xapi.pool.master,
    hosts: ofType(xapi, 'host').map(h => h.uuid).sort(),
    vms: ofType(xapi, 'VM').map(v => v.uuid).sort(),
    count,
  }
}

let phase = 'cached'
try {
  // -- cached ------------------------------------------------------------------------------
  const xapi = await connect(masterUrl)
  const master = xapi.getObjectByRef(xapi.pool.master)
  const change = await phaseDone({
    phase,
    ...summary(xapi),
    master_api: [master.API_version_major, master.API_version_minor],
    product_version: master.software_version.product_version,
    session_is_string: typeof xapi.sessionId === 'string',
  })

  // -- live: the Python test renames a VM with another client --------------------------------
  phase = 'live'
  const t0 = Date.now()
  await until('the rename by another client', () => xapi.getObjectByRef(change.ref, undefined)?.name_label === change.name_label)
  await phaseDone({ phase, ref: change.ref, name_label: xapi.getObjectByRef(change.ref).name_label, ms: Date.now() - t0 })

  // -- own: a change of ours, seen through events ----------------------------------------
  phase = 'own'
  const web2 = byLabel(xapi, 'VM', 'web2')
  await xapi.call('VM.set_name_label', web2.$ref, 'web2-renamed-by-xo')
  const seenByBarrier = await xapi.barrier(web2.$ref)
  await phaseDone({ phase, name_label: seenByBarrier.name_label })

  // -- async -------------------------------------------------------------------------------
  phase = 'async'
  const web1 = byLabel(xapi, 'VM', 'web1')
  const shutdown = await xapi.callAsync('VM.clean_shutdown', web1.$ref)
  await xapi.barrier()
  const stateAfterShutdown = xapi.getObjectByRef(web1.$ref).power_state
  const start = await xapi.callAsync('VM.start', web1.$ref, false, false)
  await xapi.barrier()
  const stateAfterStart = xapi.getObjectByRef(web1.$ref).power_state
  // a template of the release's catalogue (XO_TEMPLATE; CentOS 7 is in every 7.x release)
  const template = byLabel(xapi, 'VM', process.env.XO_TEMPLATE ?? 'CentOS 7')
  const cloneRef = await xapi.callAsync('VM.clone', template.$ref, 'cloned-by-xo')
  const clone = await xapi.barrier(cloneRef)
  let failure
  try {
    await xapi.callAsync('VM.start', web1.$ref, false, false)
  } catch (error) {
    failure = { code: error.code, params: error.params, task_status: error.task?.status }
  }
  // cancel through the client's own cancel token (it calls task.cancel)
  const batch1 = byLabel(xapi, 'VM', 'batch1')
  const { cancel, token } = CancelToken.source()
  const pending = xapi.callAsync(token, 'VM.start', batch1.$ref, false, false)
  await until('the start to be under way', () => Object.keys(xapi.getObjectByRef(batch1.$ref).current_operations).length > 0)
  cancel()
  let cancelled
  try {
    await pending
    cancelled = { outcome: 'resolved' }
  } catch (error) {
    cancelled = { outcome: 'rejected', name: error?.constructor?.name, message: error?.message }
  }
  await xapi.barrier()
  // callAsync destroys its tasks once settled: none of ours is left
  await sleep(300)
  await xapi.barrier()
  const ourTasks = ofType(xapi, 'task').filter(t => t.name_label.startsWith('Async.'))
  await phaseDone({
    phase,
    shutdown,
    state_after_shutdown: stateAfterShutdown,
    start,
    state_after_start: stateAfterStart,
    clone_ref: cloneRef,
    clone_label: clone.name_label,
    failure,
    cancelled,
    batch1_state: xapi.getObjectByRef(batch1.$ref).power_state,
    async_tasks_left: ourTasks.map(t => [t.name_label, t.status]),
  })

  // -- xmlrpc: the fallback transport, forced -----------------------------------------------
  phase = 'xmlrpc'
  const xml = await connect(masterUrl, { transport: 'xml-rpc' })
  const xmlWeb2 = xml.getObjectByRef(web2.$ref)
  await xml.call('VM.set_name_description', web2.$ref, 'via xml-rpc')
  const afterBarrier = await xml.barrier(web2.$ref)
  const cloneLabel = await xml.call('VM.get_name_label', cloneRef)
  const xmlClone = await xml.callAsync('VM.clone', template.$ref, 'cloned-over-xml-rpc')
  await xapi.barrier()
  await phaseDone({
    phase,
    ...summary(xml),
    name_label: xmlWeb2.name_label,
    name_description: afterBarrier.name_description,
    clone_label: cloneLabel,
    clone_ref: xmlClone,
    seen_by_json_client: xapi.getObjectByRef(xmlClone, undefined)?.name_label ?? null,
  })

  // -- redirect: HOST_IS_SLAVE on the member's endpoint ------------------------------------
  // (XO keeps its port and takes the address as a host name: a member URL of "-" skips this
  // where the simulator had to give every host its own port)
  phase = 'redirect'
  const clients = [xapi, xml]
  if (memberUrl !== '-') {
    const viaMember = await connect(memberUrl)
    clients.push(viaMember)
    await phaseDone({ phase, hostname: viaMember._url.hostname, pool: viaMember.pool.$ref, hosts: ofType(viaMember, 'host').length })
  }

  // -- done ------------------------------------------------------------------------------
  phase = 'done'
  await Promise.all(clients.map(c => c.disconnect()))
  emit({ phase, status: clients.map(c => c.status) })
  clearTimeout(watchdog)
  process.exit(0)
} catch (error) {
  fail(phase, error)
}
