// Starts the engine host with Electron's utilityProcess (the desktop app): a Node child without Electron APIs,
// so a CUDA fault or OOM kill there leaves the window alive.
import { utilityProcess } from 'electron'
import type { HostSpawner, HostToParent, HostTransport } from '../host/protocol'
import { mirrorStderrTail } from '../host/stderrTail'

export function utilitySpawner(entry: string): HostSpawner {
  return () => {
    const child = utilityProcess.fork(entry, [], {
      serviceName: 'DPO Studio engine',
      stdio: ['ignore', 'inherit', 'pipe'],
    })
    const tail = mirrorStderrTail(child.stderr)
    const transport: HostTransport = {
      get pid() {
        return child.pid ?? null
      },
      send: (msg) => child.postMessage(msg),
      onMessage: (fn) => child.on('message', (m: unknown) => fn(m as HostToParent)),
      // utilityProcess reports only an exit code; a signal death shows as a non-zero code.
      onExit: (fn) => child.once('exit', (code: number) => fn(code, null, tail())),
      kill: () => void child.kill(),
    }
    return transport
  }
}
