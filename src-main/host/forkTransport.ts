// Starts the engine host with node's child_process.fork (web host, CLI and tests). From TypeScript sources the
// child runs under tsx's loader; a built hostMain.js runs as is.
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { HostSpawner, HostToParent, HostTransport } from './protocol'
import { mirrorStderrTail } from './stderrTail'

const here = dirname(fileURLToPath(import.meta.url))

/** hostMain.ts beside this file (source checkout), or hostMain.js when built. */
export function defaultHostEntry(): string {
  const js = join(here, 'hostMain.js')
  return existsSync(js) ? js : join(here, 'hostMain.ts')
}

export function forkSpawner(entry = defaultHostEntry(), env: NodeJS.ProcessEnv = process.env): HostSpawner {
  return () => {
    const execArgv = entry.endsWith('.ts')
      ? ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href]
      : []
    const child = fork(entry, [], {
      execArgv,
      env,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      serialization: 'advanced',
    })
    const tail = mirrorStderrTail(child.stderr)
    const transport: HostTransport = {
      get pid() {
        return child.pid ?? null
      },
      send: (msg) => {
        if (child.connected) child.send(msg)
      },
      onMessage: (fn) => child.on('message', (m) => fn(m as HostToParent)),
      onExit: (fn) => child.once('close', (code, signal) => fn(code, signal, tail())),
      kill: () => child.kill('SIGKILL'),
    }
    return transport
  }
}
