// Xen Orchestra's VM creation through its unmodified `xen-api` client, as xo-server's
// `vm.create` runs it (vatesfr/xen-orchestra packages/xo-server/src/xapi/mixins/vm.mjs
// `createVm`, with @xen-orchestra/xapi's VDI_create / VBD_create / VIF_create):
//
//   node tests/node/xo-create-vm.mjs <master-url> <template name> <sr uuid> <network uuid>
//
// clone (VM.clone; then again with VM.copy to '' as `_copyVm` does), the provision XML
// dropped (VM.remove_from_other_config 'disks'), VM.provision, the xo:<uuid> data
// (VM.add_to_other_config), _editVm (VM.set_name_description), the user's disk (VDI.create,
// VM.get_allowed_VBD_devices, VBD.create), the template's VIFs destroyed (destroyAllVifs),
// the user's network (VM.get_allowed_VIF_devices, network MTU, VIF.create), the barrier,
// then VM.start (callAsync) and the records as the cache sees them. One JSON line per step on
// stdout; exit 0 = the whole sequence ran.
import { createClient } from 'xen-api'

const [url, templateName, srUuid, networkUuid] = process.argv.slice(2)
const emit = obj => process.stdout.write(JSON.stringify(obj) + '\n')
const fail = (step, error) => {
  emit({ step: 'error', failed: step, error: String(error?.stack ?? error), code: error?.code, params: error?.params })
  process.exit(1)
}
setTimeout(() => fail('watchdog', new Error('took more than 40 s')), 40e3).unref()

const ofType = (xapi, type) => Object.values(xapi.objects.all).filter(o => o.$type === type)
const ignoreErrors = p => p.catch(() => {})

let step = 'connect'
try {
  const xapi = createClient({ url, auth: { user: 'root', password: 'xenroot' }, allowUnauthorized: true })
  await xapi.connect()
  await xapi.objectsFetched
  const template = ofType(xapi, 'VM').find(v => v.is_a_template && v.name_label === templateName)
  const sr = ofType(xapi, 'SR').find(s => s.uuid === srUuid)
  const network = ofType(xapi, 'network').find(n => n.uuid === networkUuid)
  emit({ step, template: template?.$ref, sr: sr?.$ref, network: network?.$ref })

  const createVm = async (nameLabel, clone) => {
    step = clone ? 'clone' : 'copy'
    const vmRef = clone
      ? await xapi.callAsync('VM.clone', template.$ref, nameLabel)
      : await xapi.callAsync('VM.copy', template.$ref, nameLabel, '')
    step = 'provision'
    await ignoreErrors(xapi.call('VM.remove_from_other_config', vmRef, 'disks'))
    await xapi.callAsync('VM.provision', vmRef)
    let vm = await xapi.getObjectByRef(vmRef, undefined) ?? (await xapi.barrier(vmRef))
    step = 'xoData'
    await xapi.call('VM.add_to_other_config', vmRef, 'xo:' + vm.uuid.slice(0, 8), JSON.stringify({ creation: { template: template.uuid, user: 'tester' } }))
    step = 'edit'
    await xapi.call('VM.set_name_description', vmRef, 'created like xo-server does')

    step = 'VDI.create'
    const vdiRef = await xapi.call('VDI.create', {
      name_description: 'data disk',
      name_label: nameLabel + ' disk',
      other_config: {},
      read_only: false,
      sharable: false,
      SR: sr.$ref,
      type: 'user',
      virtual_size: 1024 * 1024 * 1024,
    })
    step = 'VBD.create'
    const allowedVbd = await xapi.call('VM.get_allowed_VBD_devices', vmRef)
    let userdevice = allowedVbd[0]
    if (userdevice === '3' && allowedVbd.length > 1) userdevice = allowedVbd[1]
    const powerState = await xapi.getField('VM', vmRef, 'power_state')
    const vbdRef = await xapi.call('VBD.create', {
      bootable: true,
      empty: false,
      mode: 'RW',
      other_config: {},
      qos_algorithm_params: {},
      qos_algorithm_type: '',
      type: 'Disk',
      unpluggable: false,
      userdevice,
      VDI: vdiRef,
      VM: vmRef,
    })

    step = 'VIF.destroy'
    vm = await xapi.barrier(vmRef)
    for (const vif of vm.VIFs) await xapi.call('VIF.destroy', vif)
    step = 'VIF.create'
    const devices = await xapi.call('VM.get_allowed_VIF_devices', vmRef)
    const MTU = await xapi.getField('network', network.$ref, 'MTU')
    const vifRef = await xapi.call('VIF.create', {
      device: devices[0],
      locking_mode: 'network_default',
      MAC: '',
      MTU,
      network: network.$ref,
      other_config: {},
      qos_algorithm_params: {},
      qos_algorithm_type: '',
      VM: vmRef,
    })
    step = 'barrier'
    vm = await xapi.barrier(vmRef)
    return { vmRef, vdiRef, vbdRef, vifRef, vm, allowedVbd, devices, powerState }
  }

  const made = await createVm('xo-vm', true)
  emit({
    step: 'created',
    vm: made.vmRef,
    is_a_template: made.vm.is_a_template,
    other_config: made.vm.other_config,
    name_description: made.vm.name_description,
    VBDs: made.vm.VBDs,
    VIFs: made.vm.VIFs,
    vbd: made.vbdRef,
    vif: made.vifRef,
    vdi: made.vdiRef,
    allowedVbd: made.allowedVbd.slice(0, 3),
    vifDevices: made.devices,
    powerState: made.powerState,
  })

  step = 'start'
  await xapi.callAsync('VM.start', made.vmRef, false, false)
  const vm = await xapi.barrier(made.vmRef)
  const vbd = await xapi.barrier(made.vbdRef)
  const vif = await xapi.barrier(made.vifRef)
  const vdi = await xapi.barrier(made.vdiRef)
  emit({
    step: 'started',
    power_state: vm.power_state,
    resident_on: vm.resident_on,
    vbd: { attached: vbd.currently_attached, device: vbd.device, userdevice: vbd.userdevice, bootable: vbd.bootable },
    vif: { attached: vif.currently_attached, device: vif.device, MAC: vif.MAC, MTU: vif.MTU },
    vdi: { SR: vdi.SR, virtual_size: vdi.virtual_size, type: vdi.type },
  })

  const copy = await createVm('xo-vm-copy', false)
  emit({ step: 'copied', vm: copy.vmRef, VBDs: copy.vm.VBDs.length, VIFs: copy.vm.VIFs.length })

  step = 'cleanup'
  await xapi.callAsync('VM.hard_shutdown', made.vmRef)
  for (const ref of [made.vmRef, copy.vmRef]) await xapi.callAsync('VM.destroy', ref)
  await xapi.disconnect()
  emit({ step: 'done' })
  process.exit(0)
} catch (error) {
  fail(step, error)
}
